"""The real `snowflake` command: gen, decode, bounds, bench, and every argument
error (exit status 2, one line on stderr naming the flag, the accepted range
and the value given). Nothing here asserts timing."""
import json
import os
import re
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SNOWFLAKE = os.environ.get("SNOWFLAKE", os.path.join(ROOT, "build", "snowflake"))
EPOCH_MS = 1704067200000
MAX_ID = 2**63 - 1

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def run(*args, env=None, timeout=60):
    e = {k: v for k, v in os.environ.items() if k != "MACHINE_ID"}
    if env:
        e.update(env)
    return subprocess.run([SNOWFLAKE, *args], capture_output=True, env=e,
                          timeout=timeout)


def ok(*args, env=None):
    p = run(*args, env=env)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stderr == b""
    return p.stdout.decode()


def from_base(s, alphabet):
    v = 0
    for ch in s:
        v = v * len(alphabet) + alphabet.index(ch)
    return v


def parts(i):
    return i >> 22, (i >> 12) & 1023, i & 4095


def now_ms():
    return int(time.time() * 1000)


# ------------------------------------------------------------------- gen

def test_gen_default_one():
    out = ok("gen", "--machine-id", "9")
    assert re.fullmatch(r"[1-9][0-9]*\n", out)
    ms, machine, _ = parts(int(out))
    assert machine == 9
    # The default clock is the wall clock at start: within a minute of ours.
    assert abs(ms + EPOCH_MS - now_ms()) < 60000


def test_gen_count_unique_increasing():
    out = ok("gen", "-n", "100000", "--machine-id", "1023")
    ids = [int(x) for x in out.splitlines()]
    assert len(ids) == 100000
    assert all(a < b for a, b in zip(ids, ids[1:]))
    assert all(parts(i)[1] == 1023 for i in ids)
    # Never more than the sequence allows in one millisecond.
    per_ms = {}
    for i in ids:
        per_ms[i >> 22] = per_ms.get(i >> 22, 0) + 1
    assert max(per_ms.values()) <= 4096


def test_gen_machine_id_from_env():
    out = ok("gen", "-n", "3", env={"MACHINE_ID": "42"})
    assert [parts(int(x))[1] for x in out.split()] == [42, 42, 42]
    # The flag wins over the environment.
    out = ok("gen", "--machine-id", "7", env={"MACHINE_ID": "42"})
    assert parts(int(out))[1] == 7


def test_gen_equals_form_and_count_long():
    out = ok("gen", "--count=4", "--machine-id=5")
    assert len(out.split()) == 4


@pytest.mark.parametrize("fmt,alphabet,pattern", [
    ("hex", "0123456789abcdef", r"[0-9a-f]{16}"),
    ("base62", B62, r"[0-9A-Za-z]{11}"),
    ("base32", B32, r"[0-9A-HJKMNP-TV-Z]{13}"),
    ("dec", "0123456789", r"[0-9]+"),
])
def test_gen_formats_round_trip(fmt, alphabet, pattern):
    out = ok("gen", "-n", "50", "--machine-id", "3", "--format", fmt)
    words = out.split()
    assert len(words) == 50
    values = []
    for w in words:
        assert re.fullmatch(pattern, w), w
        values.append(from_base(w, alphabet))
    assert all(a < b for a, b in zip(values, values[1:]))
    assert all(parts(v)[1] == 3 for v in values)
    if fmt != "dec":
        # Fixed width: the strings sort as the IDs do.
        assert sorted(words) == words
    # decode reads its own output back.
    lines = ok("decode", "--format", fmt, *words[:5]).splitlines()
    assert [json.loads(x)["id"] for x in lines] == values[:5]


def uuid_of(i, epoch_ms=EPOCH_MS):
    """The UUIDv7 view of ID i, computed here from RFC 9562's layout."""
    ms, machine, seq = parts(i)
    v = ((ms + epoch_ms) << 80) | (7 << 76) | (seq << 64) | (2 << 62) \
        | (machine << 52)
    h = "%032x" % v
    return "-".join((h[:8], h[8:12], h[12:16], h[16:20], h[20:]))


def test_gen_uuid():
    out = ok("gen", "-n", "3000", "--machine-id", "700", "--format", "uuid")
    words = out.split()
    assert len(words) == 3000
    for w in words:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}"
                            r"-[0-9a-f]{12}", w), w
    # In issue order as text, each distinct; decode gives each ID back, and
    # its UUID is the one RFC 9562's layout gives for that ID.
    assert sorted(words) == words and len(set(words)) == len(words)
    lines = ok("decode", "--format", "uuid", *words[:50]).splitlines()
    ids = [json.loads(x)["id"] for x in lines]
    assert [uuid_of(i) for i in ids] == words[:50]
    assert all(json.loads(x)["machine_id"] == 700 for x in lines)
    assert abs(json.loads(lines[0])["timestamp_ms"] - now_ms()) < 60000


