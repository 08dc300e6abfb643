"""Hostile HTTP/2 against the real snowflaked: each abuse gets a connection
error (GOAWAY, then close) or a stream error (RST_STREAM), memory stays
bounded and other clients are served meanwhile.

Frames are built with hyperframe and header blocks with hpack (the
libraries under Debian's python3-h2), sent over plain sockets, so the
tests can do what a well-behaved client library refuses to.
"""
import json
import socket
import threading

import pytest

from conftest import connect, parse_responses, raw, request
from test_hostile import sanitized, vm_rss_kb

hpack = pytest.importorskip("hpack", reason="python3-h2 not installed")
hf = pytest.importorskip("hyperframe.frame", reason="python3-h2 not installed")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, INTERNAL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR = 1, 2, 5, 6
REFUSED_STREAM, ENHANCE_YOUR_CALM = 7, 11


def req_headers(path="/id", method="GET"):
    return [(":method", method), (":scheme", "http"), (":path", path),
            (":authority", "localhost")]


class Raw:
    """An HTTP/2 connection driven frame by frame."""

    def __init__(self, port):
        self.s = connect(port)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.s.sendall(PREFACE + hf.SettingsFrame(0).serialize())

    def send(self, *frames):
        self.s.sendall(b"".join(f.serialize() for f in frames))

    def headers(self, sid, hdrs, end=True):
        f = hf.HeadersFrame(sid, self.enc.encode(hdrs))
        f.flags.add("END_HEADERS")
        if end:
            f.flags.add("END_STREAM")
        return f

    def frames(self, until=None, timeout=10):
        """Reads frames until until(frame) is true or the peer closes;
        returns every frame read. Header blocks are decoded into
        frame.decoded."""
        self.s.settimeout(timeout)
        got = []
        while True:
            while len(self.buf) >= 9:
                f, n = hf.Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + n:
                    break
                f.parse_body(memoryview(self.buf[9:9 + n]))
                self.buf = self.buf[9 + n:]
                if isinstance(f, hf.HeadersFrame):
                    f.decoded = self.dec.decode(f.data)
                got.append(f)
                if until and until(f):
                    return got
            try:
                b = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return got
            if not b:
                return got
            self.buf += b

    def close(self):
        self.s.close()


def goaway(frames):
    g = [f for f in frames if isinstance(f, hf.GoAwayFrame)]
    return g[0].error_code if g else None


def served(port):
    """A fresh well-behaved h2c client gets /id answered: 200 and an id."""
    c = Raw(port)
    c.send(c.headers(1, req_headers("/id")))
    fs = c.frames(until=lambda f: isinstance(f, hf.DataFrame)
                  and "END_STREAM" in f.flags)
    c.close()
    hs = [f for f in fs if isinstance(f, hf.HeadersFrame)]
    body = b"".join(f.data for f in fs if isinstance(f, hf.DataFrame))
    assert hs and (":status", "200") in hs[0].decoded, fs
    return json.loads(body)["id"]


def test_well_behaved_raw_client(snowflaked):
    n = snowflaked()
    a, b = served(n.port), served(n.port)
    assert b > a


def test_sigterm_says_goaway_no_error(snowflaked):
    """A shutdown tells an idle HTTP/2 client goodbye (GOAWAY NO_ERROR,
    naming the last stream it served) before the connection closes, and
    the node still exits 0."""
    n = snowflaked()
    c = Raw(n.port)
    c.send(c.headers(1, req_headers("/id")))
    c.frames(until=lambda f: isinstance(f, hf.DataFrame)
             and "END_STREAM" in f.flags)
    assert n.stop() == 0
    fs = c.frames()  # until the server closes
    g = [f for f in fs if isinstance(f, hf.GoAwayFrame)]
    assert len(g) == 1, fs
    assert g[0].error_code == 0 and g[0].last_stream_id == 1, g[0]
    c.close()


@pytest.mark.parametrize("data", [
    b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",  # a preface gone wrong
    b"INVALID CONNECTION PREFACE\r\n\r\n",  # h2spec 3.5/2
    b"\x00\x01garbage\r\n\r\n",
])
def test_not_http_is_closed_without_an_answer(snowflaked, data):
    """Neither the HTTP/2 preface nor an HTTP/1.x method: the peer speaks
    neither, so the connection closes with nothing sent (RFC 9113 section
    3.4 for a broken preface). Other clients are served meanwhile."""
    n = snowflaked()
    s = connect(n.port)
    s.sendall(data)
    assert s.recv(65536) == b""
    s.close()
    assert served(n.port)


