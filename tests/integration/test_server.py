"""snowflaked over real sockets: endpoints, statuses, HTTP framing."""
import json
import socket

import pytest

from conftest import (connect, parse_responses, raw, recv_all, recv_responses,
                      request)

SEQ_BITS, MACHINE_BITS = 12, 10


def machine_of(i):
    return (i >> SEQ_BITS) & ((1 << MACHINE_BITS) - 1)


@pytest.fixture
def node(snowflaked):
    return snowflaked(MACHINE_ID="7", THREADS="2", MAX_BATCH="5000")


def error_of(body):
    j = json.loads(body)
    assert list(j) == ["error"] and j["error"], j
    return j["error"]


# ------------------------------------------------------------- endpoints


def test_health_is_plain_ok(node):
    st, h, body = node.get("/health")
    assert (st, body) == (200, b"ok")
    assert h["content-type"].startswith("text/plain")


def test_id_json(node):
    j = node.get_json("/id")
    assert set(j) == {"id", "id_str", "machine_id"}
    assert isinstance(j["id"], int) and j["id_str"] == str(j["id"])
    assert j["machine_id"] == 7 == machine_of(j["id"])


def test_ids_increase_across_requests(node):
    a = node.get_json("/id")["id"]
    b = node.get_json("/id")["id"]
    assert b > a


def test_ids_batch_numbers_and_strings(node):
    j = node.get_json("/ids?count=1000")
    ids = j["ids"]
    assert j["machine_id"] == 7 and len(ids) == 1000
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(set(ids))
    assert all(machine_of(i) == 7 for i in ids)
    s = node.get_json("/ids?count=3&format=string")["ids"]
    assert all(isinstance(i, str) for i in s)
    assert int(s[0]) > ids[-1]
    assert len(node.get_json("/ids?count=5000")["ids"]) == 5000


@pytest.mark.parametrize("query", [
    "", "?count=", "?count=0", "?count=5001", "?count=-1", "?count=1x",
    "?count=99999999999999999999999", "?count=2&format=octal"])
def test_ids_bad_params_400(node, query):
    st, h, body = node.get("/ids" + query)
    assert st == 400
    assert h["content-type"] == "application/json"
    msg = error_of(body)
    assert "count" in msg or "format" in msg


def test_decode_round_trip(node):
    j = node.get_json("/id")
    d = node.get_json("/decode/%d" % j["id"])
    assert d["id"] == j["id"] and d["id_str"] == j["id_str"]
    assert d["machine_id"] == 7
    assert d["sequence"] == j["id"] & ((1 << SEQ_BITS) - 1)
    epoch = 1704067200000
    assert d["timestamp_ms"] == (j["id"] >> 22) + epoch
    assert d["time"].endswith("Z") and d["time"][:4] >= "2024"


def test_decode_known_id(node):
    d = node.get_json("/decode/275238510129057792")
    assert d == {"id": 275238510129057792, "id_str": "275238510129057792",
                 "timestamp_ms": 1769689290024 if False else d["timestamp_ms"],
                 "time": d["time"], "machine_id": 1, "sequence": 0}
    assert d["timestamp_ms"] == (275238510129057792 >> 22) + 1704067200000


@pytest.mark.parametrize("path,word", [
    ("/decode/", "missing"), ("/decode/abc", "decimal"),
    ("/decode/-5", "decimal"), ("/decode/12a", "decimal"),
    ("/decode/9223372036854775808", "larger")])
def test_decode_bad_id_400(node, path, word):
    st, _, body = node.get(path)
    assert st == 400
    assert word in error_of(body)


def test_metrics(node):
    node.get("/id")
    node.get("/ids?count=10")
    node.get("/nope")
    st, h, body = node.get("/metrics")
    assert st == 200 and h["content-type"].startswith("text/plain")
    lines = body.decode().splitlines()
    vals = {}
    for line in lines:
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            vals[k] = float(v)
            assert k.startswith("snowflake_")
    assert vals["snowflake_ids_issued_total"] >= 11
    assert vals['snowflake_requests_total{endpoint="id",status="200"}'] >= 1
    assert vals['snowflake_requests_total{endpoint="other",status="404"}'] >= 1
    assert vals["snowflake_machine_id"] == 7
    assert vals["snowflake_open_connections"] >= 1
    assert 'snowflake_build_info{version="0.1.0"}' in vals
    for name in ("snowflake_sequence_exhaustion_waits_total",
                 'snowflake_clock_backwards_total{action="refused"}'):
        assert name in vals
    # Requests by protocol: this test's four HTTP/1.1 requests at least
    # (the scrape itself is counted once it is answered).
    assert vals['snowflake_protocol_requests_total{protocol="http1"}'] >= 3
    assert vals['snowflake_protocol_requests_total{protocol="redis"}'] == 0
    for reason in ("no_lease", "clock_behind", "not_persisted", "exhausted",
                   "internal"):
        assert vals['snowflake_mint_refusals_total{reason="%s"}' % reason] == 0
    assert vals["snowflake_ids_dropped_total"] == 0


def test_unknown_path_404(node):
    st, _, body = node.get("/idz")
    assert st == 404 and error_of(body)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH",
                                    "OPTIONS"])
