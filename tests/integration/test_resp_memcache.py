"""The Redis (RESP2) and memcached listeners of the real snowflaked, spoken
to by real clients: redis-cli (Debian redis-tools), redis-py (python3-redis),
pymemcache (python3-pymemcache) and libmemcached's memcstat and memcslap
(libmemcached-tools); and by hostile raw sockets.

No assertion is about time: deadlines are generous upper bounds.
"""
import random
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import connect, recv_all
from test_hostile import flood_unread, sanitized, vm_rss_kb

redis = pytest.importorskip("redis", reason="python3-redis not installed")
pymemcache = pytest.importorskip("pymemcache.client.base",
                                 reason="python3-pymemcache not installed")
from pymemcache.exceptions import (MemcacheClientError,  # noqa: E402
                                   MemcacheServerError)

REDIS_CLI = shutil.which("redis-cli")
needs_cli = pytest.mark.skipif(REDIS_CLI is None,
                               reason="redis-cli not installed (redis-tools)")
DEADLINE = 60.0


@pytest.fixture
def node(snowflaked):
    return snowflaked(MACHINE_ID="5", REDIS_PORT="0", MEMCACHED_PORT="0")


def cli(node, *args):
    p = subprocess.run([REDIS_CLI, "-p", str(node.redis_port)] + list(args),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def machine_of(node, i):
    return node.get_json("/decode/%d" % i)["machine_id"]


def mc(node):
    return pymemcache.Client(("127.0.0.1", node.memcached_port), timeout=10)


# ------------------------------------------------------------- redis-cli

@needs_cli
def test_redis_cli_get_mget_batch(node):
    one = int(cli(node, "GET", "id"))
    assert machine_of(node, one) == 5
    three = [int(x) for x in cli(node, "MGET", "id", "id", "id").split()]
    assert len(three) == 3 and three == sorted(set(three)) and three[0] > one
    batch = [int(x) for x in cli(node, "GET", "ids:1000").split()]
    assert len(batch) == 1000 and batch == sorted(set(batch))
    assert batch[0] > three[-1]


@needs_cli
def test_redis_cli_server_commands(node):
    assert cli(node, "PING") == "PONG\n"
    assert cli(node, "ECHO", "hello world") == "hello world\n"
    info = cli(node, "INFO")
    assert "machine_id:5" in info and "server:snowflaked" in info
    assert cli(node, "SELECT", "0") == "OK\n"
    out = cli(node, "SET", "id", "1")
    assert out.startswith("ERR unknown command 'SET'"), out
    out = cli(node, "GET", "ids:0")
    assert "ERR GET ids:<n> takes a count n in 1..10000" in out, out


@needs_cli
def test_redis_cli_resp3_falls_back(node):
    """redis-cli -3 sends HELLO 3, is refused with NOPROTO, and still
    works over RESP2."""
    p = subprocess.run([REDIS_CLI, "-3", "-p", str(node.redis_port), "GET",
                        "id"], capture_output=True, text=True, timeout=30)
    assert "NOPROTO" in p.stdout + p.stderr
    assert machine_of(node, int(p.stdout.strip().splitlines()[-1])) == 5


@needs_cli
def test_redis_cli_pipe_mode(node):
    """redis-cli --pipe writes 10,000 raw commands without waiting for the
    answers and counts the replies."""
    cmds = "".join("*2\r\n$3\r\nGET\r\n$2\r\nid\r\n" for _ in range(10000))
    p = subprocess.run([REDIS_CLI, "-p", str(node.redis_port), "--pipe"],
                       input=cmds, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "errors: 0, replies: 10000" in p.stdout, p.stdout


# -------------------------------------------------------------- redis-py

def test_redis_py(node):
    r = redis.Redis(port=node.redis_port, client_name="ids-test",
                    socket_timeout=10)
    assert r.ping() is True
    a = int(r.get("id"))
    got = [int(x) for x in r.mget(["id", "order", "user"])]
    assert len(got) == 3 and got == sorted(set(got)) and got[0] > a
    batch = [int(x) for x in r.execute_command("GET", "ids:50")]
    assert len(batch) == 50 and batch == sorted(set(batch))
    assert r.info()["machine_id"] == 5
    assert r.echo("x") == b"x"
    with pytest.raises(redis.ResponseError, match="unknown command 'SET'"):
        r.set("id", 1)
    # A pipeline of 2,000 GETs: 2,000 distinct increasing IDs, in order.
    p = r.pipeline(transaction=False)
    for _ in range(2000):
        p.get("id")
    ids = [int(x) for x in p.execute()]
    assert ids == sorted(set(ids)) and len(ids) == 2000


def test_redis_py_select_and_auth(node):
    assert redis.Redis(port=node.redis_port, db=0).get("id")
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        redis.Redis(port=node.redis_port, db=3).get("id")
    with pytest.raises(redis.ResponseError, match="without any password"):
        redis.Redis(port=node.redis_port, password="pw").get("id")


# ------------------------------------------------------------ pymemcache

def test_pymemcache(node):
    c = mc(node)
    a = int(c.get("id"))
    assert machine_of(node, a) == 5
    many = c.get_many(["id", "id2", "k3"])
    assert sorted(many) == ["id", "id2", "k3"]
    vals = [int(many[k]) for k in ("id", "id2", "k3")]
    assert vals == sorted(set(vals)) and vals[0] > a
    v, cas = c.gets("id")
    assert int(v) == int(cas) and int(v) > vals[-1]
    version = redis.Redis(port=node.redis_port).info()["snowflaked_version"]
    assert c.version().decode() == "1.4.0+snowflaked." + version
    stats = c.stats()
    assert int(stats[b"machine_id"]) == 5
    assert int(stats[b"ids_issued"]) >= 5
    assert stats[b"snowflaked_version"].decode() == version
    assert stats[b"curr_items"] == 0
    assert int(c.stats("settings")[b"max_batch"]) == 10000
    for group in ("items", "slabs", "sizes", "conns"):
        assert isinstance(c.stats(group), dict)  # ended by END
    with pytest.raises(MemcacheClientError, match="storing is not supported"):
        c.set("id", "1", noreply=False)
    with pytest.raises(MemcacheClientError, match="incr is not supported"):
        c.incr("id", 1)
    assert int(c.get("id")) > int(v)  # the connection still lines up


MEMCSTAT = shutil.which("memcstat")
needs_libmemcached = pytest.mark.skipif(
    MEMCSTAT is None, reason="memcstat not installed (libmemcached-tools)")


def memc(tool, node, *args):
    p = subprocess.run([tool, "--servers=127.0.0.1:%d" % node.memcached_port]
                       + list(args), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


@needs_libmemcached
def test_memcstat(node):
    """libmemcached parses the version (a major version of 0 failed it:
    "strtol() failed to parse major version") and prints every stat."""
    out = memc(MEMCSTAT, node)
    stats = dict(ln.strip().split(": ", 1) for ln in out.splitlines()[1:])
    assert out.startswith("Server: 127.0.0.1 (%d)" % node.memcached_port)
    assert stats["machine_id"] == "5"
    assert stats["version"].startswith("1.4.0+snowflaked.")
    assert stats["curr_items"] == "0"
    assert memc(MEMCSTAT, node, "-S").split() == [
        "127.0.0.1:%d" % node.memcached_port, "1.4.0"]
    assert "max_batch: 10000" in memc(MEMCSTAT, node, "settings")
    assert memc(MEMCSTAT, node, "items").strip() == ""  # no items: END


@needs_libmemcached
def test_memcslap_gets(node):
    """memcslap's set phase is refused (this server stores nothing); its
    gets are answered, an ID each. (Its mget test is left out: memcslap
    itself sometimes runs it on 0 keys.)"""
    before = metric_ids(node)
    out = memc("memcslap", node, "--test=get", "--concurrency=2",
               "--execute-number=200")
    assert re.search(r"Time to get +400 keys", out), out
    assert metric_ids(node) - before >= 400


def metric_ids(node):
    _, _, body = node.get("/metrics")
    return int(re.search(rb"^snowflake_ids_issued_total (\d+)$", body,
                         re.M).group(1))


def test_memcached_unknown_command_is_error(node):
    with connect(node.memcached_port) as s:
        s.sendall(b"frobnicate\r\nversion\r\nquit\r\n")
        out = recv_all(s)
    assert out.startswith(b"ERROR\r\nVERSION ")


# ----------------------------------------------- every protocol, one node

def test_no_duplicates_across_protocols(node):
    """HTTP, RESP and memcached clients at once on one node: every ID is
    distinct and carries the node's machine id."""
    seen = {}

    def http():
        seen["http"] = [i for _ in range(20)
                        for i in node.get_json("/ids?count=500")["ids"]]

    def resp():
        r = redis.Redis(port=node.redis_port, socket_timeout=10)
        seen["resp"] = [int(x) for _ in range(20)
                        for x in r.execute_command("GET", "ids:500")]

    def memc():
        c = mc(node)
        keys = ["k%d" % i for i in range(500)]
        seen["mc"] = [int(v) for _ in range(20)
                      for v in c.get_many(keys).values()]

    ts = [threading.Thread(target=f) for f in (http, resp, memc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(DEADLINE)
    ids = seen["http"] + seen["resp"] + seen["mc"]
    assert len(ids) == 30000 and len(set(ids)) == 30000
    assert {machine_of(node, ids[0]), machine_of(node, ids[-1])} == {5}


def test_cannot_issue_names_the_reason(snowflaked, tmp_path):
    """A state file whose mark is 10 minutes ahead: the node starts, but
    its clock is behind the mark, so every protocol refuses with the
    reason and issues nothing."""
    state = tmp_path / "state"
    state.write_text("%d\n" % (int(time.time() * 1000) + 600000))
    n = snowflaked(STATE_FILE=str(state), REDIS_PORT="0", MEMCACHED_PORT="0")
    r = redis.Redis(port=n.redis_port, socket_timeout=10)
    with pytest.raises(redis.ResponseError, match="clock is behind"):
        r.get("id")
    with pytest.raises(MemcacheServerError, match="clock is behind"):
        mc(n).get("id")
    assert r.ping() is True  # the connection is still usable


def test_ports_off_unless_set(snowflaked):
    n = snowflaked()
    assert n.redis_port is None and n.memcached_port is None
    assert "Redis" not in n.output()


# ------------------------------------------------------------- hostile

def send_and_read(port, data):
    """Sends data (the server may close first), half-closes, and returns
    what it answered until it closed."""
    with connect(port) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return recv_all(s)


RESP_HOSTILE = {
    "huge_bulk_length": (b"*2\r\n$3\r\nGET\r\n$2147483647\r\n",
                         b"-ERR Protocol error: bulk length 2147483647"),
    "huge_arg_count": (b"*99999999\r\n",
                       b"-ERR Protocol error: 99999999 arguments"),
    "inline_100k": (b"GET " + b"a" * 100000 + b"\r\n",
                    b"-ERR Protocol error: too big inline request"),
    "bad_length": (b"*1\r\n$x\r\n", b"-ERR Protocol error: invalid bulk"),
    "binary_noise": (b"*" + random.Random(7).randbytes(8192),
                     b"-ERR Protocol error: "),
}


@pytest.mark.parametrize("name", sorted(RESP_HOSTILE))
def test_resp_hostile_input_gets_protocol_error(node, name):
    data, want = RESP_HOSTILE[name]
    out = send_and_read(node.redis_port, data)
    assert out.startswith(want) and out.endswith(b"\r\n"), out[:200]
    assert out.count(b"\r\n") == 1
    assert redis.Redis(port=node.redis_port).get("id")


MC_HOSTILE = {
    "line_100k": (b"get " + b"a" * 100000 + b"\r\n",
                  b"CLIENT_ERROR line over 8192 bytes\r\n"),
    "binary_protocol": (b"\x80\x00\x00\x02" + b"\x00" * 20,
                        b"CLIENT_ERROR the binary protocol is not supported"),
    "huge_value": (b"set k 0 0 999999999\r\n",
                   b"SERVER_ERROR object too large for cache\r\n"),
}


@pytest.mark.parametrize("name", sorted(MC_HOSTILE))
def test_memcached_hostile_input_gets_error(node, name):
    data, want = MC_HOSTILE[name]
    out = send_and_read(node.memcached_port, data)
    assert out.startswith(want), out[:200]
    assert mc(node).get("id")


def test_half_commands_do_not_block_others(snowflaked):
    n = snowflaked(THREADS="1", IDLE_TIMEOUT_MS="600000", REDIS_PORT="0",
                   MEMCACHED_PORT="0")
    half = []
    try:
        for _ in range(100):
            s = connect(n.redis_port)
            s.sendall(b"*2\r\n$3\r\nGET\r\n$2\r\ni")
            half.append(s)
            s = connect(n.memcached_port)
            s.sendall(b"get i")
            half.append(s)
        assert redis.Redis(port=n.redis_port).get("id")
        assert mc(n).get("id")
        # Completing a half command gets its answer.
        half[0].sendall(b"d\r\n")
        half[0].settimeout(10)
        assert half[0].recv(100).startswith(b"$")
    finally:
        for s in half:
            s.close()


def test_answers_before_the_end_of_a_full_read(node):
    """Answers wait for the end of the event loop's pass over the ready
    sockets; a client that sends exactly one read buffer (64 KiB) of
    commands and then its FIN, which the server may read in the same pass,
    still gets every answer before the close."""
    line = b"GET id" + b" " * (4096 - 8) + b"\r\n"  # 16 of them: 65,536
    for _ in range(20):
        with connect(node.redis_port) as s:
            s.sendall(line * 16)
            s.shutdown(socket.SHUT_WR)
            data = recv_all(s)
        ids = re.findall(rb"\$\d+\r\n(\d+)\r\n", data)
        assert len(ids) == 16, data[:200]
        assert [int(i) for i in ids] == sorted(set(int(i) for i in ids))


@pytest.mark.parametrize("proto", ["redis", "memcached"])
def test_client_that_never_reads(snowflaked, proto):
    """Pipelined batches never read: parsing stops once enough output
    waits, so memory stays bounded, and others are still served."""
    n = snowflaked(THREADS="1", IDLE_TIMEOUT_MS="600000", REDIS_PORT="0",
                   MEMCACHED_PORT="0")
    if proto == "redis":
        port, req = n.redis_port, b"GET ids:10000\r\n"
    else:
        port = n.memcached_port
        req = b"get " + b" ".join(b"k%d" % i for i in range(1000)) + b"\r\n"
    s, sent = flood_unread(port, req)
    try:
        assert redis.Redis(port=n.redis_port).get("id")
        assert mc(n).get("id")
        rss_mb = vm_rss_kb(n.proc.pid) / 1024.0
        print("%s: sent %d bytes unread; VmRSS %.1f MB"
              % (proto, sent, rss_mb))
        if not sanitized(n.proc.pid):
            assert rss_mb <= 64.0, rss_mb
    finally:
        s.close()


def test_idle_connections_are_closed(snowflaked):
    n = snowflaked(IDLE_TIMEOUT_MS="300", REDIS_PORT="0", MEMCACHED_PORT="0")
    for port in (n.redis_port, n.memcached_port):
        with connect(port) as s:
            assert recv_all(s, timeout=DEADLINE) == b""
    st, _, body = n.get("/metrics")
    assert 'snowflake_protocol_requests_total{protocol="redis"}' in \
        body.decode()
