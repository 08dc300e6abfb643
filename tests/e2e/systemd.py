#!/usr/bin/python3
"""The systemd unit under a real systemd (make test-systemd-live).

tests/ops/test_systemd.py plays systemd's side of the notify socket; here
systemd itself runs the unit, as PID 1 of a container of
tests/e2e/systemd.Dockerfile (Debian bookworm with systemd and etcd), into
which the tree of `make install DESTDIR=<argv[1]> PREFIX=/usr/local` is
copied: the unit lands in /usr/local/lib/systemd/system as make install
writes it, and /etc/snowflaked/snowflaked.env is made from the installed
example, as an operator would. Each step is a real systemctl (or curl,
journalctl, etcdctl) in the container:

 1. MACHINE_ID=1: `systemctl start` succeeds and /health answers at once;
    StatusText names port and machine id. With a state file whose mark is
    1.8 s ahead (the node waits that out before it listens), `systemctl
    start` returns only after about that long, and /health answers at once
    after it: start waits for READY=1, not for the exec. SIGKILL of the
    main process: systemd starts it again (Restart=on-failure). `systemctl
    stop`: inactive, result success, "stopped" in the journal.
 2. MACHINE_ID=x: `systemctl start` fails; the unit is failed with exit
    status 2, and is not started again (RestartPreventExitStatus=2), also
    after several RestartSec= have passed.
 3. MACHINE_ID=auto against https://127.0.0.1:2379 with the example's TLS
    and auth lines. First with the root-only key and password file named
    directly: the dynamic user cannot read them, so `systemctl start` fails
    with status 2 and the journal names ETCD_KEY. Then as the example
    advises, a drop-in with its LoadCredential= lines handing them to the
    dynamic user, while no etcd runs: `systemctl start` succeeds, /health is 503 and
    StatusText says it waits for etcd, naming the endpoint and the cause.
    `systemd-analyze security` rates the unit as loaded (drop-in included)
    at most 1.5. Then etcd starts (a transient unit: https only,
    --client-cert-auth), root and a user whose role has readwrite on the
    prefix only are added and auth is enabled: StatusText turns to the
    leased id, /id answers under it, etcd holds its key. `systemctl stop`
    revokes the lease (the key is gone at once), and the password is in no
    journal line.

Prints one line per step and `systemd live: PASS` or `systemd live: FAIL:
...`; says SKIPPED (exit 0) when no Docker engine answers. The container is
removed on any exit; the image (snowflake-id:systemd) is kept for the next
run, as the other e2e images are, and the one it replaces is removed.

Environment: E2E_BUILD_NETWORK (auto | host | default). Standard library
only.
"""

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import shutil
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from e2e import Failure, check, probe_build_network, run  # noqa: E402
import etcd as e2e_etcd  # noqa: E402  (make_pki, the users' passwords)

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
IMAGE = "snowflake-id:systemd"
NAME = "sfsystemd%d" % os.getpid()
UNIT = "snowflaked.service"
EXAMPLE = "usr/local/share/doc/snowflake-id/snowflaked.env.example"
ENV = "/etc/snowflaked/snowflaked.env"
EXPOSURE_MAX = 1.5
ENDPOINT = "https://127.0.0.1:2379"
ETCD_PKI = "/etc/sf-etcd/"  # etcd's certificates in the container
DEADLINE_S = 120  # for waits; not an assertion on speed
RUN_OPTS = [  # systemd as PID 1: the options that work with this engine
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined", "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
    "--tmpfs", "/run/lock"]


def log(msg):
    print("systemd live: " + msg, flush=True)


