"""deploy/prometheus and deploy/grafana: the alert rules pass `promtool check
rules` and their unit tests (`promtool test rules`), every alert has a test
where it fires and one where it does not, the scrape config is valid and
names the three compose nodes, and every dashboard query parses."""
import os
import re

import yaml

from opslib import DEPLOY, alert_rules, dashboard_exprs, grafana_expr, promql_metrics, run, tool

PROM = os.path.join(DEPLOY, "prometheus")


def promtool():
    return tool("promtool", "prometheus")


def test_check_rules():
    p = run([promtool(), "check", "rules", os.path.join(PROM, "alerts.yml")])
    assert "SUCCESS" in p.stdout


def test_rule_unit_tests_pass():
    p = run([promtool(), "test", "rules", "alerts_test.yml"], cwd=PROM)
    assert "SUCCESS" in p.stdout


def test_rule_unit_tests_fail_on_a_wrong_rule(tmp_path):
    """The unit tests can fail: with one threshold raised out of reach,
    promtool reports the alert that no longer fires."""
    src = open(os.path.join(PROM, "alerts.yml")).read()
    bad = src.replace("increase(snowflake_state_persist_errors_total[5m]) > 0",
                      "increase(snowflake_state_persist_errors_total[5m]) > 1000")
    assert bad != src
    (tmp_path / "alerts.yml").write_text(bad)
    (tmp_path / "alerts_test.yml").write_text(open(os.path.join(PROM, "alerts_test.yml")).read())
    p = run([promtool(), "test", "rules", "alerts_test.yml"], cwd=str(tmp_path), check=False)
    assert p.returncode != 0 and "SnowflakeStateNotPersisted" in p.stdout + p.stderr


def test_every_alert_tested_firing_and_not_firing():
    tests = yaml.safe_load(open(os.path.join(PROM, "alerts_test.yml")))["tests"]
    cases = [c for t in tests for c in t["alert_rule_test"]]
    for name, _ in alert_rules():
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), name + ": never tested firing"
        assert any(not c.get("exp_alerts") for c in mine), name + ": never tested silent"
    assert {c["alertname"] for c in cases} <= {n for n, _ in alert_rules()}


def test_scrape_config_names_the_compose_nodes():
    p = run([promtool(), "check", "config", os.path.join(PROM, "prometheus.yml")])
    assert "SUCCESS" in p.stdout
    cfg = yaml.safe_load(open(os.path.join(PROM, "prometheus.yml")))
    job = [j for j in cfg["scrape_configs"] if j["job_name"] == "snowflake"]
    assert len(job) == 1 and cfg["rule_files"] == ["alerts.yml"]
    targets = [t for sc in job[0]["static_configs"] for t in sc["targets"]]
    compose = open(os.path.join(DEPLOY, "..", "docker-compose.yml")).read()
    ports = re.findall(r"NODE\d_PORT:-(\d+)", compose)
    assert ports == ["8091", "8092", "8093"]
    assert targets == ["localhost:" + p for p in ports]


def test_dashboard_queries_parse(tmp_path):
    """Each query (Grafana's variables filled in) as a recording rule, so
    promtool parses it as PromQL; each selects at least one metric."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    rules = []
    for i, e in enumerate(exprs):
        if e.startswith("label_values("):
            assert promql_metrics(e), e
            continue
        assert promql_metrics(grafana_expr(e)), e
        rules.append({"record": "dashboard:query_%d" % i, "expr": grafana_expr(e)})
    f = tmp_path / "dashboard_rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    p = run([promtool(), "check", "rules", str(f)])
    assert "SUCCESS: %d rules found" % len(rules) in p.stdout


def test_dashboard_queries_parse_check_can_fail(tmp_path):
    f = tmp_path / "bad.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": "sum by (instance (rate(snowflake_ids_issued_total[1m]))"}]}]}))
    assert run([promtool(), "check", "rules", str(f)], check=False).returncode != 0


def test_promql_metrics_extraction():
    """The extractor the metric test relies on."""
    assert promql_metrics('sum by (instance) (rate(snowflake_a_total{x=~"a|b", y="c"}[5m])) > 0') \
        == {"snowflake_a_total"}
    assert promql_metrics('count_values("machine_id", snowflake_machine_id{job="s"}) > 1 or vector(0)') \
        == {"snowflake_machine_id"}
    assert promql_metrics("max by (instance) (time() - snowflake_start_time_seconds) / up") \
        == {"snowflake_start_time_seconds", "up"}
    assert promql_metrics("a_metric offset 5m + 1e3 * b:rec") == {"a_metric", "b:rec"}
    assert promql_metrics("label_values(snowflake_build_info, instance)") == {"snowflake_build_info"}
