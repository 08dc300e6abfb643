"""MACHINE_ID=auto: machine ids leased from a real etcd.

Each test talks to an etcd started here from Debian's etcd-server, on free
loopback ports with its data in a temporary directory, and to real
snowflaked processes. Lease TTLs are short (2 s) so the tests stay short;
nothing here asserts how fast anything happens, only what happens, waiting
up to a generous deadline for each state.
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

SNOWFLAKED = os.environ.get("SNOWFLAKED", os.path.abspath("build/snowflaked"))
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
TTL = 2
MACHINE_BITS, SEQ_BITS = 10, 12
DEADLINE = 30.0  # seconds to wait for any one state; generous for ASan

pytestmark = pytest.mark.skipif(
    not (os.path.exists(ETCD) and os.path.exists(ETCDCTL)),
    reason="etcd-server / etcd-client not installed (scripts/deps.sh test)",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, pred, deadline=DEADLINE, every=0.05):
    end = time.monotonic() + deadline
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(every)


def http(url, timeout=2.0, data=None):
    """(status, body text); status 0 when nothing answered."""
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (OSError, urllib.error.URLError):
        return 0, ""


class Etcd:
    """One etcd member on loopback; stop/cont/kill/restart keep its data."""

    def __init__(self, tmp):
        self.dir = tmp
        self.port, self.peer = free_port(), free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = None
        self.log = open(os.path.join(tmp, "etcd.log"), "ab")

    def start(self):
        peer = "http://127.0.0.1:%d" % self.peer
        self.proc = subprocess.Popen(
            [ETCD, "--name", "n1", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", self.url,
             "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer,
             "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "n1=" + peer,
             "--max-txn-ops", "1024"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for("etcd to answer", lambda: self._healthy())

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError("etcd exited: see " + self.log.name)
        st, body = http(self.url + "/health", timeout=1)
        return st == 200 and '"true"' in body

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def keys(self, prefix):
        """The holder keys under prefix (the <id>/mark keys left out)."""
        out = subprocess.run(
            [ETCDCTL, "--endpoints", self.url, "get", "--prefix", "--keys-only",
             prefix], check=True, capture_output=True, text=True).stdout
        return sorted(k for k in out.split() if k and not k.endswith("/mark"))

    def mark(self, prefix, mid):
        """The handover mark stored for machine id mid (unix ms), or None."""
        out = subprocess.run(
            [ETCDCTL, "--endpoints", self.url, "get", "--print-value-only",
             "%s%d/mark" % (prefix, mid)],
            check=True, capture_output=True, text=True).stdout.strip()
        return int(out) if out else None

    def put_many(self, keys):
        """Put keys in transactions of up to 1024 puts (value "x")."""
        b64 = lambda s: base64.b64encode(s.encode()).decode()
        for i in range(0, len(keys), 1024):
            ops = [{"request_put": {"key": b64(k), "value": b64("x")}}
                   for k in keys[i:i + 1024]]
            st, body = http(self.url + "/v3/kv/txn", timeout=10,
                            data=json.dumps({"success": ops}).encode())
            assert st == 200, body


class Node:
    """One snowflaked with MACHINE_ID=auto."""

    def __init__(self, etcd_url, prefix, tmp, **env):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        e = dict(os.environ)
        e.update(MACHINE_ID="auto", ETCD_ENDPOINTS=etcd_url,
                 ETCD_PREFIX=prefix, ETCD_LEASE_TTL=str(TTL),
                 PORT=str(self.port), BIND="127.0.0.1", THREADS="1")
        e.update(env)
        self.log = tempfile.NamedTemporaryFile(
            dir=tmp, prefix="node-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([SNOWFLAKED], env=e, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def get_id(self):
        """(status, id, machine_id); id and machine_id None unless 200."""
        st, body = http(self.url + "/id", timeout=2)
        if st != 200:
            return st, None, None
        j = json.loads(body)
        return st, int(j["id"]), int(j["machine_id"])

    def wait_serving(self):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("snowflaked exited %d:\n%s"
                                     % (self.proc.returncode, self.output()))
            st, _, mid = self.get_id()
            return (mid,) if st == 200 else None  # id 0 is falsy
        return wait_for("a node to serve /id", ready)[0]

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def machine_of(id_):
    return (id_ >> SEQ_BITS) & ((1 << MACHINE_BITS) - 1)


class Collector:
    """Polls /id on nodes from a thread and keeps every ID issued, with the
    time each answer arrived."""

    def __init__(self, nodes):
        self.nodes = list(nodes)
        self.got = []  # (monotonic time received, node index, id, machine_id)
        self.statuses = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, node):
        with self.lock:
            self.nodes.append(node)

    def _run(self):
        while not self.stop_ev.is_set():
            with self.lock:
                nodes = list(enumerate(self.nodes))
            for i, n in nodes:
                if n.proc.poll() is not None:
                    continue
                st, id_, mid = n.get_id()
                t = time.monotonic()
                with self.lock:
                    self.statuses.append((t, i, st))
                    if st == 200:
                        self.got.append((t, i, id_, mid))
            time.sleep(0.01)

    def finish(self):
        self.stop_ev.set()
        self.thread.join()
        ids = [g[2] for g in self.got]
        assert len(ids) == len(set(ids)), "duplicate IDs issued"
        for _, _, id_, mid in self.got:
            assert machine_of(id_) == mid
        return self.got


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="sf-etcd-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def etcd(tmp):
    e = Etcd(tmp)
    e.start()
    yield e
    e.kill()


@pytest.fixture
def fleet(etcd, tmp):
    """Starts nodes under a prefix of the test's own; stops them at exit."""
    prefix = "/sf-test/%s/" % uuid.uuid4().hex[:8]
    nodes = []

    def start(**env):
        n = Node(etcd.url, prefix, tmp, **env)
        nodes.append(n)
        return n

    start.prefix = prefix
    yield start
    for n in nodes:
        n.stop(signal.SIGKILL)


