"""Hostile clients against the real snowflaked: malformed and oversized
requests, half-sent requests, thousands of idle connections, and more
connections than MAX_CONNECTIONS. Each must get a 4xx (505 for the HTTP
version) or a closed connection, and the server must keep serving /id.

No assertion is about time: deadlines below are generous upper bounds for
"eventually" on a busy machine or a sanitizer build.
"""
import json
import random
import resource
import selectors
import socket
import time

import pytest

from conftest import connect, parse_responses, recv_all, request

DEADLINE = 60.0  # seconds for "eventually"


def send_and_read(port, data):
    """Sends data on a fresh connection (the server may close or reset
    before taking all of it), then returns what it answered until it closed.
    b"" means the connection was closed without an answer."""
    with connect(port) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return recv_all(s)
        except socket.timeout:
            raise AssertionError("the server neither answered nor closed")


def serves_id(node):
    """The node still hands out IDs on a new connection."""
    st, _, body = node.get("/id")
    assert st == 200, (st, body)
    assert json.loads(body)["id"] > 0


HOSTILE = {
    "garbage_request_line": b"HELLO THERE GENERAL KENOBI\r\n\r\n",
    "binary_noise": random.Random(5).randbytes(8192),
    "nul_in_path": b"GET /i\x00d HTTP/1.1\r\nHost: x\r\n\r\n",
    "header_64k": b"GET /id HTTP/1.1\r\nHost: x\r\nX-Big: "
                  + b"a" * 65536 + b"\r\n\r\n",
    "headers_5000": b"GET /id HTTP/1.1\r\nHost: x\r\n"
                    + b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
                    + b"\r\n",
    "url_100k": b"GET /" + b"i" * 102400 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "te_with_cl": b"POST /id HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                  b"0\r\n\r\n",
    "bad_chunk_size": b"POST /id HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"
                      b"0\r\n\r\n",
    "negative_content_length": b"POST /id HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: -1\r\n\r\n",
    "huge_content_length": b"POST /id HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 99999999999999999999999\r\n\r\n",
    "bare_lf_noise": b"\n\n\n\r\r\r" * 1000,
    "request_then_noise": request("GET", "/id") + b"\xff\xfe\x00" * 100,
}


