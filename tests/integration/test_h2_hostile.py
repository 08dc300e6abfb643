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
PROTOCOL_ERROR, INTERNAL_ERROR, FRAME_SIZE_ERROR = 1, 2, 6
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


def test_bad_preface_is_answered_as_http1(snowflaked):
    """Not the HTTP/2 preface: the connection stays HTTP/1.x, whose parser
    refuses "HTTP/2.0" with 505 and closes."""
    n = snowflaked()
    s = connect(n.port)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 505 "), data
    assert served(n.port)


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


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_control_frame_flood_is_goaway_enhance_your_calm(snowflaked, kind):
    n = snowflaked()
    c = Raw(n.port)
    one = (hf.PingFrame(0, b"12345678") if kind == "ping"
           else hf.SettingsFrame(0)).serialize()
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
