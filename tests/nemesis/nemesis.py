#!/usr/bin/env python3
"""nemesis.py - MACHINE_ID=auto under a seeded schedule of faults, then one
global check over every ID answered.

    python3 tests/nemesis/nemesis.py --seed 7 --duration 300
    python3 tests/nemesis/nemesis.py --seeds 1,2,3 --duration 40   (make nemesis-ci)

What runs (all on 127.0.0.1, started here, data in a temporary folder):
  - a real three-member etcd cluster (f, g, h);
  - NODES snowflaked nodes, MACHINE_ID=auto, ETCD_LEASE_TTL=2,
    ETCD_MARK_LEAP_MS=300, with only FREE machine ids left free (every
    other id is held by a key of ours on a long etcdctl-style lease), so ids
    change hands whenever a node dies, freezes or is cut off; the first
    RELAYED nodes reach etcd only through a relay of ours (one listening
    port per member) that reads their HTTP/1.1 requests to /v3/... and can
    delay, duplicate, hold and deliver them late;
  - load: per node one HTTP/1.1 keep-alive client (/ids?count=N and /id)
    and one client alternating RESP (GET ids:N, GET id) and memcached
    (get id id ...) connections.

The faults (a seeded random.Random; each printed with its time):
  node-kill      SIGKILL a node; restarted after 0-4 s
  node-freeze    SIGSTOP a node for 2.5-5 s (past its 2 s TTL), then SIGCONT
  etcd-kill-leader  SIGKILL the etcd leader; restarted after 1-4 s
  etcd-freeze    SIGSTOP one member (the leader or not) for 1-4 s
  relay-delay    every request of a relayed node delayed 50-900 ms (p 0.5)
  relay-dup      requests sent twice, the copy 0-1.5 s later (p 0.5)
  relay-lose-answers  requests applied by etcd but their answers lost (p
                 0.3): the node times out and sends them again
  relay-reorder  one mark write held until a later one got through, then
                 delivered
  relay-late-after-kill  one mark write of the relayed node whose clock is
                 furthest ahead held, the node SIGKILLed 0.9-2 s later
                 while its lease lives, then the held write delivered; the
                 nodes started in the next 10 s run 5-10 s behind it (a
                 lowered mark then repeats IDs)
  relay-cut      a partition for 1-4 s; what was sent meanwhile is
                 delivered when it heals
Every (re)start draws the node's clock: true, skewed by +-2..MAX_SKEW s,
running fast or slow (libfaketime rates 0.9, 0.95, 1.05, 1.1; the lease
margin is 1 s of a 2 s TTL, so any rate above 0.5 is safe: docs/fleet.md), or
both; and its STATE_FILE: kept, lost (deleted) or none. A node that exits
(before nodes waited for a free id, exit 2 when all were taken) is
restarted later; one that waits answers 503 meanwhile.

The checks, after the run (nothing here is about time):
  - every ID is unique, across nodes, incarnations and protocols;
  - IDs increase on each connection (across a change of machine id within
    one process, the time and sequence part must still increase: the
    machine bits sit between them);
  - an ID's machine field (bits 12..21) is the answer's machine_id (HTTP),
    and one the answering process claimed in etcd (every protocol);
  - the whole etcd history of the prefix, replayed from revision 1: no
    <prefix><id>/mark put is lower than the one before it;
  - each claim of an id read a mark above every ID issued under that id by
    every earlier holder, its holder issued nothing below it, and the last
    stored mark is above every ID issued under the id;
  - answers are only 200 or 503 with Retry-After (RESP -ERR, memcached
    SERVER_ERROR); connection errors while a node is down are counted.
Exit 0 when all hold; otherwise 1, with the logs (etcd's, every node
process's, the fault schedule, the replayed history, the summary) kept in a
folder it names.
"""