def test_three_nodes_take_distinct_ids_and_a_fourth_the_next(etcd, fleet):
    nodes = [fleet() for _ in range(3)]  # started together: they race
    mids = sorted(n.wait_serving() for n in nodes)
    assert mids == [0, 1, 2]
    assert etcd.keys(fleet.prefix) == [fleet.prefix + str(i) for i in range(3)]
    # The key holds who took it.
    out = subprocess.run([ETCDCTL, "--endpoints", etcd.url, "get",
                          "--print-value-only", fleet.prefix + "0"],
                         check=True, capture_output=True, text=True).stdout
    holder = json.loads(out)
    assert holder["pid"] in [n.proc.pid for n in nodes]
    fourth = fleet()
    assert fourth.wait_serving() == 3
    ids = []
    for n in nodes + [fourth]:
        for _ in range(50):
            st, id_, mid = n.get_id()
            assert st == 200
            assert machine_of(id_) == mid
            ids.append(id_)
    assert len(set(ids)) == len(ids)
    assert "machine id 3" in fourth.output()  # the start-up line says so


def test_health_and_metrics_show_the_lease(etcd, fleet):
    n = fleet()
    mid = n.wait_serving()
    st, body = http(n.url + "/health")
    assert st == 200
    st, body = http(n.url + "/metrics")
    assert st == 200
    lines = body.splitlines()
    assert "snowflake_lease_held 1" in lines
    assert "snowflake_machine_id %d" % mid in lines
    assert "snowflake_lease_acquisitions_total 1" in lines


def test_sigterm_revokes_the_lease_at_once(etcd, fleet):
    # A leap of ten minutes: the marks stay ahead of the clock throughout.
    a, b = fleet(ETCD_MARK_LEAP_MS="600000"), fleet(ETCD_MARK_LEAP_MS="600000")
    ids = {a.wait_serving(), b.wait_serving()}
    assert ids == {0, 1}
    mid_a = a.get_id()[2]
    assert a.stop(signal.SIGTERM) == 0
    # The node revoked its lease before it exited: the key is gone already,
    # its mark stays.
    assert etcd.keys(fleet.prefix) == [fleet.prefix + str(1 - mid_a)]
    assert etcd.mark(fleet.prefix, mid_a) > time.time() * 1000
    # A free id whose mark is behind the clock (2: none yet) is preferred to
    # one whose mark is ahead: the newcomer serves at once.
    c = fleet()
    assert c.wait_serving() == 2
    # Once only the id whose mark is ahead is free, it is taken, and nothing
    # is issued until the clock passes the mark: 503 with Retry-After, and
    # /health 503.
    etcd.put_many([fleet.prefix + str(i) for i in range(3, 1 << MACHINE_BITS)])
    d = fleet()
    wait_for("the last node to listen", lambda: http(d.url + "/health")[0])
    assert etcd.keys(fleet.prefix) == sorted(
        fleet.prefix + str(i) for i in range(1 << MACHINE_BITS))
    st, body = http(d.url + "/health")
    assert st == 503, body
    st, body = http(d.url + "/id")
    assert st == 503 and "clock" in body, body


