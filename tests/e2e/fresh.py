#!/usr/bin/python3
"""The fresh-machine phase: the README's two commands on a bare machine.

Run by tests/e2e/run.sh (which makes sure the base image exists). A clean
clone of the commit under test (git; committed files only) is copied into a
container of the bare base image (debian:bookworm-slim, debootstrap minbase
when no registry answers) on the host network (for the apt mirror), where
only make is installed (apt-get update && apt-get install make). Then, as a
new user would, each step a real command in the container:

 1. make clean, make -n all, make, make lint: none installs anything (the
    dpkg package list is the same afterwards); all but clean stop with the
    exact apt-get line naming what is missing.
 2. make test as a user other than root: stops with the exact
    `sudo apt-get install ...` line, installs nothing.
 3. make test as root: installs its packages and passes, the first time.
 4. make run in the background (PORT: a free port, as the network is the
    host's): GET /health -> ok; GET /id -> machine_id 1, the id's machine bits
    1; a second /id is larger.

Prints one line per step with its time and `e2e fresh: PASS` or
`e2e fresh: FAIL: ...`. No step asserts on timing (the waits have generous
deadlines only).

Environment: E2E_FRESH_IMAGE (default debian:bookworm-slim), E2E_FRESH_NAME
(the container's name; run.sh removes it on any exit). Standard library only.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import Failure, check, get, machine_of  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE = os.environ.get("E2E_FRESH_IMAGE", "debian:bookworm-slim")
SRC = "/srv/snowflake-id"  # readable by the non-root user of step 2
NOBODY = "65534"  # nobody:nogroup, present in every Debian base
APT_LINE = "apt-get install -y --no-install-recommends"
SERVE_WITHIN_S = 300  # a deadline for the wait, not an assertion on speed


def log(msg):
    print("e2e fresh: " + msg, flush=True)


def sh(cmd, cwd=None, timeout=300):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if p.returncode != 0:
        raise Failure("%s exited %d:\n%s" % (" ".join(cmd), p.returncode,
                                              tail(p.stdout)))
    return p.stdout


def tail(out, n=40):
    return "\n".join(out.splitlines()[-n:])


class Machine:
    """A bare container on the host network, kept alive by sleep."""

    def __init__(self):
        self.name = os.environ.get("E2E_FRESH_NAME", "sffresh%d" % os.getpid())
        sh(["docker", "run", "-d", "--rm", "--name", self.name, "--network",
            "host", IMAGE, "sleep", "infinity"])

    def exec(self, script, user=None, timeout=600):
        """Runs script with sh in SRC; returns (exit status, output)."""
        cmd = ["docker", "exec", "-w", SRC]
        if user:
            cmd += ["-u", user]
        p = subprocess.run(cmd + [self.name, "sh", "-c", script],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        return p.returncode, p.stdout

    def must(self, script, timeout=600):
        rc, out = self.exec(script, timeout=timeout)
        if rc != 0:
            raise Failure("`%s` exited %d:\n%s" % (script, rc, tail(out)))
        return out

    def packages(self):
        return set(self.must("dpkg-query -W -f='${Package}\\n'").split())

    def remove(self):
        subprocess.run(["docker", "rm", "-f", self.name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def clone(dest):
    """A clean clone of the commit under test; returns its id."""
    head = sh(["git", "rev-parse", "HEAD"], cwd=ROOT).strip()
    if sh(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT):
        log("note: uncommitted changes are not part of this test (%s only)"
            % head[:12])
    sh(["git", "clone", "-q", "--no-checkout", ROOT, dest])
    sh(["git", "fetch", "-q", ROOT, "HEAD"], cwd=dest)
    sh(["git", "checkout", "-q", "--detach", head], cwd=dest)
    return head


def summary(out):
    """make test's results: the cmocka totals, then each pytest summary
    line (skips show there)."""
    unit = [int(n) for n in re.findall(r"^\[  PASSED  \] (\d+) test", out, re.M)]
    pytest = re.findall(r"^(\d+ (?:passed|failed|skipped|error).*) in ", out, re.M)
    return "cmocka: %d passed in %d programs; pytest: %s" % (
        sum(unit), len(unit), "; ".join(pytest))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Goals that must stop on the bare machine, installing nothing, and what
# they must say: the exact command and what it installs.
STOPS = (
    ("make -n all", None, [APT_LINE, "gcc", "libuv1-dev"]),
    ("make", None, [APT_LINE, "gcc", "libuv1-dev"]),
    ("make lint", None, [APT_LINE, "clang-format", "cppcheck"]),
    ("make test", NOBODY, ["sudo " + APT_LINE, "libcmocka-dev", "gcc"]),
)


def no_install_steps(m):
    before = m.packages()
    rc, out = m.exec("make clean")
    check(rc == 0, "make clean exited %d:\n%s" % (rc, tail(out)))
    for goal, user, want in STOPS:
        rc, out = m.exec(goal, user=user)
        who = " (not root)" if user else ""
        check(rc != 0, "`%s`%s exited 0 on a bare machine:\n%s"
              % (goal, who, tail(out)))
        for w in want:
            check(w in out, "`%s`%s does not say %r:\n%s"
                  % (goal, who, w, tail(out)))
        line = [x for x in out.splitlines() if APT_LINE in x][0]
        log("`%s`%s stops: %s" % (goal, who, line.strip()))
    after = m.packages()
    check(after == before, "packages installed by make clean or %s: %s"
          % (", ".join(g for g, _, _ in STOPS), sorted(after - before)))


def serves(port, deadline):
    while time.monotonic() < deadline:
        try:
            status, body = get(port, "/health", timeout=2.0)
            return status, body
        except OSError:
            time.sleep(0.5)
    raise Failure("nothing answered on port %d within %d s" %
                  (port, SERVE_WITHIN_S))


def run_step(m):
    port = free_port()
    sh(["docker", "exec", "-d", "-w", SRC, "-e", "PORT=%d" % port, m.name,
        "sh", "-c", "make run >/tmp/run.log 2>&1"])
    try:
        status, body = serves(port, time.monotonic() + SERVE_WITHIN_S)
    except Failure:
        _, out = m.exec("cat /tmp/run.log")
        raise Failure("make run: nothing answered on port %d; its output:\n%s"
                      % (port, tail(out)))
    check(status == 200 and body == b"ok",
          "GET /health: %d %r, not 200 ok" % (status, body))
    ids = []
    for _ in range(2):
        status, body = get(port, "/id")
        check(status == 200, "GET /id: status %d %r" % (status, body[:200]))
        doc = json.loads(body)
        check(doc.get("machine_id") == 1, "GET /id: machine_id %r, not 1 (%r)"
              % (doc.get("machine_id"), doc))
        check(machine_of(doc["id"]) == 1 and doc.get("id_str") == str(doc["id"]),
              "GET /id: id %r carries machine %d" % (doc, machine_of(doc["id"])))
        ids.append(doc["id"])
    check(ids[1] > ids[0], "GET /id twice: %d then %d" % tuple(ids))
    log("make run: /health ok, /id %d (machine 1) on port %d" % (ids[0], port))


def main():
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    times = []
    tmp = tempfile.mkdtemp(prefix="sffresh.")
    m = None
    t0 = start = time.monotonic()

    def lap(what):
        nonlocal t0
        now = time.monotonic()
        times.append("%s %.0f s" % (what, now - t0))
        log("%s: done in %.0f s" % (what, now - t0))
        t0 = now

    try:
        head = clone(os.path.join(tmp, "src"))
        m = Machine()
        sh(["docker", "cp", os.path.join(tmp, "src") + "/.", m.name + ":" + SRC])
        log("clone of %s in container %s (%s, host network)"
            % (head[:12], m.name, IMAGE))
        m.must("export DEBIAN_FRONTEND=noninteractive; apt-get update -qq &&"
               " apt-get install -y -qq make >/dev/null")
        lap("apt-get update && apt-get install make")
        no_install_steps(m)
        lap("make clean, -n all, make, lint, test (not root): nothing installed")
        rc, out = m.exec("make test", timeout=3600)
        check(rc == 0, "the first make test exited %d:\n%s" % (rc, tail(out, 60)))
        log("make test: " + summary(out))
        lap("make test (installs, builds, tests)")
        run_step(m)
        lap("make run")
        log("timing: %s; total %.0f s" % ("; ".join(times),
                                          time.monotonic() - start))
        log("PASS")
        return 0
    except (Failure, subprocess.TimeoutExpired) as e:
        log("FAIL: %s" % e)
        return 1
    finally:
        if m:
            m.remove()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
