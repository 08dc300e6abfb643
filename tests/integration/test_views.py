"""Every view of an ID over HTTP, against the real snowflaked: format= on
/id and /ids, /decode/<id> of every view, /bounds, every 400 they give, and
the clock gauges in /metrics. The expected values are computed here, from
the layout and RFC 9562, not read back from the server."""
import json
import re
import uuid

import pytest

from conftest import parse_responses, raw, request
from test_clock import FakeClock, LIBFAKETIME, metric

EPOCH_MS = 1704067200000
END_MS = EPOCH_MS + (1 << 41)  # the first ms the layout cannot stamp
MAX_ID = 2**63 - 1
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
HEX = "0123456789abcdef"
WIDTH = {"hex": 16, "base62": 11, "base32": 13}
ALPHABET = {"hex": HEX, "base62": B62, "base32": B32}


def enc(i, alphabet, width):
    s = ""
    while i:
        s = alphabet[i % len(alphabet)] + s
        i //= len(alphabet)
    return s.rjust(width, "0")


def dec(s, alphabet):
    v = 0
    for ch in s:
        v = v * len(alphabet) + alphabet.index(ch)
    return v


def parts(i):
    return (i >> 22) + EPOCH_MS, (i >> 12) & 1023, i & 4095


def uuid_of(i):
    """RFC 9562 section 5.7: unix_ts_ms | ver 7 | rand_a = sequence |
    var 0b10 | rand_b = machine id in its top 10 bits, then zeros."""
    ms, machine, seq = parts(i)
    return str(uuid.UUID(int=(ms << 80) | (7 << 76) | (seq << 64) | (2 << 62)
                         | (machine << 52)))


def view(i, fmt):
    return uuid_of(i) if fmt == "uuid" else enc(i, ALPHABET[fmt], WIDTH[fmt])


@pytest.fixture
def node(snowflaked):
    return snowflaked(MACHINE_ID="613", THREADS="2")


def error_of(node, path):
    st, h, body = node.get(path)
    assert st == 400, (path, st, body)
    assert h["content-type"] == "application/json"
    j = json.loads(body)
    assert list(j) == ["error"], j
    return j["error"]


# ------------------------------------------------------------------ /id

@pytest.mark.parametrize("fmt", ["uuid", "hex", "base62", "base32"])
def test_id_format_adds_the_view(node, fmt):
    j = node.get_json("/id?format=" + fmt)
    assert list(j) == ["id", "id_str", "machine_id", fmt]
    assert j["id_str"] == str(j["id"]) and j["machine_id"] == 613
    assert j[fmt] == view(j["id"], fmt)
    if fmt == "uuid":
        u = uuid.UUID(j["uuid"])
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert u.int >> 80 == parts(j["id"])[0]


# ----------------------------------------------------------------- /ids

@pytest.mark.parametrize("fmt", ["uuid", "hex", "base62", "base32"])
def test_ids_format_strings_sort_as_the_ids(node, fmt):
    j = node.get_json("/ids?count=10000&format=" + fmt)
    got = j["ids"]
    assert j["machine_id"] == 613 and len(got) == 10000
    assert all(isinstance(s, str) for s in got)
    # Issue order is text order, and each decodes to an ID of this node.
    assert got == sorted(set(got))
    if fmt == "uuid":
        ids = [node.get_json("/decode/" + s)["id"] for s in got[:3]]
        assert [uuid_of(i) for i in ids] == got[:3]
        for s in got:
            u = uuid.UUID(s)
            assert u.version == 7 and (u.int >> 52) & 1023 == 613
            assert u.int & ((1 << 52) - 1) == 0
    else:
        ids = [dec(s, ALPHABET[fmt]) for s in got]
        assert all(len(s) == WIDTH[fmt] for s in got)
        assert ids == sorted(set(ids))
        assert all(parts(i)[1] == 613 for i in ids)
        assert [view(i, fmt) for i in ids] == got


def test_ids_number_and_string_stay(node):
    n = node.get_json("/ids?count=3&format=number")["ids"]
    s = node.get_json("/ids?count=3&format=string")["ids"]
    assert all(isinstance(i, int) for i in n)
    assert all(isinstance(i, str) and int(i) > n[-1] for i in s)


# -------------------------------------------------------------- /decode

