"""MACHINE_ID=auto: the handover mark, against a real etcd and real nodes.

A machine id passes from a dead or cut-off holder to the next one; every ID
the new holder issues under it must be greater than every ID the old one
issued, whatever the old holder's clock did. Each test leaves one or two ids
free under its prefix (the rest held by keys of its own) so that the nodes
must hand the same id over.
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from test_etcd import (DEADLINE, SNOWFLAKED, Blackhole, Collector, etcd,  # noqa: F401
                       fleet, http, machine_of, tmp, wait_for)

SEQ_BITS, EPOCH_MS = 12, 1704067200000  # the default layout
LIBFAKETIME = os.environ.get(
    "LIBFAKETIME", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def unix_ms(id_):
    return (id_ >> (SEQ_BITS + 10)) + EPOCH_MS


def preload():
    """libfaketime, after the sanitizer runtime in an ASan build."""
    libs = [LIBFAKETIME]
    out = subprocess.run(["ldd", SNOWFLAKED], capture_output=True,
                         text=True, timeout=30).stdout
    m = re.search(r"(lib[at]san\.so\S*) => (\S+)", out)
    if m:
        libs.insert(0, m.group(2))
    return " ".join(libs)


def hold_all_but(etcd, prefix, free):
    """Puts a key of ours on every id except those in free."""
    etcd.put_many([prefix + str(i) for i in range(1024) if i not in free])


def ids_of(node, n=20):
    """n IDs from /ids (status 200), or [] when the node refused."""
    st, body = http(node.url + "/ids?count=%d" % n)
    if st != 200:
        return []
    return [int(x) for x in json.loads(body)["ids"]]


def drain(node, until, out):
    """Collects IDs from node into out until until() is true."""
    while not until():
        out.extend(ids_of(node))


@pytest.mark.skipif(not os.path.exists(LIBFAKETIME),
                    reason="libfaketime not installed")
def test_new_holder_issues_above_an_old_holder_20s_ahead(etcd, fleet):
    hold_all_but(etcd, fleet.prefix, {0})
    old = fleet(LD_PRELOAD=preload(), FAKETIME="+20s")
    assert old.wait_serving() == 0
    old_ids = []
    for _ in range(50):
        old_ids += ids_of(old, 100)
    assert old_ids and all(machine_of(i) == 0 for i in old_ids)
    # Its IDs carry its clock: about 20 s ahead of ours.
    assert unix_ms(max(old_ids)) > time.time() * 1000 + 10000
    old.stop(signal.SIGKILL)
    key = fleet.prefix + "0"
    wait_for("the killed holder's key to expire",
             lambda: key not in etcd.keys(fleet.prefix), every=0.2)
    mark = etcd.mark(fleet.prefix, 0)
    assert mark > unix_ms(max(old_ids))  # stored ahead of every ID it issued
    new = fleet()  # the true clock
    wait_for("the new holder to listen", lambda: http(new.url + "/health")[0])
    # It holds id 0 but its clock is behind the mark: 503 + Retry-After.
    st, body = http(new.url + "/id")
    if st == 503:
        assert "clock" in body, body
    new_ids = []
    wait_for("the new holder to issue under id 0",
             lambda: ids_of(new) or None, deadline=DEADLINE + 30, every=0.2)
    for _ in range(50):
        new_ids += ids_of(new, 100)
    assert new_ids and all(machine_of(i) == 0 for i in new_ids)
    assert min(new_ids) > max(old_ids)
    assert unix_ms(min(new_ids)) >= mark


class Recorder(Blackhole):
    """A Blackhole that also keeps the bytes it holds while cut."""

    def __init__(self, target_port):
        super().__init__(target_port)
        self.held = b""
        self.lock = threading.Lock()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.cut.is_set():
                    with self.lock:
                        self.held += data
                while self.cut.is_set():
                    time.sleep(0.02)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


def test_sigkill_while_a_mark_write_is_in_flight(etcd, fleet):
    hold_all_but(etcd, fleet.prefix, {0})
    hole = Recorder(etcd.port)
    try:
        # A short leap: a mark write every 150 ms or so.
        old = fleet(ETCD_ENDPOINTS=hole.url, ETCD_MARK_LEAP_MS="300")
        assert old.wait_serving() == 0
        old_ids = []
        for _ in range(20):
            old_ids += ids_of(old, 100)
        hole.cut.set()
        # The next mark write leaves the node and is held on the way.
        wait_for("a mark write in flight", lambda: b"/v3/kv/txn" in hole.held)
        old.stop(signal.SIGKILL)
        hole.cut.clear()  # it reaches etcd after its writer died
        key = fleet.prefix + "0"
        wait_for("the killed holder's key to expire",
                 lambda: key not in etcd.keys(fleet.prefix), every=0.2)
        mark = etcd.mark(fleet.prefix, 0)
        assert old_ids and mark > unix_ms(max(old_ids))
        new = fleet()
        assert new.wait_serving() == 0
        new_ids = []
        for _ in range(20):
            new_ids += ids_of(new, 100)
        assert min(new_ids) > max(old_ids)
    finally:
        hole.cut.clear()
        hole.close()


def test_etcd_unreachable_when_the_mark_must_move(etcd, fleet):
    hole = Blackhole(etcd.port)
    try:
        # A long lease (its deadline is far) and a short leap: the mark runs
        # out long before the lease does.
        n = fleet(ETCD_ENDPOINTS=hole.url, ETCD_LEASE_TTL="60",
                  ETCD_MARK_LEAP_MS="300")
        assert n.wait_serving() == 0
        col = Collector([n])
        wait_for("IDs", lambda: len(col.got) > 10)
        hole.cut.set()
        # The node stops issuing: nothing at or past a mark etcd lacks.
        wait_for("a 503", lambda: any(s == 503 for _, _, s in col.statuses))
        st, body = http(n.url + "/id")
        assert st == 503 and "mark" in body, body
        st, metrics = http(n.url + "/metrics")
        assert "snowflake_lease_held 1" in metrics.splitlines()  # not the cause

        def mark_errors():
            for l in http(n.url + "/metrics")[1].splitlines():
                if l.startswith("snowflake_lease_mark_errors_total "):
                    return int(l.split()[1])
            raise AssertionError("no snowflake_lease_mark_errors_total")
        # The write in flight times out (a third of the TTL, at most 3 s).
        wait_for("a mark write to fail", lambda: mark_errors() > 0)
        hole.cut.clear()
        n_before = len(col.got)
        wait_for("IDs again", lambda: len(col.got) > n_before + 10)
        got = col.finish()
        mark = etcd.mark(fleet.prefix, 0)
        # Every ID it issued is below a mark etcd stored.
        assert max(unix_ms(g[2]) for g in got) < mark
    finally:
        hole.cut.clear()
        hole.close()


def test_frozen_node_issues_nothing_under_an_id_taken_meanwhile(etcd, fleet):
    hold_all_but(etcd, fleet.prefix, {0, 1})
    # Marks at most 200 ms ahead: id 0's mark is behind the clock by the
    # time its key has expired, so the newcomer takes id 0 (the lowest).
    frozen = fleet(ETCD_MARK_LEAP_MS="200")
    assert frozen.wait_serving() == 0
    before = []
    for _ in range(10):
        before += ids_of(frozen, 100)
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        key = fleet.prefix + "0"
        wait_for("the frozen node's key to expire",
                 lambda: key not in etcd.keys(fleet.prefix), every=0.2)
        newcomer = fleet()
        assert newcomer.wait_serving() == 0
        col = Collector([newcomer])
        wait_for("the newcomer's IDs", lambda: len(col.got) > 10)
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    col.add(frozen)
    # Woken, it issues nothing under id 0; it takes id 1 and goes on.
    wait_for("the woken node to serve under id 1",
             lambda: any(i == 1 for _, i, _, _ in col.got))
    got = col.finish()
    woken = [(id_, mid) for _, i, id_, mid in got if i == 1]
    assert woken and all(mid == 1 for _, mid in woken)
    ids0 = [id_ for _, i, id_, mid in got if i == 0]
    assert min(ids0) > max(before)


def test_marks_survive_an_etcd_restart(etcd, fleet):
    n = fleet()
    assert n.wait_serving() == 0
    first = []
    for _ in range(10):
        first += ids_of(n, 100)
    mark = etcd.mark(fleet.prefix, 0)
    assert mark > unix_ms(max(first))
    etcd.kill()
    etcd.start()  # the same data directory
    assert etcd.mark(fleet.prefix, 0) >= mark
    wait_for("the node to serve again", lambda: ids_of(n) or None)
    later = ids_of(n, 100)
    assert min(later) > max(first)
    assert etcd.mark(fleet.prefix, 0) > unix_ms(max(later))


class LateRelay(Blackhole):
    """A TCP relay to etcd that, while holding, keeps every request a node
    sends instead of passing it on (the node times out and goes on through
    its next endpoint), and delivers them on release(): a frozen etcd member
    or a slow network applying a write long after its writer gave up on it.
    It keeps etcd's answers to what it delivered late."""

    def __init__(self, target_port):
        self.holding = threading.Event()
        self.lock = threading.Lock()
        self.held = []  # (upstream socket, bytes), in arrival order
        self.late = {}  # upstream socket -> etcd's answers after release
        super().__init__(target_port)  # listens, and calls _serve below

    def _serve(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            c.close()
            return
        threading.Thread(target=self._back, args=(u, c), daemon=True).start()
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                with self.lock:
                    if self.holding.is_set():
                        self.held.append((u, data))
                        continue
                u.sendall(data)
        except OSError:
            pass
        c.close()  # u stays open: a held request still goes through it

    def _back(self, u, c):
        while True:
            try:
                data = u.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                if u in self.late:
                    self.late[u] += data
            try:
                c.sendall(data)
            except OSError:
                pass

    def held_bodies(self):
        """The JSON bodies of the requests held so far."""
        with self.lock:
            raw = b"".join(d for _, d in self.held)
        out = []
        for part in raw.split(b"POST ")[1:]:
            body = part.partition(b"\r\n\r\n")[2]
            try:
                out.append((part.split(b" ")[0].decode(), json.loads(body)))
            except ValueError:
                pass  # not all of it arrived
        return out

    def release(self):
        """Delivers what was held, in order; returns once etcd answered
        every connection it went through."""
        with self.lock:
            self.holding.clear()
            held, self.held = self.held, []
            for u, _ in held:
                self.late[u] = b""
        for u, data in held:
            u.sendall(data)
        wait_for("etcd to answer the requests delivered late",
                 lambda: all(b"\r\n\r\n" in a and a.rstrip().endswith(b"}")
                             for a in self.late.values()))
        return list(self.late.values())


def mark_history(etcd, key):
    """Every value key held, oldest first, from etcd's history."""
    b64 = lambda s: base64.b64encode(s.encode()).decode()
    post = lambda **q: json.loads(http(etcd.url + "/v3/kv/range", timeout=5,
                                       data=json.dumps(q).encode())[1])
    now = post(key=b64(key))
    kv = now["kvs"][0]
    vals = []
    for rev in range(int(kv["create_revision"]), int(now["header"]["revision"]) + 1):
        kvs = post(key=b64(key), revision=str(rev)).get("kvs")
        v = int(base64.b64decode(kvs[0]["value"]))
        if not vals or vals[-1] != v:
            vals.append(v)
    return vals


def test_mark_write_delivered_late_never_lowers_the_mark(etcd, fleet):
    """Issue 17's sequence on one etcd: a mark write held on the way (as in
    a frozen member), resent through the next endpoint, newer marks and IDs
    above the held one, the holder killed with its lease alive, then the held
    write delivered. It must change nothing: marks only go up."""
    hold_all_but(etcd, fleet.prefix, {0})
    relay = LateRelay(etcd.port)
    try:
        n = fleet(ETCD_ENDPOINTS=relay.url + "," + etcd.url,
                  ETCD_MARK_LEAP_MS="300")
        assert n.wait_serving() == 0
        col = Collector([n])
        relay.holding.set()
        wait_for("a mark write held on the way",
                 lambda: any(p == "/v3/kv/txn" for p, _ in relay.held_bodies()))
        held = [int(base64.b64decode(b["success"][0]["request_put"]["value"]))
                for p, b in relay.held_bodies() if p == "/v3/kv/txn"]
        # The node gives up on it, goes on through etcd directly, and
        # issues IDs above it.
        wait_for("IDs above the held mark",
                 lambda: any(unix_ms(g[2]) >= max(held) for g in col.got))
        n.stop(signal.SIGKILL)
        got = col.finish()
        before = etcd.mark(fleet.prefix, 0)
        assert before > max(unix_ms(g[2]) for g in got)
        assert fleet.prefix + "0" in etcd.keys(fleet.prefix)  # lease alive
        answers = relay.release()
        assert answers  # etcd took the held requests
        after = etcd.mark(fleet.prefix, 0)
        assert after >= before, "a late write lowered the mark %d -> %d" % (
            before, after)
        history = mark_history(etcd, fleet.prefix + "0/mark")
        assert history == sorted(history), history
        assert after > max(unix_ms(g[2]) for g in got)
    finally:
        relay.holding.clear()
        relay.close()