import argparse
import array
import base64
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SNOWFLAKED = os.environ.get("SNOWFLAKED", os.path.join(ROOT, "build", "snowflaked"))
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
LIBFAKETIME = os.environ.get(
    "LIBFAKETIME", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SEQ_BITS, MACHINE_BITS, EPOCH_MS = 12, 10, 1704067200000  # the default layout
TTL, LEAP_MS = 2, 300
IO_TIMEOUT = 3.0
WATCHDOG_S = 180  # past the faults and settling time, a run is killed whole


def unix_ms(id_):
    return (id_ >> (SEQ_BITS + MACHINE_BITS)) + EPOCH_MS


def machine_of(id_):
    return (id_ >> SEQ_BITS) & ((1 << MACHINE_BITS) - 1)


def time_seq(id_):
    """The ID without its machine field: what one generator keeps rising."""
    return ((id_ >> (SEQ_BITS + MACHINE_BITS)) << SEQ_BITS) | (id_ & ((1 << SEQ_BITS) - 1))


def b64(b):
    return base64.b64encode(b if isinstance(b, bytes) else b.encode()).decode()


def unb64(s):
    return base64.b64decode(s or "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Log:
    """Timestamped lines (seconds since the start) to stdout and a file."""

    def __init__(self, path, quiet=False):
        self.t0 = time.monotonic()
        self.f = open(path, "a")
        self.lock = threading.Lock()
        self.quiet = quiet

    def now(self):
        return time.monotonic() - self.t0

    def __call__(self, kind, msg, echo=True):
        line = "[%7.2f] %-8s %s" % (self.now(), kind, msg)
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()
            if echo and not self.quiet:
                print(line, flush=True)


# ------------------------------------------------------------------ etcd


def gateway(port, path, body, timeout=IO_TIMEOUT):
    """POST body (JSON) to etcd's gateway on port: the reply's JSON."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, json.dumps(body),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if r.status != 200:
            raise OSError("%s: HTTP %d: %s" % (path, r.status, data[:200]))
        return json.loads(data)
    finally:
        c.close()


class Member:
    def __init__(self, name, run_dir):
        self.name = name
        self.dir = os.path.join(run_dir, "etcd-" + name)
        self.port, self.peer = free_port(), free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.peer_url = "http://127.0.0.1:%d" % self.peer
        self.proc = None
        self.frozen = False
        self.log = open(os.path.join(run_dir, "etcd-%s.log" % name), "ab")

    def start(self, cluster):
        self.frozen = False
        self.proc = subprocess.Popen(
            [ETCD, "--name", self.name, "--data-dir", self.dir,
             "--listen-client-urls", self.url,
             "--advertise-client-urls", self.url,
             "--listen-peer-urls", self.peer_url,
             "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", cluster,
             "--initial-cluster-state", "new",
             "--initial-cluster-token", "nemesis",
             "--max-txn-ops", "1024"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def up(self):
        return self.proc is not None and self.proc.poll() is None

    def usable(self):
        return self.up() and not self.frozen

    def signal(self, sig):
        if self.up():
            self.proc.send_signal(sig)
            self.frozen = sig == signal.SIGSTOP

    def kill(self):
        if self.up():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.frozen = False


class Cluster:
    def __init__(self, run_dir):
        self.members = [Member(n, run_dir) for n in ("f", "g", "h")]
        self.spec = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        self.lock = threading.Lock()  # one member out at a time

    def start(self):
        """Starts the three members; a port taken by someone else between
        free_port() and etcd's bind (a member exits at once) means new
        ports and another try, up to three."""
        for attempt in range(3):
            for m in self.members:
                m.start(self.spec)
            end = time.monotonic() + 60
            while not all(self.healthy(m) for m in self.members):
                if time.monotonic() > end:
                    raise RuntimeError("etcd cluster did not come up")
                if any(m.proc.poll() is not None for m in self.members):
                    break
                time.sleep(0.2)
            else:
                return
            self.kill_all()
            run_dir = os.path.dirname(self.members[0].dir)
            for m in self.members:
                shutil.rmtree(m.dir, ignore_errors=True)
                m.__init__(m.name, run_dir)
            self.spec = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        raise RuntimeError("etcd exited at start three times: see its logs")

    def healthy(self, m):
        try:
            c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=1)
            c.request("GET", "/health")
            r = c.getresponse()
            ok = r.status == 200 and b'"true"' in r.read()
            c.close()
            return ok
        except OSError:
            return False

    def call(self, path, body, timeout=IO_TIMEOUT):
        """The first usable member's answer (members tried in turn)."""
        err = None
        for m in self.members:
            if not m.usable():
                continue
            try:
                return gateway(m.port, path, body, timeout)
            except (OSError, ValueError, http.client.HTTPException) as e:
                err = e
        raise OSError("no etcd member answered %s: %s" % (path, err))

    def leader(self):
        for m in self.members:
            if not m.usable():
                continue
            try:
                st = gateway(m.port, "/v3/maintenance/status", {}, timeout=1)
            except (OSError, ValueError, http.client.HTTPException):
                continue
            lid = st.get("leader")
            for x in self.members:
                if not x.usable():
                    continue
                try:
                    s2 = gateway(x.port, "/v3/maintenance/status", {}, timeout=1)
                except (OSError, ValueError, http.client.HTTPException):
                    continue
                if s2["header"]["member_id"] == lid:
                    return x
        return None

    def get_mark(self, prefix, mid):
        r = self.call("/v3/kv/range", {"key": b64("%s%d/mark" % (prefix, mid))})
        kvs = r.get("kvs") or []
        return int(unb64(kvs[0]["value"])) if kvs else None

    def kill_all(self):
        for m in self.members:
            m.kill()


def hold_all_but(cluster, prefix, free, ttl):
    """A key of ours on every id but those in free, on one long lease."""
    lease = cluster.call("/v3/lease/grant", {"TTL": str(int(ttl))})["ID"]
    keys = [prefix + str(i) for i in range(1 << MACHINE_BITS) if i not in free]
    for i in range(0, len(keys), 512):
        ops = [{"request_put": {"key": b64(k), "value": b64("held by nemesis"),
                                "lease": lease}} for k in keys[i:i + 512]]
        cluster.call("/v3/kv/txn", {"success": ops}, timeout=10)


def prefix_end(p):
    b = bytearray(p.encode())
    b[-1] += 1
    return bytes(b)


def history(cluster, prefix, log):
    """Every event under prefix from revision 1, through a watch on the
    gateway: read until the sentinel key put now shows up."""
    sentinel = prefix + "zz-end-of-history"
    cluster.call("/v3/kv/put", {"key": b64(sentinel), "value": b64("1")})
    m = next(m for m in cluster.members if m.usable())
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=20)
    c.request("POST", "/v3/watch", json.dumps({"create_request": {
        "key": b64(prefix), "range_end": b64(prefix_end(prefix)),
        "start_revision": "1"}}))
    r = c.getresponse()
    events = []
    try:
        for _ in range(1000000):
            line = r.readline()
            if not line:
                raise OSError("watch stream ended early")
            res = json.loads(line).get("result") or {}
            for ev in res.get("events") or []:
                kv = ev["kv"]
                key = unb64(kv["key"]).decode(errors="replace")
                if key == sentinel:
                    return events
                events.append((int(kv.get("mod_revision", 0)),
                               ev.get("type", "PUT"), key, unb64(kv.get("value")),
                               int(kv.get("create_revision", 0)),
                               kv.get("lease", "0")))
        raise OSError("watch: too many lines")
    finally:
        c.close()


# ----------------------------------------------------------------- relay


def read_request(f):
    """One HTTP/1.1 request from a file: (raw bytes, path, body) or None."""
    line = f.readline(65537)
    if not line:
        return None
    raw = [line]
    n = 0
    for _ in range(200):
        h = f.readline(65537)
        if not h:
            return None
        raw.append(h)
        if h in (b"\r\n", b"\n"):
            break
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v.strip())
    body = f.read(n) if n else b""
    if len(body) != n:
        return None
    parts = line.split()
    path = parts[1].decode(errors="replace") if len(parts) > 1 else "?"
    return b"".join(raw) + body, path, body


def classify(path, body):
    """('mark', id, value), ('claim', id, None) or (kind, None, None)."""
    kind = path.rsplit("/", 1)[-1]
    if path != "/v3/kv/txn":
        return kind, None, None
    try:
        j = json.loads(body)
        for op in j.get("success") or []:
            put = op.get("request_put")
            if put:
                k = unb64(put.get("key")).decode(errors="replace")
                if k.endswith("/mark"):
                    mid = int(k[:-5].rsplit("/", 1)[-1])
                    return "mark", mid, int(unb64(put.get("value")))
        for cmp in j.get("compare") or []:
            if cmp.get("target") == "CREATE":
                k = unb64(cmp.get("key")).decode(errors="replace")
                return "claim", int(k.rsplit("/", 1)[-1]), None
    except (ValueError, TypeError, AttributeError):
        pass
    return "txn", None, None


