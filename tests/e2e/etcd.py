#!/usr/bin/python3
"""End-to-end test of docker-compose.etcd.yml: one etcd, three snowflaked
nodes of the production image that lease their machine ids from it
(MACHINE_ID=auto), first as shipped (plain http), then against an etcd run as
production etcds are: https only, client certificates, auth.

Run by tests/e2e/run.sh after the Dockerfile phases (which took their own
project down). Two parts, in one compose project:

1. As shipped: compose up -d --build with docker-compose.etcd.yml alone; all
   three nodes healthy with three distinct machine ids, etcd's keys naming
   exactly those; down -v. This is a user's first `up`.
2. TLS and auth (tests/e2e/compose.etcd.tls.yml over the shipped file):
   openssl makes a CA, etcd's certificate (DNS:etcd, IP:127.0.0.1, server
   and client use) and a client certificate without a CommonName; etcd
   starts with https client URLs and --client-cert-auth; etcdctl adds root
   and a user "snowflake" whose role has readwrite on the prefix only, and
   enables auth (that user is then refused outside the prefix, and a request
   without a user is refused); the nodes start with the CA, the client
   certificate and key, ETCD_USERNAME and a mounted ETCD_PASSWORD_FILE.
   Then: all three healthy; three distinct machine ids on /id and /metrics,
   and etcd's keys under the prefix name exactly those ids, each bound to a
   lease; 3 x 10,000 IDs fetched concurrently through /ids, no duplicate,
   every ID carrying its node's machine id; each id's mark above its IDs;
   `compose stop node2` (SIGTERM) exits 0 and its key is gone as soon as stop
   returns (the lease was revoked, not left to expire); `compose start
   node2` makes it healthy again with an id distinct from the other two,
   which kept theirs, and 10,000 IDs from it are new; then down -v.

No step asserts on timing: the waits only have generous deadlines. Prints
one line per step, a timing line, and `e2e etcd: PASS` or
`e2e etcd: FAIL: ...`.

Environment: COMPOSE ("docker compose" or "docker-compose"),
E2E_ETCD_PROJECT (compose project name), E2E_BUILD_NETWORK (auto | host |
default), NODE1_PORT..NODE3_PORT. Standard library only.
"""

import base64
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import (  # noqa: E402  (the helpers of the Dockerfile phases)
    ComposeProject, Failure, check, free_ports, get, get_json, machine_of,
    parse_ts, probe_build_network, run,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
COMPOSE = shlex.split(os.environ.get("COMPOSE", "docker-compose"))
PROJECT = os.environ.get("E2E_ETCD_PROJECT", "sfe2eetcd%d" % os.getpid())
NODES = ("node1", "node2", "node3")
PREFIX = "/snowflake/machines/"  # ETCD_PREFIX in docker-compose.etcd.yml
PER_NODE = 10_000  # IDs from each node in the concurrent fetch
BATCH = 500  # /ids?count=
HEALTHY_WITHIN_S = 240  # a deadline for the wait, not an assertion on speed
OPENSSL = shutil.which("openssl") or "openssl"
USER = "snowflake"  # ETCD_USERNAME in compose.etcd.tls.yml
ROOT_PW = "root-%s" % uuid.uuid4().hex[:12]
USER_PW = "sf-%s" % uuid.uuid4().hex[:12]
PKI_IN_ETCD = "/etc/etcd/pki/"  # where compose.etcd.tls.yml mounts etcd/
NOBODY = 65534  # etcd's and the nodes' uid and gid


def log(msg):
    print("e2e etcd: " + msg, flush=True)


def make_pki(d):
    """Fills d (see compose.etcd.tls.yml) with openssl: a CA; etcd's
    certificate for DNS:etcd and IP:127.0.0.1, good for clients too (etcd
    3.4's gateway presents it to etcd's own gRPC port); one client
    certificate without a CommonName (with auth on, etcd 3.4's gateway
    refuses a client certificate that has one); the password file. Issued
    now, for two days: the containers share the host's clock."""
    def ssl(*args):
        p = subprocess.run([OPENSSL] + list(args), cwd=d, capture_output=True,
                           text=True, timeout=60)
        check(p.returncode == 0, "openssl %s: %s" % (" ".join(args), p.stderr))

    def key(name):
        ssl("genpkey", "-algorithm", "EC", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-out", name + ".key")

    def issue(name, subj, ext):
        key(name)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext + "\n")
        ssl("req", "-new", "-key", name + ".key", "-out", name + ".csr",
            "-subj", subj)
        ssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey",
            "ca.key", "-CAcreateserial", "-out", name + ".pem", "-days", "2",
            "-extfile", name + ".ext")

    key("ca")
    ssl("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days",
        "2", "-subj", "/CN=snowflake e2e CA")
    issue("server", "/CN=etcd", "subjectAltName=DNS:etcd,IP:127.0.0.1\n"
          "extendedKeyUsage=serverAuth,clientAuth")
    issue("client", "/O=snowflaked", "extendedKeyUsage=clientAuth")
    with open(os.path.join(d, "password"), "w") as f:
        f.write(USER_PW + "\n")
    give = {"etcd": ["ca.pem", "server.pem", "server.key", "client.pem",
                     "client.key"],
            "node": ["ca.pem", "client.pem", "client.key", "password"]}
    for sub, names in give.items():
        os.mkdir(os.path.join(d, sub), 0o700)
        for n in names:
            shutil.copy(os.path.join(d, n), os.path.join(d, sub, n))
            os.chmod(os.path.join(d, sub, n),
                     0o600 if n.endswith(".key") or n == "password" else 0o644)
        for p in [sub] + [os.path.join(sub, n) for n in names]:
            try:
                os.chown(os.path.join(d, p), NOBODY, NOBODY)
            except PermissionError:  # not root: readable by all, then
                os.chmod(os.path.join(d, p), 0o755 if p == sub else 0o644)


