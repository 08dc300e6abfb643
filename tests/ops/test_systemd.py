"""deploy/systemd: the unit as `make install` writes it passes `systemd-analyze
verify` (with its Documentation= man page found), rates an exposure level of
1.5 or lower by `systemd-analyze security --offline=true`, and the example
environment file names every setting and only real ones. The unit is
Type=notify: snowflaked speaks sd_notify's protocol (READY=1 once it
listens, STATUS=, STOPPING=1 at SIGTERM, nothing when a bad setting stops
it), checked here on a socket of the test's own as systemd would make it."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from opslib import DEPLOY, SNOWFLAKED, help_settings, load, run, tool

THRESHOLD = 1.5  # issue 18: exposure level 1.5 or lower (issue 14: 2.5)
UNIT = os.path.join(DEPLOY, "systemd", "snowflaked.service")
ENV = os.path.join(DEPLOY, "systemd", "snowflaked.env")


def unit_path(prefix):
    return os.path.join(prefix, "lib", "systemd", "system", "snowflaked.service")


def exposure(analyze, unit):
    """(exit status, overall exposure level) of `security --offline=true`."""
    p = run([analyze, "security", "--offline=true",
             "--threshold=%d" % round(THRESHOLD * 10), unit], check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
    assert m, p.stdout + p.stderr
    return p.returncode, float(m.group(1))


def test_install_writes_unit_man_pages_and_env_example(installed):
    unit = open(unit_path(installed)).read()
    assert re.search(r"^ExecStart=%s/bin/snowflaked$" % re.escape(installed), unit, re.M)
    for f in ["share/man/man1/snowflake.1", "share/man/man8/snowflaked.8",
              "share/doc/snowflake-id/snowflaked.env.example", "bin/snowflaked"]:
        assert os.path.isfile(os.path.join(installed, f)), f


def test_systemd_analyze_verify(installed):
    analyze = tool("systemd-analyze", "systemd")
    tool("man", "man-db")
    env = dict(os.environ, MANPATH=os.path.join(installed, "share", "man"))
    p = run([analyze, "verify", "--man=yes", unit_path(installed)], env=env, check=False)
    assert p.returncode == 0 and p.stderr.strip() == "" and p.stdout.strip() == "", \
        (p.returncode, p.stdout, p.stderr)


def test_systemd_analyze_verify_fails_on_a_broken_unit(installed, tmp_path):
    """The check above can fail: a unit whose ExecStart= does not exist."""
    analyze = tool("systemd-analyze", "systemd")
    bad = tmp_path / "snowflaked.service"
    bad.write_text(open(unit_path(installed)).read().replace(
        "ExecStart=" + installed, "ExecStart=/nonexistent"))
    p = run([analyze, "verify", "--man=no", str(bad)], check=False)
    assert p.returncode != 0 and "/nonexistent/bin/snowflaked" in p.stderr, p.stderr


def test_security_exposure_at_most_threshold(installed):
    analyze = tool("systemd-analyze", "systemd")
    rc, level = exposure(analyze, unit_path(installed))
    assert level <= THRESHOLD and rc == 0, (level, rc)


def test_security_threshold_rejects_an_unhardened_unit(tmp_path):
    """The same check on the unit without its hardening lines fails, so the
    threshold is really enforced."""
    analyze = tool("systemd-analyze", "systemd")
    keep = ("[", "#", "Description", "Documentation", "Wants", "After", "Type",
            "EnvironmentFile", "Environment=", "ExecStart", "Restart",
            "KillSignal", "TimeoutStopSec", "WantedBy")
    lines = [ln for ln in open(UNIT).read().splitlines()
             if not ln or ln.startswith(keep)]
    bare = tmp_path / "snowflaked.service"
    bare.write_text("\n".join(lines) + "\n")
    rc, level = exposure(analyze, str(bare))
    assert level > THRESHOLD and rc != 0, (level, rc)


def env_names():
    return re.findall(r"^#?([A-Z][A-Z0-9_]*)=", open(ENV).read(), re.M)


def test_env_example_names_every_setting_once():
    help_text = run([SNOWFLAKED, "--help"]).stdout
    settings = {env for env, _ in help_settings(help_text)}
    names = env_names()
    assert len(names) == len(set(names)), names
    # STATE_FILE is the unit's own (Environment=, under StateDirectory=).
    assert set(names) | {"STATE_FILE"} == settings
    assert re.search(r"^Environment=STATE_FILE=%S/snowflaked/state$",
                     open(UNIT).read(), re.M)


def test_env_example_starts_a_node(snowflaked, tmp_path):
    """The example's active lines are settings snowflaked accepts."""
    env = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", open(ENV).read(), re.M))
    assert "MACHINE_ID" in env
    env.update(PORT="0", BIND="127.0.0.1", STATE_FILE=str(tmp_path / "state"))
    node = snowflaked(**env)
    assert node.get("/health")[0] == 200


