"""A real Prometheus scrapes three real snowflaked nodes with the shipped
scrape config (its targets pointed at the nodes' ports) and alert rules:
it parses their /metrics, every dashboard query runs, and a fleet where two
nodes share a machine id raises SnowflakeDuplicateMachineId. Nothing here
asserts how fast anything happens; each state is waited for up to a
generous deadline."""
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from opslib import DEPLOY, dashboard_exprs, grafana_expr, integration, tool

DEADLINE = 60.0


def wait_for(what, pred):
    end = time.monotonic() + DEADLINE
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.2)


class Prometheus:
    def __init__(self, tmp, targets):
        cfg = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "prometheus.yml")))
        cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
        cfg["rule_files"] = [os.path.join(DEPLOY, "prometheus", "alerts.yml")]
        job = cfg["scrape_configs"][0]
        assert job["job_name"] == "snowflake"
        job["static_configs"][0]["targets"] = targets
        path = os.path.join(tmp, "prometheus.yml")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        self.port = integration.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(tmp, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus", "prometheus"), "--config.file=" + path,
             "--storage.tsdb.path=" + os.path.join(tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path, **params):
        url = self.url + "/api/v1/" + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)
        except OSError:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited: see " + self.log.name)
            return None

    def query(self, expr):
        got = self.api("query", query=expr)
        assert got is None or got["status"] == "success", (expr, got)
        return got and got["data"]["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def prometheus(tmp_path):
    started = []

    def start(targets):
        p = Prometheus(str(tmp_path), targets)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_prometheus_scrapes_nodes_and_raises_duplicate_id(snowflaked, prometheus, tmp_path):
    tool("prometheus", "prometheus")
    nodes = [snowflaked(MACHINE_ID="1", STATE_FILE=str(tmp_path / "s1")),
             snowflaked(MACHINE_ID="2"),
             snowflaked(MACHINE_ID="1")]  # the mistake the alert is for
    for n in nodes:
        assert n.get("/id")[0] == 200
    prom = prometheus(["127.0.0.1:%d" % n.port for n in nodes])

    def all_up():
        r = prom.query('up{job="snowflake"}')
        return r and len(r) == 3 and all(s["value"][1] == "1" for s in r) and r
    wait_for("Prometheus to scrape all three nodes", all_up)
    targets = prom.api("targets")["data"]["activeTargets"]
    assert [t["lastError"] for t in targets] == ["", "", ""], targets

    def duplicate_alert():
        got = prom.api("alerts")
        return got and [a for a in got["data"]["alerts"]
                        if a["labels"]["alertname"] == "SnowflakeDuplicateMachineId"
                        and a["state"] == "firing"]
    alerts = wait_for("SnowflakeDuplicateMachineId to fire", duplicate_alert)
    assert [(a["labels"]["machine_id"], float(a["value"])) for a in alerts] == [("1", 2.0)], alerts

    # Every dashboard query runs (after a few scrapes, so rates have data);
    # the fleet's series answer.
    wait_for("two scrapes", lambda: prom.query(
        'count_over_time(snowflake_ids_issued_total{job="snowflake"}[1m]) >= 3'))
    for expr in dashboard_exprs():
        if not expr.startswith("label_values("):
            prom.query(grafana_expr(expr))
    assert prom.query('sum(up{job="snowflake"})')[0]["value"][1] == "3"
    versions = prom.query("snowflake_build_info")
    assert len(versions) == 3 and all(v["metric"]["version"] for v in versions)