class EtcdCluster(ComposeProject):
    """The compose project; with pki (a folder made by make_pki), over
    compose.etcd.tls.yml, and etcdctl speaks TLS as root."""

    def __init__(self, ports, files, pki=None):
        env = {"E2E_ETCD_PKI": pki} if pki else {}
        super().__init__(PROJECT, ports, files, **env)
        self.tls = pki is not None

    def state(self, service):
        doc = json.loads(run(["docker", "inspect", self.cid(service)]).stdout)
        return doc[0]["State"]

    def etcdctl_cmd(self, user="root"):
        """docker exec ... etcdctl in etcd's container, as user (None: no
        user; root: root's password; else "name:password")."""
        cmd = ["docker", "exec", "-e", "ETCDCTL_API=3"]
        if self.tls:
            cmd += ["-e", "ETCDCTL_ENDPOINTS=https://127.0.0.1:2379",
                    "-e", "ETCDCTL_CACERT=" + PKI_IN_ETCD + "ca.pem",
                    "-e", "ETCDCTL_CERT=" + PKI_IN_ETCD + "client.pem",
                    "-e", "ETCDCTL_KEY=" + PKI_IN_ETCD + "client.key"]
            if user:
                cmd += ["-e", "ETCDCTL_USER=" + (
                    "root:" + ROOT_PW if user == "root" else user)]
        else:
            cmd += ["-e", "ETCDCTL_ENDPOINTS=http://127.0.0.1:2379"]
        return cmd + [self.cid("etcd")]

    def etcdctl(self, *args, user="root", check_rc=True):
        p = run(self.etcdctl_cmd(user) + ["etcdctl"] + list(args),
                timeout=60, check_rc=check_rc)
        return p if not check_rc else p.stdout

    def secure(self):
        """Waits for etcd to answer, then the README's lines: root, a role
        with readwrite on PREFIX only, its user, auth on; one shell in etcd's
        container (before auth is on, no user is needed)."""
        deadline = time.time() + HEALTHY_WITHIN_S
        while self.etcdctl("endpoint", "health", user=None,
                           check_rc=False).returncode != 0:
            if time.time() > deadline:
                print(self.compose("logs", "--tail", "30", "etcd",
                                   check_rc=False).stdout)
                raise Failure("etcd did not answer over TLS within %d s"
                              % HEALTHY_WITHIN_S)
            time.sleep(0.5)
        script = "set -e; " + "; ".join("etcdctl " + " ".join(a) for a in (
            ["user", "add", "root:" + ROOT_PW],
            ["user", "grant-role", "root", "root"],
            ["role", "add", USER],
            ["role", "grant-permission", USER, "--prefix=true", "readwrite",
             PREFIX],
            ["user", "add", "%s:%s" % (USER, USER_PW)],
            ["user", "grant-role", USER, USER],
            ["auth", "enable"]))
        run(self.etcdctl_cmd(None) + ["sh", "-c", script], timeout=60)

    def check_auth(self):
        """Auth is on and the nodes' user reaches the prefix only."""
        as_user = "%s:%s" % (USER, USER_PW)
        self.etcdctl("get", "--prefix", PREFIX, user=as_user)
        p = self.etcdctl("put", "/elsewhere", "x", user=as_user,
                         check_rc=False)
        check(p.returncode != 0 and "permission denied" in p.stdout,
              "user %s wrote outside %s: exit %d, %r" %
              (USER, PREFIX, p.returncode, p.stdout))
        p = self.etcdctl("get", "--prefix", PREFIX, user=None, check_rc=False)
        check(p.returncode != 0, "a request without a user was served: %r"
              % p.stdout)

    def keys(self, marks=None):
        """{machine id: lease id} of the holder keys under PREFIX; the
        handover marks (PREFIX<id>/mark, on no lease) go to marks."""
        doc = json.loads(self.etcdctl("get", "--prefix", PREFIX, "-w", "json"))
        out = {}
        for kv in doc.get("kvs") or []:
            key = base64.b64decode(kv["key"]).decode()
            rest = key[len(PREFIX):]
            if key.startswith(PREFIX) and rest.endswith("/mark") and \
                    rest[:-5].isdigit():
                check(int(kv.get("lease", 0)) == 0,
                      "the mark %r is bound to a lease" % key)
                if marks is not None:
                    marks[int(rest[:-5])] = int(base64.b64decode(kv["value"]))
                continue
            check(key.startswith(PREFIX) and rest.isdigit(),
                  "unexpected key under the prefix: %r" % key)
            out[int(rest)] = int(kv.get("lease", 0))
        return out

    def keys_only(self):
        """The holder keys under PREFIX as `etcdctl get --prefix --keys-only`
        lists them (one a line, blank lines between), marks left out."""
        out = self.etcdctl("get", "--prefix", "--keys-only", PREFIX)
        return sorted(line for line in out.splitlines()
                      if line.strip() and not line.endswith("/mark"))

    def down(self):
        self.compose("down", "-v", "--remove-orphans", check_rc=False,
                     timeout=180)