def test_decode_every_view(node):
    i = node.get_json("/id")["id"]
    want = node.get_json("/decode/%d" % i)
    assert want["id"] == i and want["machine_id"] == 613
    forms = [("dec", str(i))]
    for fmt in ("hex", "base62", "base32", "uuid"):
        forms.append((fmt, view(i, fmt)))
    # Unpadded, upper-case hex, Crockford's lenient letters, upper-case UUID.
    forms += [("hex", view(i, "hex").lstrip("0").upper()),
              ("base62", view(i, "base62").lstrip("0")),
              ("base32", view(i, "base32").lower().replace("0", "o")
               .replace("1", "l")),
              ("uuid", uuid_of(i).upper())]
    for fmt, text in forms:
        assert node.get_json("/decode/%s?format=%s" % (text, fmt)) == want, \
            (fmt, text)
    # A UUID is known by its shape when no format is given.
    assert node.get_json("/decode/" + uuid_of(i)) == want
    assert node.get_json("/decode/" + uuid_of(i).upper()) == want


def test_decode_extremes(node):
    for i in (0, 1, MAX_ID, (1 << 22) - 1, 1 << 22):
        want = {"id": i, "id_str": str(i), "timestamp_ms": parts(i)[0],
                "machine_id": parts(i)[1], "sequence": parts(i)[2]}
        for fmt in ("hex", "base62", "base32", "uuid"):
            got = node.get_json("/decode/%s?format=%s" % (view(i, fmt), fmt))
            del got["time"]
            assert got == want, (i, fmt)


# -------------------------------------------------------------- /bounds

def test_bounds(node):
    j = node.get_json("/bounds?time=2025-01-01T00:00:00Z")
    ms = 1735689600000 - EPOCH_MS
    assert j == {"time": "2025-01-01T00:00:00.000Z",
                 "timestamp_ms": 1735689600000,
                 "min_id": ms << 22, "max_id": (ms << 22) | (2**22 - 1),
                 "min_id_str": str(ms << 22),
                 "max_id_str": str((ms << 22) | (2**22 - 1))}
    assert node.get_json("/bounds?time=1735689600000") == j
    assert node.get_json("/bounds?time=2025-01-01T00%3A00%3A00.000Z") == j
    assert node.get_json("/bounds?time=%d" % EPOCH_MS)["min_id"] == 0
    last = node.get_json("/bounds?time=2093-09-06T15:47:35.551Z")
    assert last["max_id"] == MAX_ID and last["timestamp_ms"] == END_MS - 1
    # An ID issued now lies within the bounds of its millisecond, and the
    # next millisecond starts right after.
    i = node.get_json("/id")["id"]
    b = node.get_json("/bounds?time=%d" % parts(i)[0])
    assert b["min_id"] <= i <= b["max_id"]
    after = node.get_json("/bounds?time=%d" % (parts(i)[0] + 1))
    assert after["min_id"] == b["max_id"] + 1


def test_bounds_follow_the_epoch(snowflaked):
    n = snowflaked(EPOCH="2025-01-01T00:00:00Z")
    j = n.get_json("/bounds?time=2025-01-01T00:00:00.001Z")
    assert j["min_id"] == 1 << 22
    msg = error_of(n, "/bounds?time=2024-12-31T23:59:59.999Z")
    assert msg == ("time is outside this node's epoch range "
                   "(2025-01-01T00:00:00.000Z .. 2094-09-07T15:47:35.551Z)")


# ------------------------------------------------------------ every 400

ID_FORMATS = "format must be one of uuid, hex, base62, base32"
IDS_FORMATS = "format must be one of number, string, uuid, hex, base62, base32"
DECODE_FORMATS = "format must be one of dec, hex, base62, base32, uuid"
TIME_ACCEPTED = "ISO-8601 UTC (YYYY-MM-DDTHH:MM:SS[.mmm]Z) or unix ms"
RANGE = ("time is outside this node's epoch range "
         "(2024-01-01T00:00:00.000Z .. 2093-09-06T15:47:35.551Z)")