def test_decode_every_view_of_one_id():
    i = 275238510129057792
    views = [("dec", str(i)), ("hex", "03d1d7f778c01000"),
             ("hex", "3D1D7F778C01000"), ("base62", "0KKauJoWRSC"),
             ("base62", "KKauJoWRSC"), ("base32", "07MEQYXWC0400"),
             ("base32", "7meqyxwc04oo"), ("uuid", uuid_of(i)),
             ("uuid", uuid_of(i).upper())]
    want = json.loads(ok("decode", str(i)))
    assert want["id"] == i
    for fmt, text in views:
        assert json.loads(ok("decode", "--format", fmt, text)) == want, text
    # With no --format, a UUID is known by its shape.
    assert json.loads(ok("decode", uuid_of(i))) == want
    out = ok("decode", str(i), uuid_of(i)).splitlines()
    assert [json.loads(x) for x in out] == [want, want]


def test_bounds():
    out = ok("bounds", "2025-01-01T00:00:00Z", "1735689600001",
             "2024-01-01T00:00:00.000Z")
    a, b, c = [json.loads(x) for x in out.splitlines()]
    ms = 1735689600000 - EPOCH_MS
    assert a == {"time": "2025-01-01T00:00:00.000Z",
                 "timestamp_ms": 1735689600000,
                 "min_id": ms << 22, "max_id": (ms << 22) | (2**22 - 1),
                 "min_id_str": str(ms << 22),
                 "max_id_str": str((ms << 22) | (2**22 - 1))}
    assert b["min_id"] == a["max_id"] + 1
    assert c["min_id"] == 0 and c["max_id"] == 2**22 - 1
    # An ID made now lies within the bounds of its own millisecond.
    i = int(ok("gen", "--machine-id", "1023"))
    d = json.loads(ok("decode", str(i)))
    e = json.loads(ok("bounds", str(d["timestamp_ms"])))
    assert e["min_id"] <= i <= e["max_id"]
    # The last millisecond of the epoch holds the largest ID.
    last = json.loads(ok("bounds", "2093-09-06T15:47:35.551Z"))
    assert last["max_id"] == MAX_ID
    other = json.loads(ok("bounds", "--epoch", "2025-01-01T00:00:00Z",
                          "2025-01-01T00:00:00.001Z"))
    assert other["min_id"] == 1 << 22


def test_gen_custom_epoch():
    out = ok("gen", "--machine-id", "1", "--epoch", "2025-06-01T00:00:00.000Z")
    ms = int(out) >> 22
    assert abs(ms + 1748736000000 - now_ms()) < 60000
    out = ok("gen", "--machine-id", "1", "--epoch", "0")
    assert abs((int(out) >> 22) - now_ms()) < 60000