def wait_healthy(cl, nodes, since, timeout=HEALTHY_WITHIN_S):
    """Waits until every node's container (started at or after `since`) is
    healthy. A node may exit and be restarted by its restart policy while
    etcd is starting, so exited/restarting are tolerated until the deadline."""
    deadline = time.time() + timeout
    pending = list(nodes)
    while pending and time.time() < deadline:
        for node in list(pending):
            st = cl.state(node)
            if (st.get("Health") or {}).get("Status") == "healthy" and \
                    parse_ts(st["StartedAt"]) >= since - 1.0:
                pending.remove(node)
        if pending:
            time.sleep(0.5)
    if pending:
        for n in pending + ["etcd"]:
            print(cl.compose("logs", "--tail", "30", n, check_rc=False).stdout)
        raise Failure("not healthy within %d s: %s" % (timeout, " ".join(pending)))


def metrics_machine_id(port):
    status, body = get(port, "/metrics")
    check(status == 200, "/metrics on port %d: status %d" % (port, status))
    vals = {}
    for line in body.decode().splitlines():
        if line.startswith("snowflake_") and " " in line:
            name, val = line.split()[:2]
            vals[name] = val
    check("snowflake_machine_id" in vals, "no snowflake_machine_id on port %d" % port)
    check(vals.get("snowflake_lease_held") == "1",
          "snowflake_lease_held is %r on port %d" % (vals.get("snowflake_lease_held"), port))
    return int(vals["snowflake_machine_id"])


def machine_ids(cl, nodes):
    """{node: machine id}, from /id and /metrics, which must agree."""
    out = {}
    for node in nodes:
        port = cl.ports[node]
        doc = get_json(port, "/id")
        mid = doc["machine_id"]
        check(isinstance(mid, int) and 0 <= mid <= 1023,
              "%s /id machine_id %r" % (node, mid))
        check(machine_of(doc["id"]) == mid, "%s /id: id %d has machine bits %d, "
              "machine_id says %d" % (node, doc["id"], machine_of(doc["id"]), mid))
        m = metrics_machine_id(port)
        check(m == mid, "%s: /metrics snowflake_machine_id %d, /id says %d" %
              (node, m, mid))
        out[node] = mid
    return out