class Relay:
    """Between one node slot and the three etcd members: a listening port
    per member. Requests are read whole and forwarded in order on one
    upstream connection per client connection, or delayed, duplicated,
    held (no answer: the node times out and resends) and delivered late on
    a connection of their own."""

    def __init__(self, name, cluster, prefix, log):
        self.name, self.cluster, self.prefix, self.log = name, cluster, prefix, log
        self.lock = threading.Lock()
        self.delay = None      # (p, lo_ms, hi_ms)
        self.dup = None        # (p, max_ms)
        self.lose = None       # p: applied, but the answer never reaches the node
        self.cut = False
        self.hold_mark = False
        self.held = []         # (raw, path, kind, mid, value, member)
        self.marks_passed = 0
        self.last_mark = 0.0   # when a mark write last went through
        self.rng = random.Random(name)
        self.socks = []
        self.closed = False
        self.urls = []
        for m in cluster.members:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            self.socks.append(s)
            self.urls.append("http://127.0.0.1:%d" % s.getsockname()[1])
            threading.Thread(target=self._accept, args=(s, m), daemon=True).start()

    def _accept(self, s, member):
        while not self.closed:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, member), daemon=True).start()

    def _decide(self, path, body):
        kind, mid, value = classify(path, body)
        with self.lock:
            if self.cut:
                return "hold", kind, mid, value, 0
            if kind == "mark" and self.hold_mark:
                self.hold_mark = False
                return "hold", kind, mid, value, 0
            d = 0
            if self.delay and self.rng.random() < self.delay[0]:
                d = self.rng.uniform(self.delay[1], self.delay[2]) / 1000
            act = "pass"
            if self.dup and self.rng.random() < self.dup[0]:
                act = "dup"
            elif self.lose and self.rng.random() < self.lose:
                act = "lose"
            return act, kind, mid, value, d

    def _serve(self, c, member):
        up = None
        f = c.makefile("rb")
        try:
            for _ in range(100000):
                req = read_request(f)
                if req is None or self.closed:
                    break
                raw, path, body = req
                act, kind, mid, value, d = self._decide(path, body)
                if act == "hold":
                    with self.lock:
                        self.held.append((raw, path, kind, mid, value, member))
                    self.log("relay", "%s: holding %s%s (sent to %s)" % (
                        self.name, kind, "" if mid is None else
                        " id %d mark %s" % (mid, value), member.name), echo=False)
                    continue  # no answer: the node times out and resends
                if d:
                    time.sleep(d)
                if act == "lose":
                    # etcd applies it; the node hears nothing, times out and
                    # sends it again (the copy that won earlier must count).
                    self.deliver((raw, path, kind, mid, value, member), "answer lost")
                    continue
                if up is None:
                    try:
                        up = socket.create_connection(("127.0.0.1", member.port),
                                                      timeout=10)
                    except OSError:
                        break  # the member is down: as a reset to the node
                    up.settimeout(None)
                    threading.Thread(target=self._pump, args=(up, c),
                                     daemon=True).start()
                up.sendall(raw)
                if kind == "mark":
                    with self.lock:
                        self.marks_passed += 1
                        self.last_mark = time.monotonic()
                if act == "dup":
                    later = self.rng.uniform(0, 1.5)
                    threading.Timer(later, self.deliver,
                                    args=((raw, path, kind, mid, value, member),
                                          "copy")).start()
        except OSError:
            pass
        finally:
            for s in (c, up):
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def deliver(self, item, why):
        """Sends a held or copied request to etcd on a connection of its
        own (its own member if usable, else another): the answer is logged,
        not returned to anyone. For a mark write, the mark before and after."""
        raw, path, kind, mid, value, member = item
        echo = why in ("late", "reordered")
        order = [member] + [m for m in self.cluster.members if m is not member]
        before = None
        if kind == "mark" and why not in ("copy", "answer lost"):
            try:
                before = self.cluster.get_mark(self.prefix, mid)
            except OSError:
                pass
        for m in order:
            if not m.usable():
                continue
            try:
                s = socket.create_connection(("127.0.0.1", m.port), timeout=IO_TIMEOUT)
                s.settimeout(IO_TIMEOUT)
                s.sendall(raw)
                r = http.client.HTTPResponse(s)
                r.begin()
                data = r.read()
                s.close()
            except (OSError, http.client.HTTPException) as e:
                self.log("relay", "%s: %s %s to %s: %s" % (
                    self.name, why, kind, m.name, e), echo=echo)
                return
            res = ""
            if path == "/v3/kv/txn":
                try:
                    res = " succeeded=%s" % json.loads(data).get("succeeded", False)
                except ValueError:
                    res = " (not JSON)"
            msg = "%s: %s %s%s delivered to %s: HTTP %d%s" % (
                self.name, why, kind,
                "" if mid is None else " id %d mark %s" % (mid, value),
                m.name, r.status, res)
            if before is not None:
                try:
                    after = self.cluster.get_mark(self.prefix, mid)
                    msg += "; stored mark %s -> %s" % (before, after)
                    if after is not None and after < before:
                        msg += " (LOWERED by %d ms)" % (before - after)
                except OSError:
                    pass
            self.log("relay", msg, echo=echo)
            return
        self.log("relay", "%s: %s %s dropped: no member usable" % (
            self.name, why, kind), echo=echo)

    def take_held(self):
        with self.lock:
            h, self.held = self.held, []
            return h

    def reset(self):
        with self.lock:
            self.delay = self.dup = self.lose = None
            self.cut = self.hold_mark = False

    def close(self):
        self.closed = True
        for s in self.socks:
            s.close()


# ----------------------------------------------------------------- nodes


class Incarnation:
    """One process of a node slot."""

    def __init__(self, slot, n, clock, state):
        self.slot, self.n, self.clock, self.state = slot, n, clock, state
        self.name = "node%d#%d" % (slot.index, n)
        self.proc = None
        self.pid = None
        self.port = self.redis_port = self.mc_port = None
        self.machine_id = None  # at start
        self.serving = False
        self.frozen = False
        self.killed = False
        self.log_path = None
        self.started = time.monotonic()
        m = re.match(r"([+-]\d+)s(?: x([\d.]+))?$", clock or "") or \
            re.match(r"\+0 x([\d.]+)$", clock or "")
        self.offset, self.rate = 0.0, 1.0
        if m and m.re.pattern.startswith("([+-]"):
            self.offset, self.rate = float(m.group(1)), float(m.group(2) or 1)
        elif m:
            self.rate = float(m.group(1))

    def lead(self):
        """How far its clock is ahead of the true one now, in seconds."""
        return self.offset + (self.rate - 1) * (time.monotonic() - self.started)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Slot:
    def __init__(self, index, relay):
        self.index = index
        self.relay = relay
        self.inc = None
        self.incs = []
        self.down_until = 0.0
        self.starting = False


