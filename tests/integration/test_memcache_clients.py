"""memcached clients that services use, against the real snowflaked's
memcached listener: gomemcache (github.com/bradfitz/gomemcache, the Go
client; tests/conformance/gomemcache, built by `make test-conformance` into
SF_GO_TOOLS) and spymemcached (Debian's libspymemcached-java, the classic
Java client; tests/conformance/spymemcached/SpyClient.java, compiled here
with javac into a temporary folder). Each client program prints what it saw
as JSON; the checks are here: IDs distinct, increasing and of the node's
machine id, version and stats where the client has them, and each refused
or malformed call coming back as that client's error, never a hang (every
client call has a 5 s deadline; the programs run under a 120 s one).
"""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, go_tool

GOMEMCACHE = go_tool("gomemcache-client")
SPY_JAR = "/usr/share/java/spymemcached.jar"
SPY_SRC = os.path.join(ROOT, "tests", "conformance", "spymemcached",
                       "SpyClient.java")
JAVAC, JAVA = shutil.which("javac"), shutil.which("java")
MACHINE = 5
MAX_BATCH = 8  # so a 9-key get is refused


@pytest.fixture
def node(snowflaked):
    return snowflaked(MACHINE_ID=str(MACHINE), MEMCACHED_PORT="0",
                      MAX_BATCH=str(MAX_BATCH))


def check_ids(ids):
    """Distinct, increasing, and minted by this node."""
    assert ids == sorted(set(ids)), ids
    assert all(i > 0 and (i >> 12) & 0x3FF == MACHINE for i in ids), ids


def node_version(node):
    return re.search(r"^snowflaked (\S+):", node.output(), re.M).group(1)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout), p.stderr


# ------------------------------------------------------------ gomemcache

@pytest.mark.skipif(GOMEMCACHE is None, reason="gomemcache-client not built "
                    "(make test-conformance builds it; needs Go and "
                    "its module proxy)")
def test_gomemcache(node):
    out, _ = run([GOMEMCACHE, "127.0.0.1:%d" % node.memcached_port])
    got, multi, after = out["get"], out["multi"], out["after"]
    # Get sends "gets": the value is the ID, so is the cas unique.
    assert [g["key"] for g in got] == ["id", "id", "order:42"]
    assert [m["key"] for m in multi] == ["a", "b", "c", "user:7"]
    assert out["multi_len"] == 4
    for it in got + multi + after:
        assert int(it["value"]) == it["cas"] and it["flags"] == 0, it
    # One gets line per GetMulti to one server: minted in key order.
    check_ids([int(it["value"]) for it in got + multi + after])
    e = out["errors"]
    assert e["ping"] == ""  # "version" answered VERSION
    # Keys are checked by the client, as the node would (250 bytes, no
    # space or control byte).
    for k in ("bad_key", "long_key"):
        assert e[k] == "malformed: key is too long or contains invalid " \
                       "characters", e
    refused = "is not supported: this server only issues IDs (get, gets)"
    for k in ("set", "add", "cas"):
        assert ("unexpected response line from \"%s\": \"CLIENT_ERROR "
                "storing %s" % (k, refused)) in e[k], e
    assert e["incr"] == "memcache: client error: incr " + refused
    assert e["delete"] == ("memcache: unexpected response line: "
                           "\"CLIENT_ERROR delete %s\\r\\n\"" % refused)
    assert "from touch: \"CLIENT_ERROR touch " + refused in e["touch"]
    assert "get response: \"CLIENT_ERROR gat " + refused in e["gat"]
    assert "flush_all: \"CLIENT_ERROR flush_all " + refused in e["flush_all"]
    assert ("unexpected line in get response: \"CLIENT_ERROR 9 keys in one "
            "get, at most 8 (MAX_BATCH)") in e["too_many"], e
    assert not any("timeout" in v for v in e.values()), e


# ---------------------------------------------------------- spymemcached

@pytest.fixture(scope="module")
def spy_classes(tmp_path_factory):
    if not (JAVAC and JAVA and os.path.exists(SPY_JAR)):
        pytest.skip("javac or spymemcached not installed "
                    "(scripts/deps.sh conformance)")
    d = tmp_path_factory.mktemp("spy")
    p = subprocess.run([JAVAC, "-Xlint:all", "-Werror", "-cp", SPY_JAR,
                        "-d", str(d), SPY_SRC],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return str(d)


def test_spymemcached(node, spy_classes):
    out, log = run([JAVA, "-cp", spy_classes + os.pathsep + SPY_JAR,
                    "SpyClient", "127.0.0.1", str(node.memcached_port)])
    bulk = out["bulk"]
    assert sorted(bulk) == ["a", "b", "c", "user:7"]
    ids = [int(v) for v in out["get"]] + [int(out["gets_value"])] + \
        [int(bulk[k]) for k in ("a", "b", "c", "user:7")] + [int(out["after"])]
    check_ids(ids)
    assert out["gets_cas"] == out["gets_value"]
    version = node_version(node)
    assert out["version"] == "1.4.0+snowflaked." + version
    st = out["stats"]
    assert st["machine_id"] == str(MACHINE) and st["max_batch"] == "8"
    assert st["snowflaked_version"] == version and st["curr_items"] == "0"
    assert int(st["ids_issued"]) >= len(ids) - 1  # "after" came later
    assert out["stats_settings"]["max_batch"] == "8"
    e = out["errors"]
    # Keys are checked by the client.
    assert e["bad_key"].startswith(
        "IllegalArgumentException: Key contains invalid characters"), e
    assert e["long_key"] == \
        "IllegalArgumentException: Key is too long (maxlen = 250)", e
    # spymemcached fails the operation on any error line, then closes the
    # connection and reconnects (after about 2 s): its way with
    # CLIENT_ERROR from any server. incr and flush report failure as -1
    # and false; a refused getBulk as a RuntimeException, or as cancelled
    # when the reconnect wins the race inside the client (its log has the
    # node's answer either way).
    refused = "is not supported: this server only issues IDs (get, gets)"
    for k in ("set", "add"):
        assert e[k] == ("ExecutionException: OperationException: "
                        "CLIENT_ERROR storing " + refused), e
    for k in ("delete", "touch"):
        assert e[k] == ("ExecutionException: OperationException: "
                        "CLIENT_ERROR %s %s" % (k, refused)), e
    assert e["incr"] == "returned: -1" and e["flush"] == "returned: false", e
    assert e["too_many"] in (
        "RuntimeException: Exception waiting for bulk values",
        "CancellationException: Cancelled"), e
    assert "CLIENT_ERROR incr " + refused in log
    assert "CLIENT_ERROR flush_all " + refused in log
    assert "CLIENT_ERROR 9 keys in one get, at most 8 (MAX_BATCH)" in log
    assert "Timeout" not in json.dumps(e), e