def test_bad_method_after_a_request_is_400(snowflaked):
    """A connection that spoke HTTP/1.x gets 400 for a malformed request."""
    n = snowflaked()
    got = parse_responses(raw(n.port, request("GET", "/health")
                              + b"GTE /id HTTP/1.1\r\n\r\n"))
    assert [g[0] for g in got] == [200, 400]


def test_preface_then_garbage_is_goaway_protocol_error(snowflaked):
    n = snowflaked()
    s = connect(n.port)
    # The first frame must be SETTINGS: a HEADERS frame on stream 0 is not.
    s.sendall(PREFACE + b"\x00\x00\x04\x01\x05\x00\x00\x00\x00abcd")
    c = Raw.__new__(Raw)
    c.s, c.buf, c.dec = s, b"", hpack.Decoder()
    fs = c.frames()
    assert goaway(fs) == PROTOCOL_ERROR, fs
    assert served(n.port)


def test_oversized_frame_is_goaway_frame_size_error(snowflaked):
    n = snowflaked()
    c = Raw(n.port)
    # A DATA frame of 20,000 bytes: above SETTINGS_MAX_FRAME_SIZE (16,384).
    c.send(c.headers(1, req_headers("/id", "POST"), end=False))
    c.s.sendall(b"\x00\x4e\x20\x00\x01\x00\x00\x00\x01" + b"x" * 20000)
    fs = c.frames()
    assert goaway(fs) == FRAME_SIZE_ERROR, fs
    assert served(n.port)


@pytest.mark.parametrize("kind", ["ping", "settings", "priority"])
def test_control_frame_flood_is_goaway_enhance_your_calm(snowflaked, kind):
    n = snowflaked()
    c = Raw(n.port)
    one = {"ping": hf.PingFrame(0, b"12345678"),
           "settings": hf.SettingsFrame(0),
           "priority": hf.PriorityFrame(1, depends_on=0, stream_weight=16),
           }[kind].serialize()
    flood = one * 20000

    def send():
        try:
            c.s.sendall(flood)
        except OSError:
            pass  # closed on us: the point
    t = threading.Thread(target=send)
    t.start()
    fs = c.frames(timeout=20)
    t.join(20)
    acks = sum(1 for f in fs if "ACK" in f.flags)
    assert goaway(fs) == ENHANCE_YOUR_CALM, (len(fs), acks)
    assert acks < 20000
    assert served(n.port)


def status_of(frames, sid):
    hs = [f for f in frames if isinstance(f, hf.HeadersFrame)
          and f.stream_id == sid]
    return dict(hs[0].decoded).get(":status") if hs else None


def test_headers_that_decompress_huge_get_431(snowflaked):
    """One 4 KB field in the dynamic table, then referenced 2000 times by a
    one-byte index: about 100 bytes of HEADERS decompress to 8 MB. Nothing
    past 8 KiB is kept; the stream gets 431 as on HTTP/1.1 and the
    connection goes on."""
    n = snowflaked()
    c = Raw(n.port)
    big = ("x-big", "a" * 4000)
    bomb = c.headers(1, req_headers("/id") + [big] * 2000)
    assert len(bomb.data) < 8000
    c.send(bomb)
    fs = c.frames(until=lambda f: isinstance(f, hf.DataFrame))
    assert status_of(fs, 1) == "431", fs
    # The HPACK state stays in step: the same connection serves stream 3.
    c.send(c.headers(3, req_headers("/health")))
    fs = c.frames(until=lambda f: isinstance(f, hf.DataFrame)
                  and f.stream_id == 3)
    assert status_of(fs, 3) == "200", fs
    c.close()