class Fleet:
    def __init__(self, args, run_dir, cluster, prefix, log):
        self.args, self.dir, self.cluster, self.prefix, self.log = (
            args, run_dir, cluster, prefix, log)
        self.slots = []
        self.lock = threading.Lock()
        self.stopping = False
        self.by_pid = {}
        self.successor_clock = (None, 0.0)  # (FAKETIME, until): see late-after-kill
        for i in range(args.nodes):
            relay = None
            if i < args.relayed:
                relay = Relay("relay%d" % i, cluster, prefix, log)
            self.slots.append(Slot(i, relay))
        self.preload = self._preload()

    def _preload(self):
        libs = [LIBFAKETIME]
        out = subprocess.run(["ldd", SNOWFLAKED], capture_output=True,
                             text=True, timeout=30).stdout
        m = re.search(r"(lib[at]san\.so\S*) => (\S+)", out)
        if m:
            libs.insert(0, m.group(2))
        return " ".join(libs)

    def draw(self, slot, n):
        """The clock and state file of incarnation n of slot: seeded."""
        r = random.Random("%s/%d/%d" % (self.args.seed, slot.index, n))
        clock = None
        x = r.random()
        skew = r.choice([-1, 1]) * r.randint(2, self.args.max_skew)
        rate = r.choice(["0.9", "0.95", "1.05", "1.1"])
        if n == 0 and x < 0.5:
            clock = None
        elif x < 0.35:
            clock = None
        elif x < 0.65:
            clock = "%+ds" % skew
        elif x < 0.85:
            clock = "+0 x" + rate
        else:
            clock = "%+ds x%s" % (skew, rate)
        state = r.choice(["kept", "kept", "lost", "none"])
        forced, until = self.successor_clock
        if forced and time.monotonic() < until:
            clock = forced
        return clock, state

    def start(self, slot):
        """Starts the next incarnation of slot (in this thread): True when
        it serves, False when it exited at start."""
        n = len(slot.incs)
        clock, state = self.draw(slot, n)
        inc = Incarnation(slot, n, clock, state)
        env = {k: v for k, v in os.environ.items()
               if k not in ("MACHINE_ID", "PORT", "THREADS", "STATE_FILE",
                            "LD_PRELOAD", "FAKETIME")}
        ends = list(slot.relay.urls) if slot.relay else [m.url for m in self.cluster.members]
        random.Random("%s/ends/%d/%d" % (self.args.seed, slot.index, n)).shuffle(ends)
        env.update(MACHINE_ID="auto", ETCD_ENDPOINTS=",".join(ends),
                   ETCD_PREFIX=self.prefix, ETCD_LEASE_TTL=str(TTL),
                   ETCD_MARK_LEAP_MS=str(LEAP_MS), PORT="0", REDIS_PORT="0",
                   MEMCACHED_PORT="0", BIND="127.0.0.1", THREADS="1")
        sf = os.path.join(self.dir, "node%d.state" % slot.index)
        if state == "lost" and os.path.exists(sf):
            os.unlink(sf)
        if state != "none":
            env["STATE_FILE"] = sf
        if clock:
            env.update(LD_PRELOAD=self.preload, FAKETIME=clock)
        inc.log_path = os.path.join(self.dir, "%s.log" % inc.name)
        with open(inc.log_path, "wb") as lf:
            inc.proc = subprocess.Popen([SNOWFLAKED], env=env, stdout=lf,
                                        stderr=subprocess.STDOUT)
        inc.pid = inc.proc.pid
        with self.lock:
            slot.incs.append(inc)
            slot.inc = inc
            self.by_pid[inc.pid] = inc
        end = time.monotonic() + 15
        while time.monotonic() < end and not self.stopping:
            with open(inc.log_path, errors="replace") as lf:
                out = lf.read()
            # "machine id N", or "machine id pending" while the node waits
            # for a free id (it then listens and answers 503 meanwhile).
            m = re.search(r"listening on \S+:(\d+), :(\d+) \(Redis\), :(\d+) "
                          r"\(memcached\), machine id (\d+|pending)", out)
            if m:
                inc.port, inc.redis_port, inc.mc_port = map(int, m.groups()[:3])
                inc.machine_id = m.group(4)
                inc.serving = True
                self.log("node", "%s started: pid %d, clock %s, state file %s, "
                         "machine id %s" % (inc.name, inc.pid, clock or "true",
                                            state, inc.machine_id))
                return True
            if inc.proc.poll() is not None:
                last = out.strip().splitlines()[-1:] or ["(no output)"]
                self.log("node", "%s (clock %s) exited %d at start: %s" % (
                    inc.name, clock or "true", inc.proc.returncode, last[0][:160]),
                    echo=False)
                return False
            time.sleep(0.05)
        self.kill(inc, quiet=True)
        return False

    def kill(self, inc, quiet=False):
        if inc.alive():
            inc.killed = True
            inc.proc.send_signal(signal.SIGKILL)
            inc.proc.wait()
            if not quiet:
                self.log("fault", "SIGKILL %s (pid %d)" % (inc.name, inc.pid))

    def supervise(self):
        """Restarts dead slots once their down time is over (a thread)."""
        r = random.Random("%s/supervisor" % self.args.seed)
        while not self.stopping:
            now = time.monotonic()
            for slot in self.slots:
                inc = slot.inc
                if slot.starting or (inc is not None and inc.alive()):
                    continue
                if inc is not None and not inc.killed and inc.serving and not getattr(inc, "noted", False):
                    inc.noted = True
                    self.log("node", "%s exited %s" % (inc.name, inc.proc.returncode))
                if now < slot.down_until:
                    continue
                slot.starting = True

                def go(s=slot):
                    try:
                        if not self.start(s):
                            s.down_until = time.monotonic() + r.uniform(0.5, 2)
                    finally:
                        s.starting = False
                threading.Thread(target=go, daemon=True).start()
            time.sleep(0.1)

    def stop_all(self):
        self.stopping = True
        for slot in self.slots:
            for inc in slot.incs:
                if inc.alive():
                    inc.proc.send_signal(signal.SIGCONT)
                    inc.proc.send_signal(signal.SIGKILL)
                    inc.proc.wait()
            if slot.relay:
                slot.relay.close()


# ------------------------------------------------------------------ load


class Conn:
    """What one client connection got: IDs in the order answered."""
    __slots__ = ("inc", "proto", "ids", "answered_mids")

    def __init__(self, inc, proto):
        self.inc, self.proto = inc, proto
        self.ids = array.array("Q")
        self.answered_mids = set()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.conns = []
        self.count = {}        # (proto, outcome) -> n
        self.bad = []          # (what, detail)
        self.t0 = time.monotonic()
        self.ok_seconds = set()  # seconds since the load started with an ID

    def add(self, proto, outcome, n=1):
        with self.lock:
            self.count[(proto, outcome)] = self.count.get((proto, outcome), 0) + n

    def violation(self, what, detail):
        with self.lock:
            if len(self.bad) < 100000:
                self.bad.append((what, detail))


