"""h2spec (the HTTP/2 conformance suite, Go, from the module proxy: `make
test-conformance` installs it, its directory in SF_GO_TOOLS) against the
real snowflaked on its shared HTTP/1.x + h2c port: every case, and the
strict ones too. The other tools people reach for are tested where their
protocol is: grpcurl in test_grpc_reflect.py, grpc-health-probe in
test_grpc_health.py, memcstat and memcslap in test_resp_memcache.py.
"""
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import go_tool

H2SPEC = go_tool("h2spec")


@pytest.mark.skipif(H2SPEC is None, reason="h2spec not installed (make "
                    "test-conformance installs it; needs Go and its "
                    "module proxy)")
@pytest.mark.parametrize("strict", [False, True], ids=["all", "strict"])
def test_h2spec_every_case_passes(snowflaked, tmp_path, strict):
    n = snowflaked()
    junit = tmp_path / "h2spec.xml"
    p = subprocess.run([H2SPEC, "-h", "127.0.0.1", "-p", str(n.port),
                        "-o", "5", "-j", str(junit)]
                       + (["--strict"] if strict else []),
                       capture_output=True, text=True, timeout=600)
    summary = re.search(r"(\d+) tests, (\d+) passed, (\d+) skipped, "
                        r"(\d+) failed", p.stdout)
    assert summary, p.stdout + p.stderr
    print("h2spec%s: %s" % (" --strict" if strict else "", summary.group(0)))
    failed = [tc.get("package") + " " + tc.get("classname")
              for tc in ET.parse(junit).iter("testcase")
              if tc.find("failure") is not None or tc.find("error") is not None]
    assert failed == [] and p.returncode == 0, "\n".join(failed) + p.stdout
    total, passed = int(summary.group(1)), int(summary.group(2))
    assert passed == total >= (146 if strict else 145)
