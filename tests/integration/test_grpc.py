"""HTTP/2 and gRPC on the HTTP/1.x port, with real clients: Python's grpcio
(Debian python3-grpcio) calls Snowflake.Next, Snowflake.Decode and
grpc.health.v1.Health/Check; curl and h2load (nghttp2-client) speak h2c
with prior knowledge to the HTTP routes.

The message classes come from the checked-in .proto files: protoc-c
writes a descriptor set at test time and python3-protobuf builds the
classes from it (no generated Python is checked in).
"""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import ROOT

grpc = pytest.importorskip("grpc", reason="python3-grpcio not installed")
pytest.importorskip("google.protobuf", reason="python3-protobuf not installed")
from google.protobuf import descriptor_pb2, descriptor_pool  # noqa: E402
from google.protobuf import message_factory  # noqa: E402

PROTOS = ["snowflake/v1/snowflake.proto", "grpc/health/v1/health.proto"]
EPOCH_MS = 1704067200000


class Messages:
    """The message classes of the service, by short name."""

    def __init__(self, tmpdir):
        out = os.path.join(tmpdir, "snowflake.desc")
        subprocess.run(["protoc-c", "--descriptor_set_out=" + out,
                        "--include_imports", "-I", os.path.join(ROOT, "proto")]
                       + PROTOS, check=True)
        fds = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as f:
            fds.ParseFromString(f.read())
        pool = descriptor_pool.DescriptorPool()
        for fd in fds.file:
            pool.Add(fd)
        factory = message_factory.MessageFactory(pool)
        for name in ["snowflake.v1.NextRequest", "snowflake.v1.NextReply",
                     "snowflake.v1.DecodeRequest", "snowflake.v1.DecodeReply",
                     "grpc.health.v1.HealthCheckRequest",
                     "grpc.health.v1.HealthCheckResponse"]:
            cls = factory.GetPrototype(pool.FindMessageTypeByName(name))
            setattr(self, name.rsplit(".", 1)[1], cls)


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    if not shutil.which("protoc-c"):
        pytest.skip("protoc-c not installed (protobuf-c-compiler)")
    return Messages(str(tmp_path_factory.mktemp("proto")))


class Client:
    """A grpcio channel to a node, with one callable per method."""

    def __init__(self, port, pb):
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        self.pb = pb

        def method(path, req, rep):
            return self.channel.unary_unary(
                path, request_serializer=req.SerializeToString,
                response_deserializer=rep.FromString)
        self.next = method("/snowflake.v1.Snowflake/Next", pb.NextRequest,
                           pb.NextReply)
        self.decode = method("/snowflake.v1.Snowflake/Decode",
                             pb.DecodeRequest, pb.DecodeReply)
        self.check = method("/grpc.health.v1.Health/Check",
                            pb.HealthCheckRequest, pb.HealthCheckResponse)

    def close(self):
        self.channel.close()


@pytest.fixture
def client(pb):
    made = []

    def make(node):
        c = Client(node.port, pb)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def status_of(call, *args):
    with pytest.raises(grpc.RpcError) as e:
        call(*args, timeout=10)
    return e.value.code(), e.value.details()