class Client:
    """One load thread on one node slot."""

    def __init__(self, fleet, slot, kind, stats, seed, log):
        self.fleet, self.slot, self.kind, self.stats, self.log = fleet, slot, kind, stats, log
        self.rng = random.Random("%s/client/%d/%s" % (seed, slot.index, kind))
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        proto_turn = 0
        while not self.stop:
            inc = self.slot.inc
            if inc is None or not inc.serving or not inc.alive():
                time.sleep(0.05)
                continue
            if self.kind == "http":
                proto, port = "http", inc.port
            else:
                proto_turn += 1
                proto, port = (("resp", inc.redis_port) if proto_turn % 2
                               else ("memcached", inc.mc_port))
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
            except OSError:
                self.stats.add(proto, "connect error")
                time.sleep(0.05)
                continue
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(IO_TIMEOUT)
            conn = Conn(inc, proto)
            with self.stats.lock:
                self.stats.conns.append(conn)
            f = s.makefile("rb")
            try:
                for _ in range(self.rng.randint(20, 300)):
                    if self.stop:
                        break
                    refused = getattr(self, proto)(s, f, conn)
                    time.sleep(0.02 if refused else self.fleet.args.pace)
            except (OSError, ValueError) as e:
                self.stats.add(proto, "connection error" if not isinstance(e, socket.timeout)
                               else "timeout")
            finally:
                try:
                    s.close()
                except OSError:
                    pass

    def take(self, conn, ids, mid):
        """Checks and keeps the IDs of one answer; mid: the answer's
        machine_id, or None (RESP, memcached)."""
        last = conn.ids[-1] if conn.ids else None
        for x in ids:
            if mid is not None and machine_of(x) != mid:
                self.stats.violation("machine", "%s %s: ID %d has machine %d, answer says %d"
                                     % (conn.inc.name, conn.proto, x, machine_of(x), mid))
            if last is not None:
                if machine_of(x) == machine_of(last) and x <= last:
                    self.stats.violation("order", "%s %s: %d after %d on one connection"
                                         % (conn.inc.name, conn.proto, x, last))
                elif time_seq(x) <= time_seq(last):
                    self.stats.violation("order", "%s %s: %d (machine %d) after %d "
                                         "(machine %d): time+sequence went back"
                                         % (conn.inc.name, conn.proto, x, machine_of(x),
                                            last, machine_of(last)))
            last = x
        if mid is not None:
            conn.answered_mids.add(mid)
        else:
            conn.answered_mids.update(machine_of(x) for x in ids)
        conn.ids.extend(ids)
        self.stats.add(conn.proto, "ok")
        self.stats.add(conn.proto, "ids", len(ids))
        with self.stats.lock:
            self.stats.ok_seconds.add(int(time.monotonic() - self.stats.t0))

    def http(self, s, f, conn):
        if self.rng.random() < 0.2:
            path = "/id"
        else:
            path = "/ids?count=%d" % self.rng.randint(1, self.fleet.args.count_max)
        s.sendall(("GET %s HTTP/1.1\r\nHost: n\r\n\r\n" % path).encode())
        line = f.readline(1024)
        if not line:
            raise OSError("closed")
        status = int(line.split()[1])
        headers = {}
        for _ in range(100):
            h = f.readline(8192)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        body = f.read(int(headers.get("content-length", "0")))
        if status == 200:
            j = json.loads(body)
            ids = [int(x) for x in j["ids"]] if "ids" in j else [int(j["id"])]
            self.take(conn, ids, int(j["machine_id"]))
            return False
        if status == 503 and headers.get("retry-after"):
            self.stats.add("http", "503")
            return True
        self.stats.violation("status", "%s http %s: %d %r" % (
            conn.inc.name, path, status, body[:200]))
        self.stats.add("http", "bad status")
        return True

    def resp(self, s, f, conn):
        n = self.rng.randint(1, self.fleet.args.count_max)
        cmd = b"GET id\r\n" if self.rng.random() < 0.2 else b"GET ids:%d\r\n" % n
        s.sendall(cmd)
        line = f.readline(8192)
        if not line:
            raise OSError("closed")
        if line.startswith(b"-ERR "):
            if b"Protocol error" in line or b"unknown command" in line:
                self.stats.violation("status", "%s resp: %r" % (conn.inc.name, line))
            self.stats.add("resp", "-ERR")
            return True
        if line.startswith(b"$"):
            ids = [int(f.readline(64))]
        elif line.startswith(b"*"):
            k = int(line[1:])
            ids = []
            for _ in range(k):
                f.readline(64)
                ids.append(int(f.readline(64)))
        else:
            self.stats.violation("status", "%s resp: %r" % (conn.inc.name, line[:200]))
            raise OSError("bad RESP answer")
        self.take(conn, ids, None)
        return False

    def memcached(self, s, f, conn):
        k = self.rng.randint(1, 20)
        s.sendall(b"get" + b" id" * k + b"\r\n")
        ids = []
        for _ in range(k + 1):
            line = f.readline(8192)
            if not line:
                raise OSError("closed")
            if line.startswith(b"SERVER_ERROR "):
                self.stats.add("memcached", "SERVER_ERROR")
                return True
            if line == b"END\r\n":
                break
            if not line.startswith(b"VALUE id "):
                self.stats.violation("status", "%s memcached: %r" % (conn.inc.name, line[:200]))
                raise OSError("bad memcached answer")
            ids.append(int(f.readline(64)))
        if len(ids) != k:
            self.stats.violation("status", "%s memcached: %d values for %d keys"
                                 % (conn.inc.name, len(ids), k))
        self.take(conn, ids, None)
        return False


# ---------------------------------------------------------------- faults