class Machine:
    """The container with systemd as PID 1."""

    def __init__(self):
        run(["docker", "run", "-d", "--name", NAME] + RUN_OPTS +
            [IMAGE, "/lib/systemd/systemd"])

    def sh(self, script, check_rc=True, timeout=120):
        """(exit status, stdout+stderr) of a bash script in the container."""
        p = run(["docker", "exec", NAME, "bash", "-c", script],
                check_rc=False, timeout=timeout)
        if check_rc and p.returncode != 0:
            raise Failure("in the container, exit %d: %s\n%s" %
                          (p.returncode, script, p.stdout[-3000:]))
        return p.returncode, p.stdout

    def put(self, path, data, mode=0o644):
        """Writes path (root-owned, mode) in the container."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(os.path.basename(path))
            data = data.encode() if isinstance(data, str) else data
            info.size, info.mode, info.mtime = len(data), mode, time.time()
            tar.addfile(info, io.BytesIO(data))
        self.sh("mkdir -p " + os.path.dirname(path))
        p = subprocess.run(["docker", "cp", "-", "%s:%s" % (
            NAME, os.path.dirname(path))], input=buf.getvalue(),
            capture_output=True, timeout=60)
        check(p.returncode == 0, "docker cp %s: %s" % (path, p.stderr))

    def show(self, unit=UNIT):
        props = ["ActiveState", "SubState", "Result", "ExecMainStatus",
                 "NRestarts", "StatusText", "MainPID"]
        out = self.sh("systemctl show %s %s" % (
            " ".join("-p " + p for p in props), unit))[1]
        return dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)

    def health(self):
        """(HTTP status, body) of /health on port 8000; status 0 when
        nothing listens."""
        rc, out = self.sh("curl -s -m 5 -w '\\n%{http_code}' "
                          "http://127.0.0.1:8000/health", check_rc=False)
        body, _, code = out.rpartition("\n")
        return (int(code) if rc == 0 else 0), body

    def wait(self, what, pred, timeout=DEADLINE_S):
        end = time.time() + timeout
        while time.time() < end:
            got = pred()
            if got:
                return got
            time.sleep(0.5)
        raise Failure("%s: not within %d s (%r)" % (what, timeout, self.show()))

    def journal(self, unit=UNIT):
        return self.sh("journalctl -u %s -o cat --no-pager" % unit)[1]

    def remove(self):
        run(["docker", "rm", "-f", NAME], check_rc=False, timeout=120)


def build_image():
    old = run(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE],
              check_rc=False).stdout.strip()
    net = ["--network", "host"] if probe_build_network() == "host" else []
    with open(os.path.join(HERE, "systemd.Dockerfile"), "rb") as f:
        p = subprocess.run(["docker", "build", "-q"] + net + ["-t", IMAGE, "-"],
                           stdin=f, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=1800)
    check(p.returncode == 0, "docker build %s:\n%s" % (
        IMAGE, p.stdout.decode(errors="replace")[-3000:]))
    new = run(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE]).stdout.strip()
    if old.startswith("sha256:") and old != new:
        run(["docker", "rmi", old], check_rc=False)


def install(m, root):
    m.wait("systemd to finish booting", lambda: m.sh(
        "systemctl is-system-running", check_rc=False)[1].strip()
        in ("running", "degraded"))
    # systemd invoked by the kernel makes / shared (mount propagation);
    # invoked by a container manager it leaves it as found, and Docker's
    # mounts are private. Then a unit's credentials, mounted in a helper's
    # namespace, never reach the unit (it finds an empty root-only
    # /run/credentials/<unit>, for any non-root user): do what systemd does
    # on a host.
    m.sh("mount --make-rshared /")
    run(["docker", "cp", root.rstrip("/") + "/.", NAME + ":/"])
    m.sh("ldconfig && systemctl daemon-reload && "
         "install -m 644 /%s %s" % (EXAMPLE, ENV))
    unit = m.sh("systemctl cat " + UNIT)[1]
    check("/usr/local/lib/systemd/system/" + UNIT in unit,
          "the unit is not the one make install wrote:\n" + unit)


def set_env(m, text, **settings):
    """ENV is the example's text with settings put in (uncommented)."""
    for k, v in settings.items():
        text, n = re.subn(r"^#?%s=.*$" % k, lambda _: "%s=%s" % (k, v), text,
                          count=1, flags=re.M)
        check(n == 1, "the example has no line %s=" % k)
    m.put(ENV, text)


