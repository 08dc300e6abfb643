#!/usr/bin/python3
"""End-to-end test of docker-compose.etcd.yml: one etcd, three snowflaked
nodes that lease their machine ids from it (MACHINE_ID=auto).

Run by tests/e2e/run.sh after the Dockerfile phases (which took their own
project down). Steps: compose up -d --build; all three nodes healthy; three
distinct machine ids on /id and /metrics, and etcd's keys under the prefix
name exactly those ids, each bound to a lease; 3 x 10,000 IDs fetched
concurrently through /ids, no duplicate, every ID carrying its node's machine
id; `compose stop node2` (SIGTERM) exits 0 and its key is gone as soon as stop
returns (the lease was revoked, not left to expire); `compose start node2`
makes it healthy again with an id distinct from the other two, which kept
theirs, and 10,000 IDs from it are new; then down -v. No step asserts on
timing: the waits only have generous deadlines. Prints one line per step,
a timing line, and `e2e etcd: PASS` or `e2e etcd: FAIL: ...`.

Environment: COMPOSE ("docker compose" or "docker-compose"),
E2E_ETCD_PROJECT (compose project name), E2E_BUILD_NETWORK (auto | host |
default), NODE1_PORT..NODE3_PORT. Standard library only.
"""

import base64
import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

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


def log(msg):
    print("e2e etcd: " + msg, flush=True)


class EtcdCluster(ComposeProject):
    def __init__(self, ports, files):
        super().__init__(PROJECT, ports, files)

    def state(self, service):
        doc = json.loads(run(["docker", "inspect", self.cid(service)]).stdout)
        return doc[0]["State"]

    def etcdctl(self, *args):
        p = run(["docker", "exec", "-e", "ETCDCTL_API=3", self.cid("etcd"),
                 "etcdctl", "--endpoints", "http://127.0.0.1:2379"] + list(args),
                timeout=60)
        return p.stdout

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


def test(ports, files, times):
    cl = EtcdCluster(ports, files)
    cl.down()
    try:
        t0 = time.time()
        cl.compose("up", "-d", "--build")
        times["up_build_s"] = time.time() - t0
        wait_healthy(cl, NODES, t0)
        times["healthy_s"] = time.time() - t0
        log("up --build: %.0f s; all three nodes healthy %.0f s after up began"
            % (times["up_build_s"], times["healthy_s"]))

        mids = machine_ids(cl, NODES)
        check(len(set(mids.values())) == 3, "machine ids not distinct: %r" % mids)
        leases = check_keys(cl, mids)
        log("machine ids %s (from /id and /metrics); etcd holds keys %s, "
            "each on its own lease" % (
                " ".join("%s=%d" % (n, mids[n]) for n in NODES),
                " ".join(PREFIX + str(m) for m in sorted(leases))))

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
        times["down_s"] = time.time() - t2


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
        test(ports, build_files(), times)
    except (Failure, subprocess.TimeoutExpired, OSError, KeyError,
            ValueError) as e:
        log("phase took %.0f s" % (time.time() - t0))
        print("e2e etcd: FAIL: %s" % e, flush=True)
        return 1
    log("phase took %.0f s (up --build %.0f s, down -v %.0f s)" % (
        time.time() - t0, times.get("up_build_s", 0), times.get("down_s", 0)))
    print("e2e etcd: PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
