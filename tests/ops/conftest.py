"""Fixtures of the operations tests: a real snowflaked (the integration
tests' fixture) and `make install` into a temporary prefix."""
import os

import pytest

from opslib import ROOT, integration, run

snowflaked = integration.snowflaked  # the fixture: start a real node


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """`make install` into a fresh PREFIX (no DESTDIR, so the installed
    unit's ExecStart= names a binary that exists): the prefix."""
    sf = os.environ.get("SNOWFLAKED")
    if not sf:
        pytest.skip("SNOWFLAKED is not set: run through make test-ops")
    prefix = str(tmp_path_factory.mktemp("install") / "usr")
    run(["make", "-s", "BUILD=" + os.path.dirname(sf), "install", "PREFIX=" + prefix],
        cwd=ROOT)
    return prefix