def test_gen_output_to_closed_pipe():
    """`snowflake gen -n BIG | head -1` ends when the reader goes away."""
    p = subprocess.Popen([SNOWFLAKE, "gen", "-n", "100000000", "--machine-id",
                          "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()
    p.wait(timeout=30)
    assert first.strip().isdigit()
    assert p.returncode != 0


# ---------------------------------------------------------------- decode

def test_decode_seed_id_exact():
    out = ok("decode", "275238510129057792")
    assert out == ('{"id":275238510129057792,"id_str":"275238510129057792",'
                   '"timestamp_ms":1769689174499,'
                   '"time":"2026-01-29T12:19:34.499Z",'
                   '"machine_id":1,"sequence":0}\n')


def test_decode_many_and_edges():
    out = ok("decode", "0", str(MAX_ID), "4194303")
    objs = [json.loads(x) for x in out.splitlines()]
    assert objs[0] == {"id": 0, "id_str": "0", "timestamp_ms": EPOCH_MS,
                       "time": "2024-01-01T00:00:00.000Z", "machine_id": 0,
                       "sequence": 0}
    assert objs[1]["id_str"] == str(MAX_ID)
    assert objs[1]["timestamp_ms"] == EPOCH_MS + 2**41 - 1
    assert objs[1]["time"] == "2093-09-06T15:47:35.551Z"
    assert (objs[1]["machine_id"], objs[1]["sequence"]) == (1023, 4095)
    assert objs[2]["timestamp_ms"] == EPOCH_MS
    assert (objs[2]["machine_id"], objs[2]["sequence"]) == (1023, 4095)


def test_decode_round_trip_with_gen():
    ids = ok("gen", "-n", "20", "--machine-id", "321").split()
    objs = [json.loads(x) for x in ok("decode", *ids).splitlines()]
    for i, o in zip(ids, objs):
        assert o["id_str"] == i and o["id"] == int(i)
        assert o["machine_id"] == 321
        assert o["timestamp_ms"] == (int(i) >> 22) + EPOCH_MS
        assert o["sequence"] == int(i) & 4095


def test_decode_epoch():
    out = ok("decode", "--epoch", "2025-01-01T00:00:00Z", str(1000 << 22))
    o = json.loads(out)
    assert o["time"] == "2025-01-01T00:00:01.000Z"
    assert o["timestamp_ms"] == 1735689601000


def test_decode_base32_folds_case():
    a = json.loads(ok("decode", "--format", "base32", "7MEQYXWC0400"))
    b = json.loads(ok("decode", "--format", "base32", "7meqyxwc04oo"))
    assert a == b
    assert a["id"] == 275238510129057792


# ----------------------------------------------------------------- bench

def test_bench_prints_rate_and_ratio():
    out = ok("bench", "--seconds", "0.2", "--threads", "2")
    assert "4096000" in out
    rows = [line.split() for line in out.splitlines()]
    header = next(r for r in rows if r and r[0] == "threads")
    row = rows[rows.index(header) + 1]
    vals = dict(zip(header, row))
    assert vals["threads"] == "2"
    assert int(vals["ids"]) > 0
    assert float(vals["ratio"]) > 0


# ------------------------------------------------------------- help etc.

def test_help_and_version():
    out = ok("--help")
    assert out.startswith("usage: snowflake gen")
    assert "decode" in out and "bench" in out
    assert ok("gen", "--help") == out
    assert ok("--version") == "snowflake 0.1.0\n"


# ------------------------------------------------------- argument errors

ERRORS = [
    (["gen", "--machine-id", "1024"], None,
     'snowflake: --machine-id must be an integer in 0..1023 (got "1024")'),
    (["gen", "--machine-id", "-1"], None,
     'snowflake: --machine-id must be an integer in 0..1023 (got "-1")'),
    (["gen", "--machine-id", " 1"], None,
     'snowflake: --machine-id must be an integer in 0..1023 (got " 1")'),
    (["gen", "--machine-id", ""], None,
     'snowflake: --machine-id must be an integer in 0..1023 (got "")'),
    (["gen", "--machine-id", "99999999999999999999999"], None,
     'snowflake: --machine-id must be an integer in 0..1023 '
     '(got "99999999999999999999999")'),
    (["gen"], None,
     "snowflake: gen needs --machine-id N or MACHINE_ID in the environment "
     "(an integer in 0..1023)"),
    (["gen"], {"MACHINE_ID": "abc"},
     'snowflake: MACHINE_ID must be an integer in 0..1023 (got "abc")'),
    (["gen"], {"MACHINE_ID": "1024"},
     'snowflake: MACHINE_ID must be an integer in 0..1023 (got "1024")'),
    (["gen"], {"MACHINE_ID": ""},
     'snowflake: MACHINE_ID must be an integer in 0..1023 (got "")'),
    (["gen", "--machine-id"], None,
     "snowflake: --machine-id needs a value: an integer in 0..1023"),
    (["gen", "--machine-id", "1", "-n", "0"], None,
     'snowflake: -n must be an integer in 1..1000000000000 (got "0")'),
    (["gen", "--machine-id", "1", "-n", "1e3"], None,
     'snowflake: -n must be an integer in 1..1000000000000 (got "1e3")'),
    (["gen", "--machine-id", "1", "-n", "1000000000001"], None,
     'snowflake: -n must be an integer in 1..1000000000000 '
     '(got "1000000000001")'),
    (["gen", "--machine-id", "1", "--format", "oct"], None,
     'snowflake: --format must be one of dec, hex, base62, base32, uuid (got '
     '"oct")'),
    (["decode", "--format", "uuid", "01900000-0000-7000-8000-00000000000"],
     None, 'snowflake: ID must be a UUID xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx '
     '(hex digits) (got "01900000-0000-7000-8000-00000000000")'),
    (["decode", "01900000-0000-4000-8000-000000000000"], None,
     "snowflake: UUID is not the view of an ID: not a version 7 UUID with "
     'variant 10 (RFC 9562) (got "01900000-0000-4000-8000-000000000000")'),
    (["decode", "017F22E2-79B0-7CC3-98C4-DC0C0C07398F"], None,
     "snowflake: UUID is not the view of an ID: UUID bits past the machine "
     "id are not zero: no ID's view "
     '(got "017F22E2-79B0-7CC3-98C4-DC0C0C07398F")'),
    (["decode", "017f22e2-79b0-7cc3-98c0-000000000000"], None,
     "snowflake: UUID's time is outside the epoch's range "
     '(got "017f22e2-79b0-7cc3-98c0-000000000000")'),
    (["decode", "01900000-0000-7000-8000-00000000000x"], None,
     'snowflake: ID must be a UUID xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx '
     '(hex digits) (got "01900000-0000-7000-8000-00000000000x")'),
    (["bounds"], None, "snowflake: bounds needs at least one TIME"),
    (["bounds", "yesterday"], None,
     "snowflake: TIME must be a UTC time YYYY-MM-DDTHH:MM:SS[.mmm]Z or unix "
     'ms (got "yesterday")'),
    (["bounds", "2023-12-31T23:59:59.999Z"], None,
     "snowflake: TIME must be within the epoch's range "
     '(got "2023-12-31T23:59:59.999Z")'),
    (["bounds", "2093-09-06T15:47:35.552Z"], None,
     "snowflake: TIME must be within the epoch's range "
     '(got "2093-09-06T15:47:35.552Z")'),
    (["bounds", "--format", "hex", "0"], None,
     'snowflake: unknown option "--format" for bounds (see snowflake --help)'),
    (["gen", "--machine-id", "1", "--epoch", "2999-01-01T00:00:00Z"], None,
     "snowflake: --epoch must be a UTC time YYYY-MM-DDTHH:MM:SS[.mmm]Z or "
     'unix ms, not in the future (got "2999-01-01T00:00:00Z")'),
    (["gen", "--machine-id", "1", "--epoch", "yesterday"], None,
     "snowflake: --epoch must be a UTC time YYYY-MM-DDTHH:MM:SS[.mmm]Z or "
     'unix ms, not in the future (got "yesterday")'),
    (["gen", "--machine-id", "1", "--bogus"], None,
     'snowflake: unknown option "--bogus" for gen (see snowflake --help)'),
    (["gen", "--machine-id", "1", "extra"], None,
     'snowflake: gen takes no arguments (got "extra")'),
    (["decode"], None, "snowflake: decode needs at least one ID"),
    (["decode", "12x"], None,
     'snowflake: ID must be a dec ID (digits 0-9, at most '
     '9223372036854775807) (got "12x")'),
    (["decode", "9223372036854775808"], None,
     'snowflake: ID must be a dec ID (digits 0-9, at most '
     '9223372036854775807) (got "9223372036854775808")'),
    (["decode", "--", "-1"], None,
     'snowflake: ID must be a dec ID (digits 0-9, at most '
     '9223372036854775807) (got "-1")'),
    (["decode", "--format", "hex", "0x1f"], None,
     'snowflake: ID must be a hex ID (digits 0-9a-f, at most '
     '9223372036854775807) (got "0x1f")'),
    (["decode", "--format", "base32", "U"], None,
     'snowflake: ID must be a base32 ID (Crockford base32 digits, at most '
     '9223372036854775807) (got "U")'),
    (["decode", "--machine-id", "1", "5"], None,
     'snowflake: unknown option "--machine-id" for decode '
     "(see snowflake --help)"),
    (["bench", "--threads", "0"], None,
     'snowflake: --threads must be an integer in 1..256 (got "0")'),
    (["bench", "--threads", "257"], None,
     'snowflake: --threads must be an integer in 1..256 (got "257")'),
    (["bench", "--seconds", "0"], None,
     'snowflake: --seconds must be a number in 0.01..3600 (got "0")'),
    (["bench", "--seconds", "abc"], None,
     'snowflake: --seconds must be a number in 0.01..3600 (got "abc")'),
    (["bench", "--seconds", "3601"], None,
     'snowflake: --seconds must be a number in 0.01..3600 (got "3601")'),
    (["frob"], None,
     'snowflake: unknown command "frob" (gen, decode, bounds, bench, --help, '
     "--version)"),
]


@pytest.mark.parametrize("args,env,message", ERRORS,
                         ids=[" ".join(a) + (" env" if e else "")
                              for a, e, _ in ERRORS])
def test_argument_errors(args, env, message):
    p = run(*args, env=env)
    assert p.returncode == 2
    assert p.stdout == b""
    assert p.stderr.decode() == message + "\n"


def test_no_command():
    p = run()
    assert p.returncode == 2
    assert p.stderr.decode() == ("snowflake: a command is required (gen, "
                                 "decode, bounds, bench, --help, "
                                 "--version)\n")