def check_keys(cl, mids):
    """etcd's keys under PREFIX are exactly the held ids, each on a lease,
    no two on the same lease."""
    listed = cl.keys_only()
    want = sorted(PREFIX + str(m) for m in mids.values())
    check(listed == want, "etcdctl get --prefix --keys-only %s: %r, want %r" %
          (PREFIX, listed, want))
    leases = cl.keys()
    check(all(v != 0 for v in leases.values()), "a key without a lease: %r" % leases)
    check(len(set(leases.values())) == len(leases),
          "two keys on one lease: %r" % leases)
    return leases


def fetch(port, n, mid, out, errors, barrier=None):
    """Fetches n IDs through /ids?count=BATCH on one keep-alive connection;
    every response must name machine `mid` and every ID carry it."""
    import http.client
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        ids, left = [], n
        if barrier:
            barrier.wait()
        while left > 0:
            k = min(BATCH, left)
            doc = get_json(port, "/ids?count=%d" % k, conn)
            check(doc.get("machine_id") == mid, "port %d /ids machine_id %r, want %d"
                  % (port, doc.get("machine_id"), mid))
            check(len(doc["ids"]) == k, "/ids?count=%d gave %d" % (k, len(doc["ids"])))
            ids += doc["ids"]
            left -= k
        conn.close()
        bad = [x for x in ids if machine_of(x) != mid]
        check(not bad, "port %d: %d IDs without machine %d, e.g. %d" %
              (port, len(bad), mid, bad[0] if bad else 0))
        out.append(ids)
    except Exception as e:  # reported by the caller
        errors.append("port %d: %r" % (port, e))