# ------------------------------------------------------------ sd_notify


class NotifySocket:
    """The datagram socket systemd makes for a Type=notify unit: a path, or
    a name in the abstract namespace (NOTIFY_SOCKET=@name)."""

    def __init__(self, tmp_path, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "sf-notify-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.addr = "@" + name
        else:
            self.addr = str(tmp_path / "notify")
            self.sock.bind(self.addr)

    def messages(self, until, timeout=20.0):
        """Datagrams as dicts, until one has the key until."""
        out, end = [], time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            out.append(dict(ln.split("=", 1) for ln in data.splitlines()))
            if until in out[-1]:
                return out
        raise AssertionError("no %s= within %s s: %r" % (until, timeout, out))


def start_notified(ns, env, tmp_path):
    e = {k: v for k, v in os.environ.items() if k not in ("MACHINE_ID", "PORT")}
    e.update(PORT="0", BIND="127.0.0.1", THREADS="1", NOTIFY_SOCKET=ns.addr)
    e.update(env)
    log = open(tmp_path / "node.log", "w")
    return subprocess.Popen([SNOWFLAKED], env=e, stdout=log, stderr=log)


def test_unit_is_type_notify():
    unit = open(UNIT).read()
    assert re.search(r"^Type=notify$", unit, re.M)
    assert re.search(r"^NotifyAccess=main$", unit, re.M)


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_status_and_stopping(tmp_path, abstract):
    ns = NotifySocket(tmp_path, abstract)
    p = start_notified(ns, {"MACHINE_ID": "7"}, tmp_path)
    try:
        ready = ns.messages("READY")[-1]
        assert ready["READY"] == "1"
        m = re.match(r"serving on port (\d+), machine id 7$", ready["STATUS"])
        assert m, ready
        # READY=1 comes once the node listens: /health answers at once.
        with socket.create_connection(("127.0.0.1", int(m.group(1))), 5) as c:
            c.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            assert c.recv(64).startswith(b"HTTP/1.1 200")
        p.send_signal(signal.SIGTERM)
        assert ns.messages("STOPPING")[-1]["STOPPING"] == "1"
        assert p.wait(timeout=20) == 0
    finally:
        p.kill()
        p.wait()


def test_bad_setting_sends_nothing_and_exits_2(tmp_path):
    """systemd fails `systemctl start` when the main process exits before
    READY=1."""
    ns = NotifySocket(tmp_path)
    p = start_notified(ns, {"MACHINE_ID": "1024"}, tmp_path)
    assert p.wait(timeout=20) == 2
    ns.sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        ns.sock.recv(4096)


def test_status_follows_the_etcd_lease(tmp_path):
    """Under MACHINE_ID=auto, STATUS= says when the node has no machine id
    (etcd gone past the TTL), and when it has one again."""
    etcd_tests = load("sf_test_etcd_notify", "integration/test_etcd.py")
    if not (os.path.exists(etcd_tests.ETCD) and os.path.exists(etcd_tests.ETCDCTL)):
        pytest.skip("etcd-server / etcd-client not installed (sh scripts/deps.sh test)")
    etcd = etcd_tests.Etcd(str(tmp_path))
    etcd.start()
    ns = NotifySocket(tmp_path)
    p = start_notified(ns, {"MACHINE_ID": "auto", "ETCD_ENDPOINTS": etcd.url,
                            "ETCD_PREFIX": "/notify-test/",
                            "ETCD_LEASE_TTL": "2"}, tmp_path)
    try:
        ready = ns.messages("READY")[-1]
        assert re.match(r"serving on port \d+, machine id 0 \(etcd lease\)$",
                        ready["STATUS"]), ready
        etcd.signal(signal.SIGSTOP)
        lost = ns.messages("STATUS")[-1]["STATUS"]
        # The cause: the lease ran out with a keepalive pending, or the
        # endpoint and what failed.
        assert re.search(r"issuing no IDs: waiting for etcd: (the lease ran "
                         r"out: etcd answered no keepalive in time|http://)",
                         lost), lost
        etcd.signal(signal.SIGCONT)
        back = ns.messages("STATUS", timeout=30)[-1]["STATUS"]
        assert re.search(r"machine id \d+ \(etcd lease\)$", back), back
    finally:
        p.kill()
        p.wait()
        etcd.kill()