class Nemesis:
    FAULTS = [("node-kill", 3), ("node-freeze", 2), ("etcd-kill-leader", 1),
              ("etcd-freeze", 2), ("relay-delay", 1.5), ("relay-dup", 1.5),
              ("relay-lose-answers", 1.5), ("relay-reorder", 2),
              ("relay-late-after-kill", 2), ("relay-cut", 1)]

    def __init__(self, fleet, cluster, seed, log):
        self.fleet, self.cluster, self.log = fleet, cluster, log
        self.rng = random.Random("%s/faults" % seed)
        self.timers = []
        self.etcd_busy = False
        self.applied = []

    def later(self, secs, fn, *a):
        t = threading.Timer(secs, fn, args=a)
        t.daemon = True
        self.timers.append(t)
        t.start()

    def fault(self, name, msg):
        self.applied.append(name)
        self.log("fault", "%s: %s" % (name, msg))

    def live(self, slots):
        return [s for s in slots if s.inc is not None and s.inc.alive()
                and s.inc.serving and not s.inc.frozen]

    def run(self, duration):
        names = [n for n, _ in self.FAULTS]
        weights = [w for _, w in self.FAULTS]
        if not self.fleet.slots[0].relay:
            weights = [0 if n.startswith("relay") else w for n, w in self.FAULTS]
        end = time.monotonic() + duration
        time.sleep(min(3, duration))
        while time.monotonic() < end:
            name = self.rng.choices(names, weights)[0]
            getattr(self, name.replace("-", "_"))()
            time.sleep(self.rng.uniform(0.3, 2.0))

    # nodes
    def node_kill(self):
        slots = self.live(self.fleet.slots)
        down = self.rng.uniform(0, 4)
        if not slots:
            return
        s = self.rng.choice(slots)
        s.down_until = time.monotonic() + down
        self.fault("node-kill", "%s, restarted in %.1f s" % (s.inc.name, down))
        self.fleet.kill(s.inc)

    def node_freeze(self):
        slots = self.live(self.fleet.slots)
        secs = self.rng.uniform(2.5, 5)
        if not slots:
            return
        inc = self.rng.choice(slots).inc
        inc.frozen = True
        inc.proc.send_signal(signal.SIGSTOP)
        self.fault("node-freeze", "SIGSTOP %s for %.1f s" % (inc.name, secs))

        def wake():
            inc.frozen = False
            if inc.alive():
                inc.proc.send_signal(signal.SIGCONT)
                self.log("fault", "SIGCONT %s" % inc.name)
        self.later(secs, wake)

    # etcd
    def etcd_kill_leader(self):
        down = self.rng.uniform(1, 4)
        if self.etcd_busy:
            return
        m = self.cluster.leader()
        if m is None:
            return
        self.etcd_busy = True
        m.kill()
        self.fault("etcd-kill-leader", "SIGKILL etcd %s (the leader), restarted in %.1f s"
                   % (m.name, down))

        def back():
            m.start(self.cluster.spec)
            self.etcd_busy = False
            self.log("fault", "etcd %s restarted" % m.name)
        self.later(down, back)

    def etcd_freeze(self):
        secs = self.rng.uniform(1, 4)
        which = self.rng.random()
        if self.etcd_busy:
            return
        if which < 0.4:
            m = self.cluster.leader()
        else:
            m = self.rng.choice(self.cluster.members)
        if m is None or not m.usable():
            return
        self.etcd_busy = True
        m.signal(signal.SIGSTOP)
        self.fault("etcd-freeze", "SIGSTOP etcd %s for %.1f s" % (m.name, secs))

        def wake():
            m.signal(signal.SIGCONT)
            self.etcd_busy = False
            self.log("fault", "SIGCONT etcd %s" % m.name)
        self.later(secs, wake)

    # relays
    def relayed(self):
        return [s for s in self.fleet.slots if s.relay]

    def relay_delay(self):
        s = self.rng.choice(self.relayed())
        secs, p, lo, hi = self.rng.uniform(3, 8), 0.5, 50, self.rng.uniform(200, 900)
        s.relay.delay = (p, lo, hi)
        self.fault("relay-delay", "%s: requests delayed %d-%d ms (p %.1f) for %.1f s"
                   % (s.relay.name, lo, hi, p, secs))

        def off():
            s.relay.delay = None
            self.log("fault", "%s: delays off" % s.relay.name)
        self.later(secs, off)

    def relay_dup(self):
        s = self.rng.choice(self.relayed())
        secs = self.rng.uniform(3, 8)
        s.relay.dup = (0.5, 1500)
        self.fault("relay-dup", "%s: requests sent twice (p 0.5, copy 0-1.5 s later) "
                   "for %.1f s" % (s.relay.name, secs))

        def off():
            s.relay.dup = None
            self.log("fault", "%s: duplicates off" % s.relay.name)
        self.later(secs, off)

    def relay_lose_answers(self):
        s = self.rng.choice(self.relayed())
        secs = self.rng.uniform(2, 5)
        s.relay.lose = 0.3
        self.fault("relay-lose-answers", "%s: requests applied but their answers lost "
                   "(p 0.3) for %.1f s" % (s.relay.name, secs))

        def off():
            s.relay.lose = None
            self.log("fault", "%s: answers delivered again" % s.relay.name)
        self.later(secs, off)

    def _hold_one_mark(self, s):
        """Holds the next mark write through s's relay: the item, or None."""
        s.relay.hold_mark = True
        end = time.monotonic() + 3
        while time.monotonic() < end:
            with s.relay.lock:
                for i, h in enumerate(s.relay.held):
                    if h[2] == "mark":
                        return s.relay.held.pop(i)
            time.sleep(0.01)
        s.relay.hold_mark = False
        return None

    def writing(self):
        """The live relayed slots whose node is writing marks (holds an id
        and its clock is not waiting behind the mark)."""
        return [s for s in self.live(self.relayed())
                if time.monotonic() - s.relay.last_mark < 1]

    def relay_reorder(self):
        slots = self.writing()
        if not slots:
            return
        s = self.rng.choice(slots)
        extra = self.rng.uniform(0, 0.5)
        self.fault("relay-reorder", "%s: hold %s's next mark write until a later "
                   "one got through" % (s.relay.name, s.inc.name))
        item = self._hold_one_mark(s)
        if item is None:
            return
        passed = s.relay.marks_passed
        end = time.monotonic() + 3
        while s.relay.marks_passed < passed + 2 and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(extra)
        s.relay.deliver(item, "reordered")

    def relay_late_after_kill(self):
        # The relayed node whose clock is furthest ahead: whoever takes its
        # id next is behind it, the case where a lowered mark repeats IDs.
        slots = self.writing()
        if not slots:
            return
        s = max(slots, key=lambda x: (round(x.inc.lead(), 1), self.rng.random()))
        wait, after, down = (self.rng.uniform(0.9, 2.0), self.rng.uniform(0, 0.4),
                             self.rng.uniform(1, 5))
        inc = s.inc
        self.fault("relay-late-after-kill", "%s: hold %s's next mark write (its "
                   "clock %+.1f s), SIGKILL it %.1f s later, deliver the write %.1f s "
                   "after that; restart in %.1f s, nodes started in the next 10 s "
                   "behind it" % (s.relay.name, inc.name, inc.lead(), wait, after, down))
        item = self._hold_one_mark(s)
        if item is None:
            return
        time.sleep(wait)
        s.down_until = time.monotonic() + down
        # The nodes that start in the next 10 s run behind the killed one.
        behind = "%+ds" % round(inc.lead() - self.rng.uniform(5, 10))
        self.fleet.successor_clock = (behind, time.monotonic() + 10)
        self.fleet.kill(inc)
        time.sleep(after)
        s.relay.deliver(item, "late")

    def relay_cut(self):
        s = self.rng.choice(self.relayed())
        secs = self.rng.uniform(1, 4)
        s.relay.cut = True
        self.fault("relay-cut", "%s: partition for %.1f s (held requests delivered "
                   "after)" % (s.relay.name, secs))

        def heal():
            s.relay.cut = False
            held = s.relay.take_held()
            self.log("fault", "%s: healed, delivering %d held requests" % (
                s.relay.name, len(held)))
            for item in held:
                s.relay.deliver(item, "after partition")
        self.later(secs, heal)

    def heal_all(self):
        for t in self.timers:
            t.cancel()
        for slot in self.fleet.slots:
            for inc in slot.incs:
                if inc.alive() and inc.frozen:
                    inc.proc.send_signal(signal.SIGCONT)
                inc.frozen = False
            if slot.relay:
                slot.relay.reset()
                for item in slot.relay.take_held():
                    slot.relay.deliver(item, "held at the end")
        for m in self.cluster.members:
            if m.up():
                m.signal(signal.SIGCONT)
            else:
                m.start(self.cluster.spec)
        self.etcd_busy = False