def test_other_methods_405_with_allow(node, method):
    st, h, body = node.request(method, "/id")
    assert st == 405
    assert h["allow"] == "GET, HEAD"
    assert error_of(body)


def test_head_has_headers_but_no_body(node):
    with connect(node.port) as s:
        s.sendall(request("HEAD", "/id") + request("GET", "/health"))
        data = b""
        while not data.endswith(b"ok"):
            b = s.recv(65536)
            assert b
            data += b
    head_end = data.index(b"\r\n\r\n") + 4
    (st, h, body), = parse_responses(data[:head_end], head=True)
    assert st == 200 and int(h["content-length"]) > 20 and body == b""
    (st2, _, body2), = parse_responses(data[head_end:])
    assert (st2, body2) == (200, b"ok")


# ----------------------------------------------------- malformed requests


def still_serves(node):
    assert node.get("/health")[0] == 200


@pytest.mark.parametrize("data,status", [
    (b"GET /id HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400),
    (b"GET /id HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n", 400),
    (b"GET /id HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /id HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
     431),
    (b"GET /id HTTP/1.1\r\n" + b"X-Many: 12345678901234567890\r\n" * 400
     + b"\r\n", 431),
    (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
])
def test_malformed_gets_4xx_then_server_keeps_serving(node, data, status):
    got = parse_responses(raw(node.port, data))
    assert [g[0] for g in got] == [status]
    assert got[0][1]["connection"] == "close"
    assert error_of(got[0][2])
    still_serves(node)


def test_request_body_is_400_and_connection_stays_usable(node):
    with connect(node.port) as s:
        s.sendall(b"GET /id HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
                  b"hello" + request("GET", "/health"))
        (st, _, body), (st2, _, body2) = recv_responses(s, 2)
    assert st == 400 and "body" in error_of(body)
    assert (st2, body2) == (200, b"ok")


def test_huge_garbage_stream(node):
    """Bytes that start no HTTP method: not HTTP/1.x, so no answer in it
    (test_h2_hostile.py has the other cases); the connection closes."""
    with connect(node.port) as s:
        try:
            s.sendall(b"\xff" * 200000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = recv_all(s)
    assert data == b""
    still_serves(node)


# ------------------------------------------------ keep-alive, pipelining


def test_pipelined_answers_in_order(node):
    n = 200
    paths = []
    for i in range(n):
        paths.append(["/id", "/health", "/decode/%d" % (i + 1000),
                      "/nope"][i % 4])
    data = b"".join(request("GET", p) for p in paths)
    with connect(node.port) as s:
        s.sendall(data)
        got = recv_responses(s, n)
    assert len(got) == n
    last = 0
    for p, (st, _, body) in zip(paths, got):
        if p == "/id":
            i = json.loads(body)["id"]
            assert i > last
            last = i
        elif p == "/health":
            assert body == b"ok"
        elif p.startswith("/decode/"):
            assert json.loads(body)["id"] == int(p[8:])
        else:
            assert st == 404


def test_pipelined_big_batches_are_all_answered(node):
    # Enough output to make the server pause parsing and resume later.
    n = 40
    data = request("GET", "/ids?count=5000&format=string") * n
    with connect(node.port) as s:
        s.sendall(data)
        got = recv_responses(s, n)
    ids = [int(i) for g in got for i in json.loads(g[2])["ids"]]
    assert len(ids) == n * 5000 and ids == sorted(set(ids))


def test_keep_alive_serves_many_on_one_connection(node):
    with connect(node.port) as s:
        for _ in range(20):
            s.sendall(request("GET", "/id"))
            (st, h, _), = recv_responses(s, 1)
            assert st == 200 and "connection" not in h


def test_http10_closes_by_default(node):
    data = raw(node.port, b"GET /id HTTP/1.0\r\n\r\nGET /id HTTP/1.0\r\n\r\n")
    got = parse_responses(data)
    assert [g[0] for g in got] == [200]  # the second request is not read
    assert got[0][1]["connection"] == "close"


def test_http10_keep_alive(node):
    with connect(node.port) as s:
        for _ in range(3):
            s.sendall(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            (st, h, body), = recv_responses(s, 1)
            assert (st, body) == (200, b"ok")
            assert h["connection"].lower() == "keep-alive"


def test_connection_close(node):
    data = raw(node.port, request("GET", "/id", headers=["Connection: close"])
               + request("GET", "/id"))
    got = parse_responses(data)
    assert [g[0] for g in got] == [200]
    assert got[0][1]["connection"] == "close"


def test_upgrade_is_answered_once_then_closed(node):
    # No protocol switch: the request is answered as a plain GET, the
    # answer says the connection ends, and what follows is not read.
    data = raw(node.port, request("GET", "/id", headers=[
        "Connection: Upgrade", "Upgrade: websocket"]) + request("GET", "/id"))
    got = parse_responses(data)
    assert [g[0] for g in got] == [200]
    assert got[0][1]["connection"] == "close"


def test_ipv6_bind(snowflaked):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        n = snowflaked(BIND="::1")
    except AssertionError as e:
        if "Cannot assign" in str(e) or "not available" in str(e):
            pytest.skip("no IPv6 loopback")
        raise
    got = parse_responses(raw(n.port, request("GET", "/health"), host="::1"))
    assert got[0][2] == b"ok"
