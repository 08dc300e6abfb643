"""Every metric the alert rules and the dashboard query is exposed by a
running snowflaked's /metrics: one node with a fixed machine id and a state
file, one with MACHINE_ID=auto leasing its id from a real etcd (the lease
metrics exist only there). What rate() and increase() read is a counter."""
import os
import re

import pytest

from opslib import (alert_rules, dashboard_exprs, grafana_expr, integration, load,
                    promql_metrics, rate_args)

etcd_tests = load("sf_test_etcd", "integration/test_etcd.py")

# Prometheus's own series about each scrape, not snowflaked's.
PROMETHEUS_SERIES = {"up"}


def exposition(node):
    """{metric name: type} from a node's /metrics, after it issued IDs."""
    assert node.get("/id")[0] == 200
    assert node.get("/ids?count=5")[0] == 200
    st, _, body = node.get("/metrics")
    assert st == 200
    text = body.decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name in re.findall(r"^([a-zA-Z_:][\w:]*)(?:\{| )", text, re.M):
        assert name in types, name + " has no # TYPE"
    return types


@pytest.fixture(scope="module")
def exposed(tmp_path_factory):
    """The union over both kinds of node of {name: type}."""
    if not (os.path.exists(etcd_tests.ETCD) and os.path.exists(etcd_tests.ETCDCTL)):
        pytest.skip("etcd-server / etcd-client not installed (sh scripts/deps.sh test): "
                    "the lease metrics need MACHINE_ID=auto")
    Node = integration.Node
    tmp = str(tmp_path_factory.mktemp("metrics"))
    etcd, nodes, types = etcd_tests.Etcd(tmp), [], {}
    try:
        nodes.append(Node({"MACHINE_ID": "7", "STATE_FILE": os.path.join(tmp, "state")}, (), tmp))
        types.update(exposition(nodes[-1]))
        etcd.start()
        nodes.append(Node({"MACHINE_ID": "auto", "ETCD_ENDPOINTS": etcd.url,
                           "ETCD_PREFIX": "/ops-test/", "ETCD_LEASE_TTL": "2"}, (), tmp))
        auto = exposition(nodes[-1])
        assert "snowflake_lease_held" in auto and "snowflake_lease_held" not in types
        types.update(auto)
    finally:
        for n in nodes:
            n.stop()
        etcd.kill()
    return types


def queries():
    out = [("alert " + name, expr) for name, expr in alert_rules()]
    out += [("dashboard", grafana_expr(e)) for e in dashboard_exprs()]
    return out


def test_queries_name_only_exposed_metrics(exposed):
    missing = []
    for where, expr in queries():
        names = promql_metrics(expr)
        assert names, (where, expr)
        missing += ["%s: %s" % (where, n) for n in names - set(exposed) - PROMETHEUS_SERIES]
    assert not missing, "queried but not on /metrics:\n" + "\n".join(missing)


def test_rates_read_counters(exposed):
    for where, expr in queries():
        for name in rate_args(expr):
            assert exposed.get(name) == "counter", (where, name, exposed.get(name))


def test_the_check_can_fail(exposed):
    """A query of a metric no node exposes is reported."""
    names = promql_metrics('rate(snowflake_ids_minted_total[5m])')
    assert names - set(exposed) == {"snowflake_ids_minted_total"}