@pytest.mark.parametrize("path,extra,status", [
    ("/id", [("x-big", "a" * 9000)], 431),
    ("/id", [("x-h%03d" % i, "v" * 20) for i in range(300)], 431),
    ("/id", [("x-h%03d" % i, "v" * 20) for i in range(250)], 200),
    ("/" + "a" * 3000, [], 414),
], ids=["one_9k_field", "300_fields", "250_fields", "target_3k"])
def test_header_limits_as_on_http1(snowflaked, path, extra, status):
    """The same request over HTTP/1.1 and HTTP/2 meets the same limits
    (8 KiB of header fields, a 2 KiB target) and gets the same status and
    body; on HTTP/2 only the stream ends, even before its END_STREAM."""
    n = snowflaked()
    h1 = parse_responses(raw(n.port, request(
        "GET", path, headers=["%s: %s" % kv for kv in extra])))
    assert h1[0][0] == status, h1
    c = Raw(n.port)
    c.send(c.headers(1, req_headers(path) + extra, end=status == 200))
    fs = c.frames(until=lambda f: isinstance(f, hf.DataFrame))
    assert status_of(fs, 1) == str(status), fs
    body = b"".join(f.data for f in fs if isinstance(f, hf.DataFrame))
    if status != 200:
        assert json.loads(body) == json.loads(h1[0][2])
    c.send(c.headers(3, req_headers("/health")))
    fs = c.frames(until=lambda f: isinstance(f, hf.DataFrame)
                  and f.stream_id == 3)
    assert status_of(fs, 3) == "200", fs
    c.close()


def test_grpc_metadata_over_limit_is_resource_exhausted(snowflaked):
    n = snowflaked()
    c = Raw(n.port)
    c.send(c.headers(1, req_headers("/snowflake.v1.Snowflake/Next", "POST")
                     + [("content-type", "application/grpc"),
                        ("x-big", "a" * 9000)], end=False))
    fs = c.frames(until=lambda f: isinstance(f, hf.HeadersFrame))
    h = dict(fs[-1].decoded)
    assert h[":status"] == "200" and h["grpc-status"] == "8", h
    assert "8192" in h["grpc-message"], h
    c.close()


def test_rapid_reset_is_goaway(snowflaked):
    """CVE-2023-44487: open a stream and reset it at once, thousands of
    times. nghttp2's reset rate limit ends the connection."""
    n = snowflaked()
    c = Raw(n.port)
    out = []
    for i in range(3000):
        sid = 1 + 2 * i
        out.append(c.headers(sid, req_headers("/health")).serialize())
        out.append(hf.RstStreamFrame(sid, error_code=8).serialize())
    payload = b"".join(out)

    def send():
        try:
            c.s.sendall(payload)
        except OSError:
            pass
    t = threading.Thread(target=send)
    t.start()
    fs = c.frames(timeout=20)
    t.join(20)
    assert goaway(fs) is not None, len(fs)
    assert served(n.port)


def test_more_streams_than_max_concurrent_are_refused(snowflaked):
    n = snowflaked()
    c = Raw(n.port)
    fs = c.frames(until=lambda f: isinstance(f, hf.SettingsFrame))
    limit = fs[-1].settings[hf.SettingsFrame.MAX_CONCURRENT_STREAMS]
    assert limit == 100
    c.send(hf.SettingsFrame(0, flags=["ACK"]))
    # 150 requests left open (no END_STREAM): 50 over the limit.
    c.send(*[c.headers(1 + 2 * i, req_headers("/id", "POST"), end=False)
             for i in range(150)])
    fs = c.frames(until=lambda f: isinstance(f, (hf.RstStreamFrame,
                                                 hf.GoAwayFrame)))
    last = fs[-1]
    assert isinstance(last, (hf.RstStreamFrame, hf.GoAwayFrame)), fs
    if isinstance(last, hf.RstStreamFrame):
        assert last.stream_id > 1 + 2 * 99
        assert last.error_code in (REFUSED_STREAM, PROTOCOL_ERROR)
    assert served(n.port)


def test_clients_that_never_read_hold_bounded_memory(snowflaked):
    """40 connections each ask for 100 x 1000 IDs (about 2 MB of answers
    each) and never read or open their flow-control windows. Output
    waiting per connection is bounded, RSS stays low, others are served."""
    n = snowflaked(THREADS="1")
    conns = []
    for _ in range(40):
        c = Raw(n.port)
        c.s.setblocking(False)
        reqs = [c.headers(1 + 2 * i, req_headers("/ids?count=1000"))
                for i in range(100)]
        try:
            c.s.send(b"".join(f.serialize() for f in reqs))
        except BlockingIOError:
            pass
        conns.append(c)
    for _ in range(3):
        assert served(n.port)
    rss_mb = vm_rss_kb(n.proc.pid) / 1024.0
    print("VmRSS with 40 non-reading h2 connections: %.1f MB" % rss_mb)
    if not sanitized(n.proc.pid):
        assert rss_mb < 48.0, rss_mb
    for c in conns:
        c.close()
    assert served(n.port)