def flood_unread(port, req):
    """Sends req over and over on a connection that never reads its
    answers, until the server stops reading too (both socket buffers full,
    no progress for 1 s), 64 MiB, or DEADLINE. Returns the open socket and
    the bytes sent."""
    s = connect(port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    sent, stalled_since = 0, None
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end and sent < 64 << 20:
        try:
            sent += s.send(req * 64)
            stalled_since = None
        except BlockingIOError:
            if stalled_since is None:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    return s, sent


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_request_gets_4xx_or_close(snowflaked, name):
    node = snowflaked()
    data = send_and_read(node.port, HOSTILE[name])
    if data:
        got = parse_responses(data)
        if name == "request_then_noise":  # the good request is answered
            assert got[0][0] == 200
            got = got[1:]
        for st, h, body in got:
            assert 400 <= st <= 499, (name, st, body)
            assert "error" in json.loads(body)
    serves_id(node)


@pytest.mark.parametrize("version", [b"HTTP/3.7", b"HTTP/2.0", b"HTTP/0.9",
                                     b"HTTP/1.2"])
def test_unknown_http_version_gets_505(snowflaked, version):
    node = snowflaked()
    data = send_and_read(node.port,
                         b"GET /id " + version + b"\r\nHost: x\r\n\r\n")
    (st, h, body), = parse_responses(data)
    assert st == 505, (version, st, body)
    assert "error" in json.loads(body)
    serves_id(node)


def test_every_hostile_request_on_one_node(snowflaked):
    """One node takes all of them, one after the other, and still serves
    (and nothing was answered with a 500 or 503)."""
    node = snowflaked()
    for name in sorted(HOSTILE):
        send_and_read(node.port, HOSTILE[name])
        serves_id(node)
    st, _, body = node.get("/metrics")
    assert st == 200
    assert not [line for line in body.decode().splitlines()
                if ('status="500"' in line or 'status="503"' in line)
                and not line.endswith(" 0")]


def test_client_that_never_reads(snowflaked):
    """A client pipelines big /ids batches and never reads the answers: the
    server stops parsing its input once enough output waits, so memory stays
    bounded, and everyone else is still served."""
    node = snowflaked(THREADS="1", IDLE_TIMEOUT_MS="600000")
    req = request("GET", "/ids?count=10000")
    s, sent = flood_unread(node.port, req)
    try:
        serves_id(node)
        rss_mb = vm_rss_kb(node.proc.pid) / 1024.0
        print("sent %d bytes of requests unread; VmRSS %.1f MB"
              % (sent, rss_mb))
        if not sanitized(node.proc.pid):
            assert rss_mb <= 64.0, rss_mb
    finally:
        s.close()
    serves_id(node)


# ------------------------------------------------------ half-sent requests

HALF = b"GET /id HTTP/1.1\r\nHost: x\r\nUser-Agent: slow"


def open_half_requests(port, n):
    socks = []
    for _ in range(n):
        s = connect(port)
        s.sendall(HALF)
        socks.append(s)
    return socks


def closed_by_server(socks, deadline):
    """Waits until every socket is closed (EOF or reset) by the peer;
    returns the number still open at the deadline."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    open_ = len(socks)
    end = time.monotonic() + deadline
    while open_ and time.monotonic() < end:
        for key, _ in sel.select(timeout=1.0):
            try:
                b = key.fileobj.recv(65536)
            except ConnectionResetError:
                b = b""
            except BlockingIOError:
                continue
            if not b:
                sel.unregister(key.fileobj)
                open_ -= 1
    sel.close()
    return open_


def still_open(socks):
    """How many of socks the server has neither answered nor closed."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    ready = sel.select(timeout=0)
    sel.close()
    return len(socks) - len(ready)


def test_300_half_requests_do_not_block_a_normal_one(snowflaked):
    node = snowflaked(IDLE_TIMEOUT_MS="600000", THREADS="1")
    half = open_half_requests(node.port, 300)
    try:
        # Answered while the 300 hang (THREADS=1: the same event loop).
        for _ in range(3):
            serves_id(node)
        assert still_open(half) == 300
    finally:
        for s in half:
            s.close()


def test_300_half_requests_are_closed_after_idle_timeout(snowflaked):
    node = snowflaked(IDLE_TIMEOUT_MS="500", THREADS="2")
    half = open_half_requests(node.port, 300)
    try:
        serves_id(node)
        assert closed_by_server(half, DEADLINE) == 0
        st, _, body = node.get("/metrics")
        line, = [l for l in body.decode().splitlines()
                 if l.startswith("snowflake_connections_idle_closed_total ")]
        assert int(line.split()[1]) >= 300
        serves_id(node)
    finally:
        for s in half:
            s.close()


# -------------------------------------------------- many idle connections

def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def sanitized(pid):
    """True when the process runs under ASan or TSan (RSS means little)."""
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    return "libasan" in maps or "libtsan" in maps


def metric(node, name):
    st, _, body = node.get("/metrics")
    assert st == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric " + name)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, want))
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft, hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return soft, hard


def test_8000_idle_connections_rss_under_64mb(snowflaked):
    n = 8000
    old = raise_nofile(n + 200)
    # The server inherits the limit; it also raises its own soft limit to
    # the hard one at start.
    node = snowflaked(IDLE_TIMEOUT_MS="600000", MAX_CONNECTIONS="10000")
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", node.port),
                                                  timeout=DEADLINE))
        end = time.monotonic() + DEADLINE
        while (metric(node, "snowflake_open_connections") < n + 1
               and time.monotonic() < end):
            time.sleep(0.1)
        assert metric(node, "snowflake_open_connections") >= n + 1
        serves_id(node)
        # A few of the idle ones are live connections, not just backlog.
        for s in socks[:: n // 8]:
            s.sendall(request("GET", "/health"))
            (st, _, body), = parse_responses(_one_response(s))
            assert (st, body) == (200, b"ok")
        rss_mb = vm_rss_kb(node.proc.pid) / 1024.0
        print("snowflaked VmRSS with %d idle connections: %.1f MB"
              % (n, rss_mb))
        if not sanitized(node.proc.pid):  # ASan's shadow and redzones
            assert rss_mb <= 64.0, rss_mb
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def _one_response(s):
    s.settimeout(DEADLINE)
    data = b""
    while True:
        try:
            if len(parse_responses(data)) == 1:
                return data
        except AssertionError:
            pass
        b = s.recv(65536)
        assert b, "closed before a full response"
        data += b


# ---------------------------------------------------------- MAX_CONNECTIONS

def refused_cleanly(port):
    """A connection beyond the limit: closed, or a 503 with a JSON error."""
    with connect(port) as s:
        try:
            s.sendall(request("GET", "/id"))
        except (BrokenPipeError, ConnectionResetError):
            return True
        try:
            data = recv_all(s)
        except socket.timeout:
            return False
    if not data:
        return True
    (st, h, body), = parse_responses(data)
    return st == 503 and "error" in json.loads(body)


def test_max_connections_refuses_cleanly_and_recovers(snowflaked):
    limit = 40
    node = snowflaked(MAX_CONNECTIONS=str(limit), THREADS="2",
                      IDLE_TIMEOUT_MS="600000")
    held = []
    for _ in range(limit):
        s = connect(node.port)
        s.sendall(request("GET", "/health"))
        (st, _, _), = parse_responses(_one_response(s))
        assert st == 200
        held.append(s)
    for _ in range(20):
        assert refused_cleanly(node.port)
    assert metric_when_free(node, held) >= 20
    # Recovered: the full limit can be held again, and IDs flow.
    held2 = []
    try:
        for _ in range(limit - 1):
            s = connect(node.port)
            s.sendall(request("GET", "/id"))
            (st, _, _), = parse_responses(_one_response(s))
            assert st == 200
            held2.append(s)
    finally:
        for s in held2:
            s.close()
    serves_id(node)


def metric_when_free(node, held):
    """Closes held, waits until the server sees it, and returns the refused
    count."""
    for s in held:
        s.close()
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            return metric(node, "snowflake_connections_refused_total")
        except (AssertionError, ConnectionError, json.JSONDecodeError,
                ValueError):
            time.sleep(0.05)
    raise AssertionError("the server did not recover after the clients left")
