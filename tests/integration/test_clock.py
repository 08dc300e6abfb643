"""The clock, for real: the real snowflaked under libfaketime (Debian's
faketime package), with its wall clock stepped while it runs.

libfaketime is preloaded with FAKETIME_TIMESTAMP_FILE, which the test
rewrites ("+0", "-3", "-10": offsets from the real time, in seconds), and
FAKETIME_NO_CACHE=1 so each clock read sees the file's current content.
DONT_FAKE_MONOTONIC=1 leaves CLOCK_MONOTONIC alone, as an NTP step would.

No assertion is about time: loops wait "until" with generous deadlines.
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import SNOWFLAKED, parse_responses, raw, request

LIBFAKETIME = os.environ.get(
    "LIBFAKETIME", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
DEADLINE = 60.0

pytestmark = pytest.mark.skipif(
    not os.path.exists(LIBFAKETIME),
    reason="libfaketime not installed (Debian package libfaketime)")


def preload():
    """LD_PRELOAD for snowflaked: libfaketime, after the sanitizer runtime
    when the binary is an ASan/TSan build (which must come first)."""
    libs = [LIBFAKETIME]
    try:
        out = subprocess.run(["ldd", SNOWFLAKED], capture_output=True,
                             text=True, timeout=30).stdout
    except OSError:
        out = ""
    m = re.search(r"(lib[at]san\.so\S*) => (\S+)", out)
    if m:
        libs.insert(0, m.group(2))
    return " ".join(libs)


class FakeClock:
    """The wall clock offset every process started with env() sees."""

    def __init__(self, path):
        self.path = str(path)
        self.set(0)

    def set(self, offset_s):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%+g\n" % offset_s)
        os.replace(tmp, self.path)  # never a half-written file

    def env(self):
        return {"LD_PRELOAD": preload(),
                "FAKETIME_TIMESTAMP_FILE": self.path,
                "FAKETIME_NO_CACHE": "1",
                "DONT_FAKE_MONOTONIC": "1"}


def get(node, path):
    data = raw(node.port, request("GET", path, headers=["Connection: close"]))
    (st, h, body), = parse_responses(data)
    return st, h, body


def metric(node, name):
    st, _, body = get(node, "/metrics")
    assert st == 200, body
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric %s in:\n%s" % (name, body.decode()))


REFUSED = 'snowflake_clock_backwards_total{action="refused"}'
WAITED = 'snowflake_clock_backwards_total{action="waited"}'


class Collector:
    """Collects every ID a node hands out and checks every refusal."""

    def __init__(self):
        self.ids = []       # in the order received
        self.refused = 0

    def take(self, node, path="/id"):
        """One request: returns True for IDs, False for a 503 refusal."""
        st, h, body = get(node, path)
        if st == 200:
            doc = json.loads(body)
            got = doc["ids"] if "ids" in doc else [doc["id"]]
            self.ids.extend(int(i) for i in got)
            return True
        assert st == 503, (st, body)
        assert "error" in json.loads(body), body
        assert int(h["retry-after"]) >= 1, h
        self.refused += 1
        return False

    def until_refused(self, node):
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if not self.take(node):
                return
        raise AssertionError("the node never refused")

    def until_served(self, node, path="/id"):
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if self.take(node, path):
                return
            time.sleep(0.05)
        raise AssertionError("the node never served again")


def assert_unique_increasing(ids):
    assert len(set(ids)) == len(ids), "duplicate IDs"
    assert all(a < b for a, b in zip(ids, ids[1:])), "IDs went backwards"


def test_wall_clock_step_back_then_kill_and_restart_behind(snowflaked,
                                                           tmp_path):
    clock = FakeClock(tmp_path / "faketime")
    state = str(tmp_path / "state")
    env = dict(clock.env(), CLOCK="wall", STATE_FILE=state, MACHINE_ID="7")
    c = Collector()

    # 1. Serving normally.
    a = snowflaked(**env)
    for _ in range(20):
        assert c.take(a)
    assert c.take(a, "/ids?count=500")
    assert get(a, "/health")[0] == 200
    served_before_step = len(c.ids)

    # 2. The wall clock steps 3 s back while serving: refused with 503 +
    #    Retry-After, /health is 503 and /metrics counts the refusals,
    #    until the clock has caught up with the newest ID.
    clock.set(-3)
    c.until_refused(a)
    st, h, body = get(a, "/health")
    assert st == 503 and "retry-after" in h and json.loads(body)["error"]
    assert metric(a, REFUSED) >= 1
    c.until_served(a)
    c.until_served(a, "/ids?count=100")
    assert len(c.ids) > served_before_step
    ids_a = list(c.ids)

    # 3. SIGKILL: nothing is flushed at exit; the state file already holds
    #    a mark ahead of every ID issued.
    a.signal(signal.SIGKILL)
    a.proc.wait()
    assert os.path.exists(state)

    # 4. Restarted with the same state file and the clock 10 s behind:
    #    it must not reissue anything, so it refuses until the clock passes
    #    the mark; /health says so.
    clock.set(-10)
    b = snowflaked(**env)
    st, h, body = get(b, "/health")
    assert st == 503, (st, body)
    assert "error" in json.loads(body) and int(h["retry-after"]) >= 1
    refused_before = c.refused
    assert not c.take(b)
    assert not c.take(b, "/ids?count=10")
    assert c.refused == refused_before + 2
    assert metric(b, REFUSED) >= 2

    # 5. The clock comes back (an NTP step forward): IDs flow again, all
    #    above the ones node a issued before it was killed.
    clock.set(0)
    c.until_served(b)
    for _ in range(20):
        assert c.take(b)
    assert get(b, "/health")[0] == 200
    ids_b = c.ids[len(ids_a):]
    assert ids_b and min(ids_b) > max(ids_a)
    assert_unique_increasing(c.ids)
    assert c.refused >= 3


def test_restarted_behind_recovers_on_its_own(snowflaked, tmp_path):
    """Same restart, but the clock only 3 s behind the state file's mark
    and is left alone: the node waits or refuses, then serves by itself."""
    clock = FakeClock(tmp_path / "faketime")
    state = str(tmp_path / "state")
    env = dict(clock.env(), CLOCK="wall", STATE_FILE=state)
    c = Collector()
    a = snowflaked(**env)
    for _ in range(10):
        assert c.take(a)
    a.signal(signal.SIGKILL)
    a.proc.wait()
    clock.set(-3)
    b = snowflaked(**env)
    c.until_served(b)
    for _ in range(10):
        assert c.take(b)
    assert_unique_increasing(c.ids)


def test_monotonic_clock_ignores_wall_steps(snowflaked, tmp_path):
    """CLOCK=monotonic (the default): a running node reads the wall clock
    once, so a 3 s step back changes nothing at all."""
    clock = FakeClock(tmp_path / "faketime")
    env = dict(clock.env(), CLOCK="monotonic")
    c = Collector()
    n = snowflaked(**env)
    for _ in range(20):
        assert c.take(n)
    clock.set(-3)
    # Each request reads the (faked) wall clock in the server's process if
    # it reads it at all; none may be refused.
    for _ in range(50):
        assert c.take(n), "refused under CLOCK=monotonic"
    assert c.take(n, "/ids?count=1000")
    assert get(n, "/health")[0] == 200
    assert metric(n, REFUSED) == 0
    assert c.refused == 0
    assert_unique_increasing(c.ids)


def test_wall_step_within_tolerance_is_waited_out(snowflaked, tmp_path):
    """CLOCK=wall with CLOCK_TOLERANCE_MS=2000: after a 0.5 s step back the
    node goes on with the newest millisecond's sequence and, once that runs
    out (a batch of 5,000), waits for the clock inside the request: never
    refused, and counted as waited."""
    clock = FakeClock(tmp_path / "faketime")
    env = dict(clock.env(), CLOCK="wall", CLOCK_TOLERANCE_MS="2000")
    c = Collector()
    n = snowflaked(**env)
    for _ in range(10):
        assert c.take(n)
    clock.set(-0.5)
    for _ in range(10):
        assert c.take(n), "refused within the tolerance"
    assert c.take(n, "/ids?count=5000")
    assert metric(n, WAITED) >= 1
    assert metric(n, REFUSED) == 0
    assert_unique_increasing(c.ids)