# ------------------------------ frames on closed streams (RFC 9113 5.1)

def finished(c, sid, path="/health"):
    """Sends a whole request on sid and reads until its answer ends."""
    c.send(c.headers(sid, req_headers(path)))
    c.frames(until=lambda f: isinstance(f, hf.DataFrame)
             and f.stream_id == sid and "END_STREAM" in f.flags)


def data(sid, payload=b"x", end=True):
    f = hf.DataFrame(sid, payload)
    if end:
        f.flags.add("END_STREAM")
    return f


@pytest.mark.parametrize("case", [
    "headers_after_close", "data_after_close", "data_after_client_reset",
    "lower_id_never_opened", "priority_on_stream_0", "priority_on_itself",
    "data_on_stream_0", "data_after_continuation_with_0x1"])
def test_frames_on_closed_streams_are_errors(snowflaked, case):
    """What h2spec 5.1, 5.1.1, 5.3.1 and 6.3 send: a connection error of
    the type RFC 9113 names (a stream error is allowed for some; this
    server ends the connection)."""
    n = snowflaked()
    c = Raw(n.port)
    want = STREAM_CLOSED
    if case == "headers_after_close":
        finished(c, 1)
        c.send(c.headers(1, req_headers("/health")))
    elif case == "data_after_close":
        finished(c, 1)
        c.send(data(1))
    elif case == "data_after_client_reset":
        c.send(c.headers(1, req_headers("/id", "POST"), end=False),
               hf.RstStreamFrame(1, error_code=8), data(1))
    elif case == "lower_id_never_opened":
        finished(c, 5)
        c.send(c.headers(3, req_headers("/health")))
        want = PROTOCOL_ERROR
    elif case == "priority_on_stream_0":
        # hyperframe refuses to build it: the bytes by hand.
        c.s.sendall(b"\x00\x00\x05\x02\x00\x00\x00\x00\x00"
                    b"\x00\x00\x00\x01\x10")
        want = PROTOCOL_ERROR
    elif case == "data_on_stream_0":
        # RFC 9113 6.1: PROTOCOL_ERROR (hyperframe refuses stream 0).
        c.s.sendall(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
        want = PROTOCOL_ERROR
    elif case == "data_after_continuation_with_0x1":
        # 0x1 is no CONTINUATION flag (RFC 9113 4.1): stream 1 stays open,
        # its request body and answer go on; then DATA after its end.
        block = hpack.Encoder().encode(req_headers("/id", "POST"))
        c.s.sendall(b"\x00\x00\x00\x01\x00\x00\x00\x00\x01" +
                    len(block).to_bytes(3, "big") + b"\x09\x05\x00\x00\x00\x01"
                    + block)
        c.send(data(1, b"", end=True))
        c.frames(until=lambda f: isinstance(f, hf.DataFrame)
                 and f.stream_id == 1 and "END_STREAM" in f.flags)
        c.send(data(1))
    else:
        c.send(hf.PriorityFrame(3, depends_on=3, stream_weight=16))
        want = PROTOCOL_ERROR
    fs = c.frames()
    g = [f for f in fs if isinstance(f, hf.GoAwayFrame)]
    r = [f for f in fs if isinstance(f, hf.RstStreamFrame)
         and f.error_code != 0]
    assert (g and g[0].error_code == want) or \
        (r and r[0].error_code == want), fs
    assert served(n.port)


def test_frames_in_flight_after_a_server_reset_are_ignored(snowflaked):
    """An early answer (an unknown gRPC method) ends with RST_STREAM
    NO_ERROR; the body the client had sent meanwhile, and its trailers, are
    ignored (RFC 9113 5.1), and the same connection goes on."""
    n = snowflaked()
    c = Raw(n.port)
    grpc_req = req_headers("/snowflake.v1.Snowflake/Nope", "POST") + [
        ("content-type", "application/grpc")]
    c.send(c.headers(1, grpc_req, end=False))
    fs = c.frames(until=lambda f: isinstance(f, hf.RstStreamFrame))
    assert fs[-1].error_code == 0, fs
    c.send(data(1, b"\0\0\0\0\0", end=False),
           c.headers(1, [("grpc-timeout", "1S")]))
    finished(c, 3)
    fs = c.frames(timeout=0.5)
    assert not [f for f in fs if isinstance(f, hf.GoAwayFrame)], fs
    c.close()