BAD = [
    ("/id?format=dec", ID_FORMATS),
    ("/id?format=", ID_FORMATS),
    ("/id?format=UUID", ID_FORMATS),
    ("/id?format=string", ID_FORMATS),
    ("/ids?count=2&format=octal", IDS_FORMATS),
    ("/ids?count=2&format=dec", IDS_FORMATS),
    ("/ids?count=2&format", IDS_FORMATS),
    ("/decode/1?format=number", DECODE_FORMATS),
    ("/decode/1?format=base64", DECODE_FORMATS),
    ("/decode/?format=hex",
     "missing id: use /decode/<id>[?format=hex|base62|base32|uuid]"),
    ("/decode/0x1f?format=hex",
     "id must be hex digits 0-9a-f (16 at most with the zero padding)"),
    ("/decode/8000000000000000?format=hex",
     "id is larger than 7fffffffffffffff"),
    ("/decode/a_b?format=base62", "id must be base62 digits 0-9A-Za-z"),
    ("/decode/AzL8n0Y58m8?format=base62", "id is larger than AzL8n0Y58m7"),
    ("/decode/U?format=base32",
     "id must be Crockford base32 digits 0-9A-Z without U"),
    ("/decode/8000000000000?format=base32",
     "id is larger than 7ZZZZZZZZZZZZ"),
    ("/decode/abc?format=dec", "id must be a decimal integer (digits 0-9 only)"),
    ("/decode/0190000000007fffbff0000000000000?format=uuid",
     "id must be a UUID xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx (hex digits)"),
    ("/decode/01900000-0000-7fff-bff0-00000000000g",
     "id must be a UUID xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx (hex digits)"),
    ("/decode/01900000-0000-4fff-bff0-000000000000",
     "UUID is not version 7 with variant 10 (RFC 9562)"),
    ("/decode/01900000-0000-7fff-3ff0-000000000000?format=uuid",
     "UUID is not version 7 with variant 10 (RFC 9562)"),
    ("/decode/017F22E2-79B0-7CC3-98C4-DC0C0C07398F",
     "UUID bits past the machine id are not zero: not the view of an ID"),
    ("/decode/017f22e2-79b0-7cc3-98c0-000000000000",
     "UUID's time is outside this node's epoch range"),
    ("/bounds", "time is required: " + TIME_ACCEPTED),
    ("/bounds?when=0", "time is required: " + TIME_ACCEPTED),
    ("/bounds?time=", "time must be " + TIME_ACCEPTED),
    ("/bounds?time=yesterday", "time must be " + TIME_ACCEPTED),
    ("/bounds?time=2025-01-01", "time must be " + TIME_ACCEPTED),
    ("/bounds?time=2025-02-30T00:00:00Z", "time must be " + TIME_ACCEPTED),
    ("/bounds?time=-1", "time must be " + TIME_ACCEPTED),
    ("/bounds?time=1%", "time must be " + TIME_ACCEPTED),
    ("/bounds?time=1%00", "time must be " + TIME_ACCEPTED),
    ("/bounds?time=" + "1" * 80, "time must be " + TIME_ACCEPTED),
    ("/bounds?time=2023-12-31T23:59:59.999Z", RANGE),
    ("/bounds?time=%d" % END_MS, RANGE),
    ("/bounds?time=9999-12-31T23:59:59.999Z", RANGE),
    ("/bounds?time=99999999999999999", RANGE),
]


@pytest.mark.parametrize("path,message", BAD, ids=[p for p, _ in BAD])
def test_bad_views_are_400(node, path, message):
    assert error_of(node, path) == message


def test_bounds_counted_in_metrics(node):
    node.get("/bounds?time=0")
    node.get_json("/bounds?time=2025-01-01T00:00:00Z")
    st, _, body = node.get("/metrics")
    text = body.decode()
    assert 'snowflake_requests_total{endpoint="bounds",status="200"} 1' in text
    assert 'snowflake_requests_total{endpoint="bounds",status="400"} 1' in text


# ------------------------------------------------------- the clock gauges

def gauge(text, name):
    m = re.search(r"^# TYPE %s gauge\n%s (\S+)$" % (name, name), text, re.M)
    assert m, text
    return float(m.group(1))


def test_time_left_and_clock_offset(node):
    text = node.get("/metrics")[2].decode()
    left = gauge(text, "snowflake_time_left_seconds")
    offset = gauge(text, "snowflake_clock_offset_seconds")
    i = node.get_json("/id")["id"]
    # The timestamp runs out at END_MS: the gauge counts down to it from the
    # time the IDs carry.
    assert abs(left - (END_MS - parts(i)[0]) / 1000) < 600
    # Just started: the default clock is the wall clock read at start.
    assert abs(offset) < 1


@pytest.mark.skipif(not __import__("os").path.exists(LIBFAKETIME),
                    reason="libfaketime not installed")
@pytest.mark.parametrize("clock_name", ["monotonic", "wall"])
def test_clock_offset_after_a_wall_step(snowflaked, tmp_path, clock_name):
    """The wall clock steps 30 s back (as an NTP step would): the default
    clock keeps going and is now 30 s ahead of the wall clock, which the
    gauge shows; CLOCK=wall follows the step, so it shows no offset."""
    clock = FakeClock(tmp_path / "faketime")
    n = snowflaked(**dict(clock.env(), CLOCK=clock_name))
    assert abs(metric(n, "snowflake_clock_offset_seconds")) < 1
    clock.set(-30)
    offset = metric(n, "snowflake_clock_offset_seconds")
    if clock_name == "monotonic":
        assert 29 < offset < 31, offset
    else:
        assert abs(offset) < 1, offset