def test_ordinal(m, example):
    set_env(m, example, MACHINE_ID="1")
    m.sh("systemctl start " + UNIT)
    code, body = m.health()
    st = m.show()
    check(code == 200 and st["ActiveState"] == "active",
          "right after systemctl start: /health %d %r, %r" % (code, body, st))
    check(st["StatusText"] == "serving on port 8000, machine id 1",
          "StatusText %r" % st["StatusText"])
    log("MACHINE_ID=1: systemctl start succeeded, /health 200 at once, "
        "StatusText %r" % st["StatusText"])

    # A mark 1.8 s ahead: the node waits it out, then listens, then READY=1.
    m.sh("systemctl stop " + UNIT)
    _, out = m.sh(
        "echo $(( $(date +%s%3N) + 1800 )) > /var/lib/snowflaked/state; "
        "t0=$(date +%s%3N); systemctl start " + UNIT + "; t1=$(date +%s%3N); "
        "code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "
        "http://127.0.0.1:8000/health); echo $((t1 - t0)) $code")
    took, code = out.split()[-2:]
    check(int(took) >= 1000 and code == "200",
          "with a mark 1.8 s ahead: systemctl start took %s ms, /health %s "
          "right after (want >= 1000 ms, then 200)" % (took, code))
    log("a state file mark 1.8 s ahead: systemctl start returned after %s ms, "
        "when the node listened (/health %s at once): start waits for "
        "READY=1" % (took, code))

    pid = m.show()["MainPID"]
    m.sh("systemctl kill -s KILL " + UNIT)
    st = m.wait("systemd to start the node again after SIGKILL", lambda: (
        lambda s: s if s["NRestarts"] == "1" and s["ActiveState"] == "active"
        and s["MainPID"] not in ("0", pid) else None)(m.show()))
    check(m.health()[0] == 200, "after the restart: /health %r" % (m.health(),))
    log("SIGKILL: systemd started it again (NRestarts=1, Restart=on-failure)")

    m.sh("systemctl stop " + UNIT)
    st = m.show()
    check(st["ActiveState"] == "inactive" and st["Result"] == "success",
          "after systemctl stop: %r" % st)
    check("snowflaked: stopped" in m.journal(), "no 'stopped' in the journal")
    log("systemctl stop: inactive, result success, 'snowflaked: stopped' "
        "in the journal")


def test_bad_setting(m, example):
    set_env(m, example, MACHINE_ID="x")
    m.sh("systemctl reset-failed %s; true" % UNIT)
    rc, out = m.sh("systemctl start " + UNIT, check_rc=False)
    check(rc != 0, "systemctl start with MACHINE_ID=x succeeded")
    st = m.show()
    check(st["ActiveState"] == "failed" and st["ExecMainStatus"] == "2",
          "after a failed start: %r" % st)
    time.sleep(3.5)  # RestartSec=1s, three times over
    st = m.show()
    check(st["ActiveState"] == "failed" and st["NRestarts"] == "0",
          "3.5 s after the failed start: %r" % st)
    check('MACHINE_ID must be an integer' in m.journal(),
          "the journal does not name MACHINE_ID")
    log("MACHINE_ID=x: systemctl start failed (exit %d), the unit is failed "
        "with status 2 and was not restarted 3.5 s later (NRestarts=0)" % rc)
    m.sh("systemctl reset-failed " + UNIT)


def etcdctl(user="root"):
    env = ("ETCDCTL_API=3 ETCDCTL_ENDPOINTS=%s ETCDCTL_CACERT=%sca.pem "
           "ETCDCTL_CERT=%sclient.pem ETCDCTL_KEY=%sclient.key" %
           (ENDPOINT, ETCD_PKI, ETCD_PKI, ETCD_PKI))
    if user:
        env += " ETCDCTL_USER=root:" + e2e_etcd.ROOT_PW
    return env + " etcdctl "