def test_sigkill_frees_the_id_after_the_ttl(etcd, fleet):
    nodes = [fleet() for _ in range(3)]
    for n in nodes:
        n.wait_serving()
    victim = next(n for n in nodes if n.get_id()[2] == 1)
    victim.stop(signal.SIGKILL)
    key = fleet.prefix + "1"
    wait_for("the killed node's key to expire",
             lambda: key not in etcd.keys(fleet.prefix), every=0.2)
    newcomer = fleet()
    assert newcomer.wait_serving() == 1
    assert len(etcd.keys(fleet.prefix)) == 3


class Blackhole:
    """A TCP relay to etcd that can stop relaying, as a network partition
    between one node and etcd would, while etcd stays up for the others."""

    def __init__(self, target_port):
        self.target = target_port
        self.cut = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            c.close()
            return
        for a, b in ((c, u), (u, c)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.cut.is_set():  # hold the bytes: a partition
                    time.sleep(0.05)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_partitioned_node_stops_before_its_id_is_reused(etcd, fleet):
    """A node cut off from etcd must stop issuing before etcd can expire its
    lease, hence before any other node can take its id."""
    hole = Blackhole(etcd.port)
    try:
        cut_off = fleet(ETCD_ENDPOINTS=hole.url)
        assert cut_off.wait_serving() == 0
        other = fleet()
        assert other.wait_serving() == 1
        col = Collector([cut_off, other])
        wait_for("IDs from both nodes",
                 lambda: {g[1] for g in col.got} == {0, 1})
        hole.cut.set()
        key = fleet.prefix + "0"
        wait_for("the cut-off node's lease to expire in etcd",
                 lambda: key not in etcd.keys(fleet.prefix), every=0.1)
        t_expired = time.monotonic()
        # The cut-off node said 503 before etcd dropped its key.
        st, _, _ = cut_off.get_id()
        assert st == 503
        newcomer = fleet()
        col.add(newcomer)
        assert newcomer.wait_serving() == 0
        wait_for("IDs from the newcomer",
                 lambda: any(g[1] == 2 for g in col.got))
        hole.cut.clear()
        # Back in touch, the old node takes a fresh id, not 0.
        wait_for("the cut-off node to serve again",
                 lambda: cut_off.get_id()[0] == 200)
        assert cut_off.get_id()[2] == 2
        got = col.finish()
        last_old_0 = max(t for t, i, _, mid in got if i == 0 and mid == 0)
        first_new_0 = min(t for t, i, _, mid in got if i == 2)
        assert last_old_0 < t_expired < first_new_0
        statuses = [st for _, i, st in col.statuses if i == 0]
        assert 503 in statuses
    finally:
        hole.cut.clear()
        hole.close()


@pytest.mark.parametrize("how", ["sigstop", "restart"])
def test_etcd_outage_stops_issuing_then_recovers(etcd, fleet, how):
    nodes = [fleet() for _ in range(3)]
    for n in nodes:
        n.wait_serving()
    col = Collector(nodes)
    wait_for("IDs from every node", lambda: {g[1] for g in col.got} == {0, 1, 2})
    if how == "sigstop":
        etcd.signal(signal.SIGSTOP)
    else:
        etcd.kill()
    try:
        for n in nodes:
            wait_for("a node to stop issuing", lambda: n.get_id()[0] == 503)
        # Nobody issues while etcd is away.
        for n in nodes:
            assert n.get_id()[0] == 503
        st, _ = http(nodes[0].url + "/health")
        assert st == 503  # out of rotation while it cannot issue
        st, body = http(nodes[0].url + "/metrics")
        assert st == 200 and "snowflake_lease_held 0" in body.splitlines()
        assert nodes[0].proc.poll() is None  # degraded, not dead
    finally:
        if how == "sigstop":
            etcd.signal(signal.SIGCONT)
        else:
            etcd.start()
    mids = set()
    for n in nodes:
        mids.add(n.wait_serving())
    assert len(mids) == 3  # still three distinct ids
    time.sleep(0.5)
    got = col.finish()
    assert len(got) > 0
    assert sorted(etcd.keys(fleet.prefix)) == sorted(
        fleet.prefix + str(m) for m in mids)
    for n in nodes:
        assert n.proc.poll() is None


# ------------------------------------------------------ invalid settings


def run_fail(tmp, **env):
    """Runs snowflaked expecting it to refuse to start; (status, output)."""
    e = dict(os.environ)
    e.update(MACHINE_ID="auto", PORT=str(free_port()), BIND="127.0.0.1",
             ETCD_LEASE_TTL=str(TTL))
    e.update(env)
    p = subprocess.run([SNOWFLAKED], env=e, capture_output=True, text=True,
                       timeout=DEADLINE * 2)
    return p.returncode, p.stdout + p.stderr


def test_no_endpoints_is_a_clear_error(tmp):
    rc, out = run_fail(tmp, ETCD_ENDPOINTS="")
    assert rc == 2, out
    assert "ETCD_ENDPOINTS" in out


def test_endpoint_not_a_url_is_a_clear_error(tmp):
    rc, out = run_fail(tmp, ETCD_ENDPOINTS="127.0.0.1:2379")
    assert rc == 2, out
    assert "ETCD_ENDPOINTS" in out and "127.0.0.1:2379" in out


def refusals(node):
    """(status, Retry-After, body) of /id and of /health."""
    out = []
    for path in ("/id", "/health"):
        try:
            with urllib.request.urlopen(node.url + path, timeout=2) as r:
                out.append((r.status, None, r.read().decode()))
        except urllib.error.HTTPError as e:
            out.append((e.code, e.headers.get("Retry-After"),
                        e.read().decode()))
        except (OSError, urllib.error.URLError):
            out.append((0, None, ""))
    return out


def wait_refusing(node, *words):
    """Waits until /id and /health both answer 503 with Retry-After and a
    body naming every one of words; returns the /id body."""
    def refusing():
        if node.proc.poll() is not None:
            raise AssertionError("snowflaked exited %d:\n%s"
                                 % (node.proc.returncode, node.output()))
        r = refusals(node)
        ok = all(st == 503 and ra and all(w in body for w in words)
                 for st, ra, body in r)
        return r[0][2] if ok else None
    return wait_for("503s naming %s" % (words,), refusing)


def test_node_waits_for_an_etcd_that_is_not_there_yet(tmp):
    """etcd down at start: the node listens at once, answers 503 naming the
    endpoint and the cause, logs it once, and takes an id when etcd comes."""
    e = Etcd(tmp)
    n = Node(e.url, "/sf-wait/", tmp)
    try:
        body = wait_refusing(n, e.url, "refused")
        assert "no machine id lease" in body
        assert "pending (etcd lease: " in n.output()
        assert "snowflake_lease_held 0" in http(n.url + "/metrics")[1]

        def attempts():
            for l in http(n.url + "/metrics")[1].splitlines():
                if l.startswith("snowflake_lease_claim_attempts_total "):
                    return int(l.split()[1])
            raise AssertionError("no snowflake_lease_claim_attempts_total")
        wait_for("three tries", lambda: attempts() >= 3)
        # The cause was logged once, not once per try.
        assert n.output().count("Connection refused (retrying)") == 1, \
            n.output()
        e.start()
        assert n.wait_serving() == 0
        assert "took machine id 0" in n.output()
    finally:
        n.stop(signal.SIGKILL)
        e.kill()


def test_second_endpoint_is_used_when_the_first_is_down(etcd, fleet):
    dead = "http://127.0.0.1:%d" % free_port()
    n = fleet(ETCD_ENDPOINTS=dead + "," + etcd.url)
    assert n.wait_serving() == 0


def test_all_ids_taken_is_waited_out(etcd, tmp):
    prefix = "/sf-full/%s/" % uuid.uuid4().hex[:8]
    etcd.put_many([prefix + str(i) for i in range(1 << MACHINE_BITS)])
    n = Node(etcd.url, prefix, tmp)
    try:
        wait_refusing(n, "every machine id 0..1023", prefix, "taken")
        # One id freed: that is the one taken, by the node already running.
        subprocess.run([ETCDCTL, "--endpoints", etcd.url, "del", prefix + "700"],
                       check=True, capture_output=True)
        assert n.wait_serving() == 700
    finally:
        n.stop(signal.SIGKILL)


def test_machine_id_range_is_kept(etcd, fleet):
    """MACHINE_ID_RANGE=LOW-HIGH: only those ids are claimed; a fleet that
    fills its range waits, whatever is free outside it."""
    a = fleet(MACHINE_ID_RANGE="512-513")
    assert a.wait_serving() == 512
    b = fleet(MACHINE_ID_RANGE="512-513")
    assert b.wait_serving() == 513
    c = fleet(MACHINE_ID_RANGE="512-513")
    wait_refusing(c, "every machine id 512..513", "taken")
    a.stop()  # SIGTERM revokes: 512 is free at once
    assert c.wait_serving() == 512
    assert etcd.keys(fleet.prefix) == [fleet.prefix + "512",
                                       fleet.prefix + "513"]