# ---------------------------------------------------------------- checks


def check(fleet, stats, events, prefix, log):
    """Every check over the IDs and the etcd history: (figures, problems)."""
    problems = {}
    figures = {}

    def problem(kind, detail):
        problems.setdefault(kind, []).append(detail)

    for what, detail in stats.bad:
        problem(what, detail)

    # The history: claims (holder key created) and mark puts, per id.
    claims = {}   # mid -> [(rev, pid or None, mark read)]
    marks = {}    # mid -> [(rev, value)]
    plen = len(prefix)
    for rev, typ, key, value, create_rev, _lease in sorted(events):
        rest = key[plen:]
        if rest.endswith("/mark") and rest[:-5].isdigit():
            if typ == "PUT":
                try:
                    v = int(value)
                except ValueError:
                    problem("mark", "unreadable mark %r at revision %d" % (value, rev))
                    continue
                marks.setdefault(int(rest[:-5]), []).append((rev, v))
        elif rest.isdigit() and typ == "PUT" and create_rev == rev:
            pid = None
            try:
                pid = json.loads(value).get("pid")
            except ValueError:
                pass  # our own hold keys
            mid = int(rest)
            ms = marks.get(mid, [])
            claims.setdefault(mid, []).append((rev, pid, ms[-1][1] if ms else 0))
    lowered = 0
    for mid, ms in sorted(marks.items()):
        for (r0, v0), (r1, v1) in zip(ms, ms[1:]):
            if v1 < v0:
                lowered += 1
                problem("mark lowered", "id %d: mark %d at revision %d, then %d at "
                        "revision %d (%d ms lower)" % (mid, v0, r0, v1, r1, v0 - v1))
    figures["mark puts"] = sum(len(v) for v in marks.values())
    figures["marks lowered"] = lowered

    # Per process: the ids it claimed; per (process, id): its IDs' range.
    claimed = {}  # pid -> set of mid
    for mid, cl in claims.items():
        for rev, pid, _ in cl:
            if pid is not None:
                claimed.setdefault(pid, set()).add(mid)
    span = {}  # (pid, mid) -> [min unix ms, max unix ms]
    total = 0
    per_proto = {}
    buckets = [array.array("Q") for _ in range(16)]
    for c in stats.conns:
        pid = c.inc.pid
        total += len(c.ids)
        per_proto[c.proto] = per_proto.get(c.proto, 0) + len(c.ids)
        for mid in c.answered_mids - claimed.get(pid, set()):
            problem("machine", "%s answered under machine id %d, which it never "
                    "claimed in etcd" % (c.inc.name, mid))
        for x in c.ids:
            buckets[(x >> 22) & 15].append(x)
            k = (pid, machine_of(x))
            t = unix_ms(x)
            sp = span.get(k)
            if sp is None:
                span[k] = [t, t]
            elif t < sp[0]:
                sp[0] = t
            elif t > sp[1]:
                sp[1] = t
    figures["IDs"] = total
    figures["IDs by protocol"] = per_proto
    figures["connections"] = len(stats.conns)

    # Unique: bucket by the low bits of the time, a set per bucket.
    dup_ids = 0
    dup_examples = []
    for b in buckets:
        seen = set()
        for x in b:
            if x in seen:
                dup_ids += 1
                if len(dup_examples) < 20:
                    dup_examples.append(x)
            else:
                seen.add(x)
        del seen
    figures["duplicates"] = dup_ids
    if dup_ids:
        where = {}
        ex = set(dup_examples)
        for c in stats.conns:
            for x in c.ids:
                if x in ex:
                    where.setdefault(x, []).append("%s/%s" % (c.inc.name, c.proto))
        for x in dup_examples:
            problem("duplicate", "ID %d (machine %d, unix ms %d) answered by %s" % (
                x, machine_of(x), unix_ms(x), ", ".join(where.get(x, []))))

    # Handovers: each claim read a mark above every ID of earlier holders.
    names = {inc.pid: inc.name for s in fleet.slots for inc in s.incs}
    handover_bad = 0
    nclaims = 0
    for mid, cl in sorted(claims.items()):
        by_pid = {}
        for rev, pid, m in cl:
            if pid is not None:
                by_pid.setdefault(pid, []).append(rev)
        for rev, pid, m in cl:
            if pid is None:
                continue
            nclaims += 1
            for q, revs in by_pid.items():
                if q == pid or max(revs) > rev or (q, mid) not in span:
                    continue
                if span[(q, mid)][1] >= m:
                    handover_bad += 1
                    problem("handover", "id %d claimed by %s at revision %d read mark %d, "
                            "but %s had issued under it up to unix ms %d (%d ms past "
                            "the mark)" % (mid, names.get(pid, pid), rev, m,
                                           names.get(q, q), span[(q, mid)][1],
                                           span[(q, mid)][1] - m + 1))
            if len(by_pid[pid]) == 1 and (pid, mid) in span and span[(pid, mid)][0] < m:
                handover_bad += 1
                problem("handover", "%s claimed id %d reading mark %d, then issued at "
                        "unix ms %d, below it" % (names.get(pid, pid), mid, m,
                                                  span[(pid, mid)][0]))
        last = marks.get(mid, [(0, 0)])[-1][1]
        top = max((sp[1] for (p, m2), sp in span.items() if m2 == mid), default=None)
        if top is not None and top >= last:
            problem("final mark", "id %d: last stored mark %d, but an ID at unix ms %d"
                    % (mid, last, top))
    figures["claims"] = nclaims
    figures["handover violations"] = handover_bad
    return figures, problems


# ------------------------------------------------------------------- run