def fetch_all(cl, mids, per_node):
    """per_node IDs from each node in mids, all at once, 2 connections each."""
    barrier = threading.Barrier(2 * len(mids))
    outs, errors, threads = {n: [] for n in mids}, [], []
    for node, mid in mids.items():
        for _ in range(2):
            threads.append(threading.Thread(target=fetch, args=(
                cl.ports[node], per_node // 2, mid, outs[node], errors, barrier)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "fetch errors: %s" % "; ".join(errors[:5]))
    return {n: [x for lst in outs[n] for x in lst] for n in mids}


def test_as_shipped(ports, files, times):
    """docker-compose.etcd.yml alone, plain http: a user's first `up`."""
    cl = EtcdCluster(ports, files)
    cl.down()
    try:
        t0 = time.time()
        cl.compose("up", "-d", "--build")
        times["up_build_s"] = time.time() - t0
        wait_healthy(cl, NODES, t0)
        mids = machine_ids(cl, NODES)
        check(len(set(mids.values())) == 3, "machine ids not distinct: %r" % mids)
        check_keys(cl, mids)
        log("as shipped (http): up --build %.0f s; all three nodes healthy "
            "%.0f s after up began, machine ids %s, etcd's keys name them" % (
                times["up_build_s"], time.time() - t0,
                " ".join("%s=%d" % (n, mids[n]) for n in NODES)))
    finally:
        t1 = time.time()
        cl.down()
        times["down_s"] = time.time() - t1
    times["shipped_s"] = time.time() - t0


def test(ports, files, times):
    pki = tempfile.mkdtemp(prefix="sf-e2e-pki-")
    cl = EtcdCluster(ports, files + [os.path.join(HERE, "compose.etcd.tls.yml")],
                     pki)
    cl.down()
    try:
        t0 = time.time()
        make_pki(pki)
        cl.compose("up", "-d", "etcd")
        cl.secure()
        cl.check_auth()
        times["secure_s"] = time.time() - t0
        log("TLS: certificates made (openssl), etcd up with https and "
            "--client-cert-auth, auth on: user %s reads %s, is denied "
            "outside it, no user is denied (%.0f s)" %
            (USER, PREFIX, times["secure_s"]))
        t0 = time.time()
        cl.compose("up", "-d")
        wait_healthy(cl, NODES, t0)
        log("TLS: all three nodes healthy %.0f s after up began" %
            (time.time() - t0))

        mids = machine_ids(cl, NODES)
        check(len(set(mids.values())) == 3, "machine ids not distinct: %r" % mids)
        leases = check_keys(cl, mids)
        log("machine ids %s (from /id and /metrics); etcd holds keys %s, "
            "each on its own lease" % (
                " ".join("%s=%d" % (n, mids[n]) for n in NODES),
                " ".join(PREFIX + str(m) for m in sorted(leases))))
        for node in NODES:
            logs = run(["docker", "logs", cl.cid(node)]).stdout
            metrics = get(cl.ports[node], "/metrics")[1].decode()
            check(USER_PW not in logs and USER_PW not in metrics,
                  "%s shows the etcd password in its log or /metrics" % node)
        log("the password is in no node's log and no /metrics")

        got = fetch_all(cl, mids, PER_NODE)
        seen = set()
        for node in NODES:
            check(len(got[node]) == PER_NODE, "%s gave %d IDs" % (node, len(got[node])))
            seen.update(got[node])
        total = PER_NODE * len(NODES)
        check(len(seen) == total, "%d duplicates among %d IDs" %
              (total - len(seen), total))
        log("%d IDs from 3 nodes concurrently (/ids?count=%d): 0 duplicates, "
            "each carries its node's machine id" % (total, BATCH))
        marks = {}
        cl.keys(marks)
        for node, m in mids.items():
            check(m in marks, "no handover mark for machine id %d" % m)
        newest = {}
        for id_ in seen:
            mid = machine_of(id_)
            newest[mid] = max(newest.get(mid, 0), id_)
        for mid, id_ in newest.items():
            ms = (id_ >> 22) + 1704067200000
            check(ms < marks[mid], "machine id %d: an ID at %d ms, at or past "
                  "its stored mark %d" % (mid, ms, marks[mid]))
        log("each id's handover mark is in etcd (on no lease) and above "
            "every ID issued under it")

        # SIGTERM: the node revokes its lease before it exits.
        cl.compose("stop", "node2", timeout=120)
        st = cl.state("node2")
        check(st["Status"] == "exited" and st["ExitCode"] == 0,
              "node2 after stop: %s, exit %s" % (st["Status"], st["ExitCode"]))
        left = cl.keys()
        others = {n: mids[n] for n in ("node1", "node3")}
        check(sorted(left) == sorted(others.values()),
              "keys right after node2 stopped: %r, want %r (node2 held %d)" %
              (sorted(left), sorted(others.values()), mids["node2"]))
        log("compose stop node2: exit 0; its key %s%d was gone as soon as stop "
            "returned (lease revoked); the other two keys stay" %
            (PREFIX, mids["node2"]))

        t1 = time.time()
        cl.compose("start", "node2", timeout=120)
        wait_healthy(cl, ["node2"], t1)
        now = machine_ids(cl, NODES)
        check({n: now[n] for n in others} == others,
              "node1/node3 changed ids: %r -> %r" % (others, now))
        check(now["node2"] not in others.values(),
              "node2 took id %d, held by another node: %r" % (now["node2"], now))
        check_keys(cl, now)
        after = fetch_all(cl, {"node2": now["node2"]}, PER_NODE)["node2"]
        check(len(after) == PER_NODE and len(set(after)) == PER_NODE,
              "node2 after start: %d IDs, %d distinct" % (len(after), len(set(after))))
        again = seen.intersection(after)
        check(not again, "node2 after start: %d IDs seen before, e.g. %d" %
              (len(again), next(iter(again)) if again else 0))
        log("compose start node2: healthy, machine id %d (%s), distinct from "
            "node1=%d node3=%d; %d IDs from it, none seen before" % (
                now["node2"], "the same" if now["node2"] == mids["node2"] else
                "was %d" % mids["node2"], now["node1"], now["node3"], PER_NODE))
    finally:
        t2 = time.time()
        cl.down()
        times["down_s"] = times.get("down_s", 0) + time.time() - t2
        shutil.rmtree(pki, ignore_errors=True)


def build_files():
    files = [os.path.join(ROOT, "docker-compose.etcd.yml")]
    if probe_build_network() == "host":
        files.append(os.path.join(HERE, "compose.etcd.build-host-network.yml"))
    return files


def main():
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    t0 = time.time()
    times = {}
    try:
        ports = free_ports()
        log("project %s, docker-compose.etcd.yml, host ports %s" % (PROJECT, ports))
        files = build_files()
        test_as_shipped(ports, files, times)
        test(ports, files, times)
    except (Failure, subprocess.TimeoutExpired, OSError, KeyError,
            ValueError) as e:
        log("phase took %.0f s" % (time.time() - t0))
        print("e2e etcd: FAIL: %s" % e, flush=True)
        return 1
    log("phase took %.0f s (as shipped %.0f s, of which up --build %.0f s; "
        "TLS set-up %.0f s; down -v %.0f s)" % (
            time.time() - t0, times.get("shipped_s", 0),
            times.get("up_build_s", 0), times.get("secure_s", 0),
            times.get("down_s", 0)))
    print("e2e etcd: PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