def test_next_one_and_many(snowflaked, client, pb):
    n = snowflaked(MACHINE_ID="9")
    c = client(n)
    r = c.next(pb.NextRequest(), timeout=10)
    assert len(r.ids) == 1 and r.machine_id == 9
    r2 = c.next(pb.NextRequest(count=500), timeout=10)
    assert len(r2.ids) == 500 and r2.machine_id == 9
    ids = list(r.ids) + list(r2.ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for i in ids[:5]:
        assert (i >> 12) & 1023 == 9  # the default layout's machine field
    # IDs from HTTP/1.1 and gRPC interleave without a duplicate.
    h1 = n.get_json("/id")["id"]
    r3 = c.next(pb.NextRequest(count=1), timeout=10)
    assert ids[-1] < h1 < r3.ids[0]


def test_next_count_above_max_batch_is_invalid_argument(snowflaked, client,
                                                        pb):
    n = snowflaked(MAX_BATCH="100")
    c = client(n)
    assert len(c.next(pb.NextRequest(count=100), timeout=10).ids) == 100
    code, msg = status_of(c.next, pb.NextRequest(count=101))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "count" in msg and "100" in msg


def test_decode_matches_http(snowflaked, client, pb):
    n = snowflaked(MACHINE_ID="3")
    c = client(n)
    i = c.next(pb.NextRequest(), timeout=10).ids[0]
    d = c.decode(pb.DecodeRequest(id=i), timeout=10)
    h = n.get_json("/decode/%d" % i)
    assert d.id == i == h["id"]
    assert d.unix_ms == h["timestamp_ms"]
    assert abs(d.unix_ms - time.time() * 1000) < 60000
    assert d.time == h["time"] and d.time.endswith("Z")
    assert d.machine_id == h["machine_id"] == 3
    assert d.sequence == h["sequence"]
    assert d.unix_ms == (i >> 22) + EPOCH_MS


def test_decode_sign_bit_is_invalid_argument(snowflaked, client, pb):
    c = client(snowflaked())
    code, msg = status_of(c.decode, pb.DecodeRequest(id=1 << 63))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "9223372036854775807" in msg


def test_unknown_method_is_unimplemented(snowflaked, client, pb):
    c = client(snowflaked())
    nope = c.channel.unary_unary(
        "/snowflake.v1.Snowflake/Nope",
        request_serializer=pb.NextRequest.SerializeToString,
        response_deserializer=pb.NextReply.FromString)
    code, msg = status_of(nope, pb.NextRequest())
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert msg == "unknown method Nope for service snowflake.v1.Snowflake"


def test_health_serving(snowflaked, client, pb):
    c = client(snowflaked())
    r = c.check(pb.HealthCheckRequest(), timeout=10)
    assert r.status == pb.HealthCheckResponse.SERVING
    r = c.check(pb.HealthCheckRequest(service="snowflake.v1.Snowflake"),
                timeout=10)
    assert r.status == pb.HealthCheckResponse.SERVING
    code, msg = status_of(c.check, pb.HealthCheckRequest(service="other.Svc"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert msg.startswith("unknown service other.Svc "), msg


def test_clock_behind_is_unavailable_and_not_serving(snowflaked, client, pb,
                                                     tmp_path):
    path = tmp_path / "state"
    path.write_text("%d\n" % (int(time.time() * 1000) + 120000))
    c = client(snowflaked(STATE_FILE=str(path)))
    code, msg = status_of(c.next, pb.NextRequest())
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "clock" in msg
    r = c.check(pb.HealthCheckRequest(), timeout=10)
    assert r.status == pb.HealthCheckResponse.NOT_SERVING


def metric(node, name, **labels):
    _, _, body = node.get("/metrics")
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    want = "{%s}" % want if want else ""
    m = re.search(r"^snowflake_%s%s (\d+)$" % (name, re.escape(want)),
                  body.decode(), re.M)
    assert m, (name, labels, body.decode())
    return int(m.group(1))


def test_metrics_count_by_protocol(snowflaked, client, pb):
    n = snowflaked()
    c = client(n)
    for _ in range(7):
        c.next(pb.NextRequest(), timeout=10)
    n.get("/id")
    curl_h2(n, "/id")
    curl_h2(n, "/id")
    assert metric(n, "protocol_requests_total", protocol="grpc") == 7
    assert metric(n, "protocol_requests_total", protocol="h2") == 2
    # The two /metrics scrapes before this one count as HTTP/1.x too.
    assert metric(n, "protocol_requests_total", protocol="http1") >= 3


# ------------------------------------------------------- h2c, HTTP routes

def curl_h2(node, path, *args):
    p = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge",
         *([] if "-I" in args else ["-D", "-"]), *args,
         "http://127.0.0.1:%d%s" % (node.port, path)],
        capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/2 "), lines[0]
    hdrs = dict(ln.split(": ", 1) for ln in lines[1:])
    return int(lines[0].split()[1]), hdrs, body


def test_h2c_routes_answer_as_http1(snowflaked):
    n = snowflaked(MACHINE_ID="4")
    st, h, body = curl_h2(n, "/id")
    assert st == 200 and h["content-type"] == "application/json"
    j = json.loads(body)
    assert j["machine_id"] == 4 and j["id_str"] == str(j["id"])
    st, h, body = curl_h2(n, "/ids?count=3&format=string")
    assert st == 200 and len(json.loads(body)["ids"]) == 3
    st, h, body = curl_h2(n, "/decode/%d" % j["id"])
    assert st == 200 and json.loads(body) == n.get_json("/decode/%d" % j["id"])
    st, _, body = curl_h2(n, "/health")
    assert st == 200 and body == b"ok"
    st, _, body = curl_h2(n, "/nope")
    assert st == 404 and json.loads(body)["error"] == "no such endpoint"
    st, h, body = curl_h2(n, "/id", "-X", "POST")
    assert st == 405 and h["allow"] == "GET, HEAD"
    st, h, body = curl_h2(n, "/id", "-I")
    assert st == 200 and body == b"" and int(h["content-length"]) > 0
    # HTTP/1.1 on the same port is unchanged.
    assert n.get("/id")[0] == 200


def test_h2c_clock_behind_503_with_retry_after(snowflaked, tmp_path):
    path = tmp_path / "state"
    path.write_text("%d\n" % (int(time.time() * 1000) + 120000))
    n = snowflaked(STATE_FILE=str(path))
    st, h, body = curl_h2(n, "/id")
    assert st == 503 and 100 <= int(h["retry-after"]) <= 121
    assert "clock" in json.loads(body)["error"]


@pytest.mark.skipif(not shutil.which("h2load"), reason="nghttp2-client")
def test_h2load_id_all_200(snowflaked):
    n = snowflaked()
    p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10",
                        "http://127.0.0.1:%d/id" % n.port],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"status codes: 2000 2xx", p.stdout), p.stdout
    assert metric(n, "requests_total", endpoint="id", status="200") == 2000
    assert metric(n, "protocol_requests_total", protocol="h2") == 2000