def run_one(args, seed):
    args.seed = seed
    run_dir = tempfile.mkdtemp(prefix="sf-nemesis-%s-" % seed)
    log = Log(os.path.join(run_dir, "schedule.log"), quiet=args.quiet)
    prefix = "/sf-nemesis/%s/" % seed
    free = set(range(args.free))
    print("nemesis: seed %s, %d s, %d nodes (%d through relays), %d free ids, TTL %d s, "
          "leap %d ms, logs in %s" % (seed, args.duration, args.nodes, args.relayed,
                                      args.free, TTL, LEAP_MS, run_dir), flush=True)
    cluster = Cluster(run_dir)
    fleet = None
    clients = []
    ok = False

    def hung():
        # Everything stops by itself: a run that overstays its time is
        # killed whole (its logs kept).
        log("error", "run still going %d s after its faults ended: killed" % WATCHDOG_S)
        for m in cluster.members:
            m.kill()
        if fleet:
            fleet.stop_all()
        print("nemesis: seed %s HUNG; logs kept in %s" % (seed, run_dir), flush=True)
        os._exit(3)
    dog = threading.Timer(args.duration + args.settle + WATCHDOG_S, hung)
    dog.daemon = True
    dog.start()
    try:
        cluster.start()
        log("etcd", "cluster up: %s" % ", ".join("%s %s" % (m.name, m.url)
                                                 for m in cluster.members))
        hold_all_but(cluster, prefix, free, args.duration + 600)
        fleet = Fleet(args, run_dir, cluster, prefix, log)
        sup = threading.Thread(target=fleet.supervise, daemon=True)
        sup.start()
        stats = Stats()
        for slot in fleet.slots:
            for kind in ("http", "other"):
                c = Client(fleet, slot, kind, stats, seed, log)
                clients.append(c)
                c.thread.start()
        nem = Nemesis(fleet, cluster, seed, log)
        nem.run(args.duration)
        log("nemesis", "faults over: healing everything, then %d s of load" % args.settle)
        nem.heal_all()
        time.sleep(args.settle)
        for c in clients:
            c.stop = True
        for c in clients:
            c.thread.join(timeout=IO_TIMEOUT * 3)
        stats.t1 = time.monotonic()
        fleet.stop_all()
        end = time.monotonic() + 30
        while not all(cluster.healthy(m) for m in cluster.members):
            if time.monotonic() > end:
                raise RuntimeError("etcd did not recover after the run")
            time.sleep(0.2)
        events = history(cluster, prefix, log)
        with open(os.path.join(run_dir, "history.txt"), "w") as f:
            for rev, typ, key, value, create_rev, lease in events:
                f.write("%d %s %s %s (created %d, lease %s)\n" % (
                    rev, typ, key, value.decode(errors="replace"), create_rev, lease))
        figures, problems = check(fleet, stats, events, prefix, log)
        ok = not problems
        summary(args, seed, nem, stats, figures, problems, log, run_dir)
    except Exception as e:  # noqa: BLE001 - any crash is a failed run, logs kept
        log("error", "%s: %s" % (type(e).__name__, e))
        import traceback
        traceback.print_exc()
        ok = False
    finally:
        dog.cancel()
        for c in clients:
            c.stop = True
        if fleet:
            fleet.stop_all()
        cluster.kill_all()
        for m in cluster.members:  # hundreds of MB; history.txt has what matters
            shutil.rmtree(m.dir, ignore_errors=True)
        log.f.close()
    if ok and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
        print("nemesis: seed %s PASSED" % seed, flush=True)
    else:
        print("nemesis: seed %s %s; logs kept in %s" % (
            seed, "PASSED" if ok else "FAILED", run_dir), flush=True)
    return ok


def summary(args, seed, nem, stats, figures, problems, log, run_dir):
    out = []
    c = stats.count
    tries = {}
    for (proto, outcome), n in c.items():
        if outcome != "ids":
            tries[proto] = tries.get(proto, 0) + n
    okn = sum(n for (p, o), n in c.items() if o == "ok")
    alln = sum(tries.values())
    faults = {}
    for n in nem.applied:
        faults[n] = faults.get(n, 0) + 1
    secs = int(stats.t1 - stats.t0 + 0.5)
    out.append("seed %s: %d faults applied: %s" % (seed, len(nem.applied), ", ".join(
        "%s %d" % kv for kv in sorted(faults.items()))))
    out.append("IDs: %d answered (%s) on %d connections" % (
        figures["IDs"], ", ".join("%s %d" % kv for kv in sorted(figures["IDs by protocol"].items())),
        figures["connections"]))
    out.append("duplicates: %d" % figures["duplicates"])
    out.append("marks: %d puts replayed from revision 1, %d went down" % (
        figures["mark puts"], figures["marks lowered"]))
    out.append("handovers: %d claims checked, %d violations" % (
        figures["claims"], figures["handover violations"]))
    out.append("answers: %s" % ", ".join("%s %s %d" % (p, o, n) for (p, o), n in sorted(c.items())
                                         if o != "ids"))
    out.append("availability: %.1f%% of %d requests answered with IDs; IDs in %d of %d s"
               % (100.0 * okn / max(1, alln), alln,
                  len([s for s in stats.ok_seconds if s < secs]), secs))
    for kind, details in sorted(problems.items()):
        n = figures["duplicates"] if kind == "duplicate" else len(details)
        out.append("VIOLATION %s: %d%s" % (kind, n, " (%d shown)" % len(details)
                                           if n > len(details) else ""))
        for d in details[:5]:
            out.append("  " + d)
    text = "\n".join(out)
    print(text, flush=True)
    with open(os.path.join(run_dir, "summary.txt"), "w") as f:
        f.write(text + "\n")
        for kind, details in sorted(problems.items()):
            f.write("\n== %s (%d)\n" % (kind, len(details)))
            for d in details[:1000]:
                f.write(d + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", help="one seed (default: a random one, printed)")
    ap.add_argument("--seeds", help="comma-separated seeds, one run each")
    ap.add_argument("--duration", type=float, default=60, help="seconds of faults (60)")
    ap.add_argument("--settle", type=float, default=3, help="seconds of load after (3)")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--relayed", type=int, default=3, help="nodes behind relays (3)")
    ap.add_argument("--free", type=int, default=3, help="machine ids left free (3)")
    ap.add_argument("--max-skew", type=int, default=10, help="clock skew, s (10)")
    ap.add_argument("--count-max", type=int, default=200, help="largest batch (200)")
    ap.add_argument("--pace", type=float, default=0.01, help="s between requests (0.01)")
    ap.add_argument("--keep", action="store_true", help="keep the logs of a passing run")
    ap.add_argument("--quiet", action="store_true", help="no line per fault")
    args = ap.parse_args()
    if not os.path.exists(SNOWFLAKED):
        sys.exit("nemesis: %s not built (make all)" % SNOWFLAKED)
    for tool in (ETCD, LIBFAKETIME):
        if not os.path.exists(tool):
            sys.exit("nemesis: %s missing (scripts/deps.sh test)" % tool)
    if args.seeds:
        seeds = [s.strip() for s in args.seeds.split(",") if s.strip()]
    else:
        seeds = [args.seed or str(random.SystemRandom().randrange(1, 10 ** 6))]
    passed = failed = 0
    t0 = time.monotonic()

    def term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, term)
    for s in seeds:
        if run_one(args, s):
            passed += 1
        else:
            failed += 1
    print("nemesis: %d seeds in %.0f s" % (len(seeds), time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
