"""Helpers of the operations tests (tests/ops): the repository's
paths, the tools they need, and the integration tests' helpers (Node, the
snowflaked fixture, the etcd starter) loaded from their files rather than
copied.

Each tool is a Debian package of the `ops` group of scripts/deps.sh, which
`make test-ops` installs first; a test skips, naming the package, only when
its tool is missing.
"""
import importlib.util
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
MAN = os.path.join(ROOT, "man")


def load(name, relpath):
    """Imports tests/<relpath> under another module name."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tests", relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


integration = load("sf_integration_conftest", "integration/conftest.py")
SNOWFLAKED = integration.SNOWFLAKED
SNOWFLAKE = integration.SNOWFLAKE


def tool(name, package):
    """The path of a tool, or skip naming the package that has it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        pytest.skip("%s not installed (Debian package %s: sh scripts/deps.sh ops)"
                    % (name, package))
    return path


def run(cmd, check=True, **kw):
    """Runs cmd, capturing text output; raises with both streams on failure."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def help_settings(text):
    """[(ENV, --flag)] from the settings table of `snowflaked --help`."""
    import re
    return re.findall(r"^  ([A-Z][A-Z0-9_]*) +(--[a-z][a-z0-9-]*) ", text, re.M)




PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right",
                   "bool", "and", "or", "unless", "offset", "Inf", "NaN", "inf", "nan"}


def grafana_expr(expr):
    """A dashboard query with Grafana's variables replaced by what they
    stand for, so Prometheus can parse it."""
    import re
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def promql_metrics(expr):
    """The metric names a PromQL expression selects: identifiers outside
    strings, label matchers and ranges that are not functions, aggregations,
    keywords or grouping labels. label_values(metric, label) gives metric."""
    import re
    m = re.match(r"\s*label_values\(\s*([A-Za-z_:][\w:]*)", expr)
    if m:
        return {m.group(1)}
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\w+", " ", e)
    names = set()
    for tok in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", e):
        if e[tok.end():].lstrip().startswith("(") or tok.group(0) in PROMQL_KEYWORDS:
            continue
        names.add(tok.group(0))
    return names


def rate_args(expr):
    """Metric names passed directly to rate(), irate() or increase()."""
    import re
    return set(re.findall(r"\b(?:rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)", expr))


def alert_rules():
    """[(alert name, expr)] of deploy/prometheus/alerts.yml."""
    import yaml
    doc = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "alerts.yml")))
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard_exprs():
    """Every PromQL query of the Grafana dashboard: panel targets (also in
    rows) and query variables."""
    import json
    d = json.load(open(os.path.join(DEPLOY, "grafana", "snowflake.json")))
    out = []

    def walk(panels):
        for p in panels:
            out.extend(t["expr"] for t in p.get("targets", []))
            walk(p.get("panels", []))

    walk(d["panels"])
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out