@pytest.mark.skipif(not shutil.which("h2load"), reason="nghttp2-client")
def test_h2load_grpc_next(snowflaked, tmp_path, pb):
    """h2load posts the framed NextRequest, as the benchmark does."""
    n = snowflaked()
    msg = pb.NextRequest(count=1).SerializeToString()
    body = tmp_path / "next.bin"
    body.write_bytes(b"\0" + len(msg).to_bytes(4, "big") + msg)
    p = subprocess.run(["h2load", "-n", "1000", "-c", "4", "-m", "10",
                        "-d", str(body), "-H", "content-type: application/grpc",
                        "-H", "te: trailers",
                        "http://127.0.0.1:%d/snowflake.v1.Snowflake/Next"
                        % n.port], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"status codes: 1000 2xx", p.stdout), p.stdout
    assert metric(n, "protocol_requests_total", protocol="grpc") == 1000
    assert metric(n, "ids_issued_total") == 1000


def test_bad_request_messages(snowflaked, client, pb):
    """Bytes that are not a NextRequest: INVALID_ARGUMENT; a message over
    4 KiB: RESOURCE_EXHAUSTED; neither mints an ID."""
    n = snowflaked()
    c = client(n)
    raw = c.channel.unary_unary(
        "/snowflake.v1.Snowflake/Next", request_serializer=lambda b: b,
        response_deserializer=pb.NextReply.FromString)
    code, msg = status_of(raw, b"\x08")  # a varint cut short
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "NextRequest" in msg
    # Field 15 (bytes), 5,000 bytes: an unknown field, but too large.
    big = b"\x7a" + bytes([0x88, 0x27]) + b"x" * 5000
    code, msg = status_of(raw, big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4096" in msg
    assert metric(n, "ids_issued_total") == 0
    # The same channel still works.
    assert len(c.next(pb.NextRequest(count=2), timeout=10).ids) == 2


# ------------------------------------- answers at the end of the headers

def h2_open(port, path, content_type="application/grpc", extra=()):
    """A python3-h2 client that sends a POST's headers without END_STREAM
    (its body never comes) and reads events until the stream ends or 5 s
    pass: (seconds to the response, {name: value}, [events])."""
    h2conn = pytest.importorskip("h2.connection")
    h2config = pytest.importorskip("h2.config")
    h2events = pytest.importorskip("h2.events")
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    c = h2conn.H2Connection(h2config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "POST"), (":scheme", "http"),
                       (":path", path), (":authority", "localhost"),
                       ("content-type", content_type), ("te", "trailers"),
                       *extra], end_stream=False)
    s.sendall(c.data_to_send())
    t0, took, hdrs, events = time.monotonic(), None, {}, []
    try:
        while not any(isinstance(e, h2events.StreamReset) for e in events):
            data = s.recv(65536)
            if not data:
                break
            for e in c.receive_data(data):
                events.append(e)
                if isinstance(e, h2events.ResponseReceived):
                    took = time.monotonic() - t0
                    hdrs = {k.decode(): v.decode() for k, v in e.headers}
            s.sendall(c.data_to_send())
    except socket.timeout:
        pass
    s.close()
    return took, hdrs, events


@pytest.mark.parametrize("path,ctype,extra,status,grpc_status,word", [
    ("/snowflake.v1.Snowflake/Nope", "application/grpc", (), "200", "12",
     "unknown method Nope for service snowflake.v1.Snowflake"),
    ("/grpc.reflection.v9.ServerReflection/ServerReflectionInfo",
     "application/grpc", (), "200", "12",
     "unknown service grpc.reflection.v9.ServerReflection"),
    ("/snowflake.v1.Snowflake/Next", "application/grpc+json", (), "200",
     "12", "protobuf"),
    ("/snowflake.v1.Snowflake/Next", "application/grpc",
     (("grpc-encoding", "gzip"),), "200", "12", "grpc-encoding"),
    ("/snowflake.v1.Snowflake/Next", "application/json", (), "415", None,
     None),
])
def test_status_at_end_of_headers(snowflaked, path, ctype, extra, status,
                                  grpc_status, word):
    """A call whose outcome the headers decide is answered at once, not
    when the client half-closes (which a streaming client like grpcurl's
    reflection never does first); the stream is then reset with NO_ERROR."""
    h2events = pytest.importorskip("h2.events")
    n = snowflaked()
    took, hdrs, events = h2_open(n.port, path, ctype, extra)
    assert took is not None and took < 1.0, events
    assert hdrs[":status"] == status, hdrs
    assert hdrs.get("grpc-status") == grpc_status, hdrs
    if word:
        assert word in hdrs["grpc-message"], hdrs
    if extra:
        assert hdrs["grpc-accept-encoding"] == "identity"
    resets = [e for e in events if isinstance(e, h2events.StreamReset)]
    assert resets and resets[0].error_code == 0, events
    assert metric(n, "ids_issued_total") == 0