def test_auto_waits_for_etcd(m, example, pki):
    for name, dest, mode in (
            ("node/ca.pem", "/etc/snowflaked/etcd-ca.pem", 0o644),
            ("node/client.pem", "/etc/snowflaked/etcd.pem", 0o644),
            ("node/client.key", "/etc/snowflaked/etcd.key", 0o600),
            ("node/password", "/etc/snowflaked/etcd-password", 0o600),
            ("etcd/ca.pem", ETCD_PKI + "ca.pem", 0o644),
            ("etcd/server.pem", ETCD_PKI + "server.pem", 0o644),
            ("etcd/server.key", ETCD_PKI + "server.key", 0o600),
            ("etcd/client.pem", ETCD_PKI + "client.pem", 0o644),
            ("etcd/client.key", ETCD_PKI + "client.key", 0o600)):
        with open(os.path.join(pki, name), "rb") as f:
            m.put(dest, f.read(), mode)
    env = {k: v for k, v in re.findall(r"^#(ETCD_\w+)=(.*)$", example, re.M)
           if k in ("ETCD_CACERT", "ETCD_CERT", "ETCD_KEY", "ETCD_USERNAME",
                    "ETCD_PASSWORD_FILE")}
    check(len(env) == 5, "the example's TLS and auth lines: %r" % env)
    check(env["ETCD_USERNAME"] == e2e_etcd.USER, "ETCD_USERNAME %r" % env)

    # Without the advice: the root-only key named directly. The dynamic
    # user cannot read it; the start fails naming it, and is not retried.
    set_env(m, example, MACHINE_ID="auto", ETCD_ENDPOINTS=ENDPOINT,
            **dict(env, ETCD_KEY="/etc/snowflaked/etcd.key",
                   ETCD_PASSWORD_FILE="/etc/snowflaked/etcd-password"))
    rc, _ = m.sh("systemctl start " + UNIT, check_rc=False)
    st = m.show()
    want = 'ETCD_KEY: cannot read "/etc/snowflaked/etcd.key": Permission denied'
    check(rc != 0 and st["ExecMainStatus"] == "2" and want in m.journal(),
          "a root-only ETCD_KEY: start exit %d, %r, journal without %r" %
          (rc, st, want))
    log("the root-only key named directly: systemctl start failed, exit "
        "status 2, the journal says %r" % want)
    m.sh("systemctl reset-failed " + UNIT)

    # The example's advice, as it says: a drop-in with its LoadCredential=.
    creds = re.findall(r"^#\s+(\[Service\]|LoadCredential=.*)$", example, re.M)
    check(creds and creds[0] == "[Service]" and len(creds) == 3,
          "the example's LoadCredential= advice: %r" % creds)
    m.put("/etc/systemd/system/%s.d/credentials.conf" % UNIT,
          "\n".join(creds) + "\n")
    set_env(m, example, MACHINE_ID="auto", ETCD_ENDPOINTS=ENDPOINT, **env)
    m.sh("systemctl daemon-reload")

    _, out = m.sh("t0=$(date +%s%3N); systemctl start " + UNIT +
                  "; echo $(( $(date +%s%3N) - t0 ))")
    code, body = m.health()
    st = m.show()
    check(st["ActiveState"] == "active" and code == 503,
          "MACHINE_ID=auto, no etcd: %r, /health %d %r" % (st, code, body))
    why = st["StatusText"]
    check(why.startswith("listening on port 8000, issuing no IDs: waiting "
                         "for etcd: ") and ENDPOINT in why and "refused" in why,
          "StatusText without etcd: %r" % why)
    log("MACHINE_ID=auto over TLS with auth, no etcd yet: systemctl start "
        "succeeded (%s ms), /health 503, StatusText %r" %
        (out.split()[-1], why))

    out = m.sh("systemd-analyze security " + UNIT, check_rc=False)[1]
    lvl = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    check(lvl and float(lvl.group(1)) <= EXPOSURE_MAX,
          "systemd-analyze security: %s" % out[-500:])
    log("systemd-analyze security %s (as loaded, with the credentials "
        "drop-in): exposure %s (at most %.1f)" % (UNIT, lvl.group(1),
                                                  EXPOSURE_MAX))

    m.sh("systemd-run --unit=sf-etcd --property=StateDirectory=sf-etcd "
         "/usr/bin/etcd --name sf --data-dir /var/lib/sf-etcd/data "
         "--listen-client-urls %s --advertise-client-urls %s "
         "--listen-peer-urls http://127.0.0.1:2380 "
         "--initial-advertise-peer-urls http://127.0.0.1:2380 "
         "--initial-cluster sf=http://127.0.0.1:2380 --client-cert-auth "
         "--trusted-ca-file %sca.pem --cert-file %sserver.pem "
         "--key-file %sserver.key" % ((ENDPOINT, ENDPOINT) + (ETCD_PKI,) * 3))
    m.wait("etcd to answer", lambda: m.sh(
        etcdctl(None) + "endpoint health", check_rc=False)[0] == 0)
    user, pw, prefix = e2e_etcd.USER, e2e_etcd.USER_PW, e2e_etcd.PREFIX
    m.sh("set -e; " + "; ".join(etcdctl(None) + c for c in (
        "user add root:" + e2e_etcd.ROOT_PW, "user grant-role root root",
        "role add " + user,
        "role grant-permission %s --prefix=true readwrite %s" % (user, prefix),
        "user add %s:%s" % (user, pw), "user grant-role %s %s" % (user, user),
        "auth enable")))
    t0 = time.time()
    st = m.wait("StatusText to show a leased id", lambda: (
        lambda s: s if re.fullmatch(r"serving on port 8000, machine id \d+ "
                                    r"\(etcd lease\)", s["StatusText"])
        else None)(m.show()))
    mid = int(re.search(r"machine id (\d+)", st["StatusText"]).group(1))
    _, out = m.sh("curl -s -m 5 http://127.0.0.1:8000/id")
    check(json.loads(out).get("machine_id") == mid, "/id: %s" % out)
    keys = m.sh(etcdctl() + "get --prefix --keys-only " + prefix)[1].split()
    check(prefix + str(mid) in keys, "etcd's keys: %r" % keys)
    log("etcd started (https, --client-cert-auth, auth on, user %s with "
        "readwrite on %s only): %.0f s later StatusText %r, /id under "
        "machine id %d, etcd holds %s%d" % (user, prefix, time.time() - t0,
                                           st["StatusText"], mid, prefix, mid))

    m.sh("systemctl stop " + UNIT)
    st = m.show()
    keys = m.sh(etcdctl() + "get --prefix --keys-only " + prefix)[1].split()
    check(st["ActiveState"] == "inactive" and st["Result"] == "success",
          "after systemctl stop: %r" % st)
    check(prefix + str(mid) not in keys, "key left after stop: %r" % keys)
    check(pw not in m.journal() and e2e_etcd.ROOT_PW not in m.journal(),
          "a password is in the journal")
    log("systemctl stop: inactive, result success, the key %s%d gone at "
        "once (lease revoked); no password in the journal" % (prefix, mid))
    m.sh("systemctl stop sf-etcd")


