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