def main():
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    if len(sys.argv) != 2 or not os.path.isfile(
            os.path.join(sys.argv[1], EXAMPLE)):
        print("usage: systemd.py DESTDIR (a `make install DESTDIR=... "
              "PREFIX=/usr/local` tree; make test-systemd-live makes one)",
              file=sys.stderr)
        return 2
    root = os.path.abspath(sys.argv[1])
    if not shutil.which("docker") or run(
            ["docker", "info"], check_rc=False, timeout=30).returncode != 0:
        log("SKIPPED: no Docker engine answers (docker info failed); "
            "nothing was tested")
        return 0
    t0 = time.time()
    m, pki = None, tempfile.mkdtemp(prefix="sf-systemd-pki-")
    try:
        run(["sh", os.path.join(HERE, "base-image.sh"), "debian:bookworm-slim"])
        build_image()
        t1 = time.time()
        log("image %s ready (%.0f s)" % (IMAGE, t1 - t0))
        m = Machine()
        install(m, root)
        log("container %s: systemd as PID 1 running, make install's tree "
            "copied in, %s from the example (%.0f s)" % (NAME, ENV,
                                                         time.time() - t1))
        with open(os.path.join(root, EXAMPLE)) as f:
            example = f.read()
        test_ordinal(m, example)
        test_bad_setting(m, example)
        e2e_etcd.make_pki(pki)
        test_auto_waits_for_etcd(m, example, pki)
    except (Failure, subprocess.TimeoutExpired, OSError, KeyError,
            ValueError) as e:
        if m:
            print(m.sh("journalctl -u %s -u sf-etcd -o cat --no-pager | "
                       "tail -40" % UNIT, check_rc=False)[1])
        log("took %.0f s" % (time.time() - t0))
        log("FAIL: %s" % e)
        return 1
    finally:
        if m:
            m.remove()
        shutil.rmtree(pki, ignore_errors=True)
    log("took %.0f s (image %.0f s)" % (time.time() - t0, t1 - t0))
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
