"""MACHINE_ID=auto against an etcd run as production etcds are: TLS only
(certificates made here with the openssl command), client certificates
required (--client-cert-auth), and auth enabled, the nodes' user holding a
role with readwrite on the key prefix and nothing else.

Claims, keepalives, marks and handovers: tests of test_etcd.py and
test_etcd_handover.py run again here, unchanged, against this module's
`etcd` and `fleet` fixtures (etcdctl in them finds the certificates and the
root user in ETCDCTL_* variables). Then each failure an operator meets gets
its message, naming the endpoint and the cause, and never a secret: a wrong
CA, a certificate that does not name the host, expired certificates (etcd's
and ours), a key that is not the certificate's, a wrong password, a user
without the role, no client certificate; a token etcd forgets
(--auth-token-ttl) is fetched again, also after the password changed.
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

import pytest

from test_etcd import (DEADLINE, ETCDCTL, SNOWFLAKED, Etcd, Node,  # noqa: F401
                       free_port, http, tmp, wait_for)
# Run again here, over TLS with auth, on this module's etcd and fleet.
from test_etcd import (test_etcd_outage_stops_issuing_then_recovers,  # noqa: F401
                       test_health_and_metrics_show_the_lease,
                       test_sigkill_frees_the_id_after_the_ttl,
                       test_sigterm_revokes_the_lease_at_once,
                       test_three_nodes_take_distinct_ids_and_a_fourth_the_next)
from test_etcd_handover import LIBFAKETIME, preload
from test_etcd_handover import \
    test_new_holder_issues_above_an_old_holder_20s_ahead  # noqa: F401

OPENSSL = shutil.which("openssl")
PREFIX = "/snowflake/machines/"  # the default: docs/fleet.md's role covers it
ROOT_PW, SF_PW = "root-pw-%s" % uuid.uuid4().hex[:8], "sf-pw-%s" % uuid.uuid4().hex[:8]
OUTSIDER_PW = "out-pw-%s" % uuid.uuid4().hex[:8]

pytestmark = pytest.mark.skipif(
    not (OPENSSL and os.path.exists(LIBFAKETIME)),
    reason="openssl / libfaketime not installed (scripts/deps.sh test)")


# ------------------------------------------------------------ certificates


class Pki:
    """A CA and the certificates the tests need, in a temporary folder.

    Everything is issued as of 30 days ago (faketime), valid ten years,
    except the expired client certificate (valid from 10 to 9 days ago), so
    a node run 9.5 days in the past still trusts etcd's certificate."""

    def __init__(self, d):
        self.dir = d
        self.ca = self._ca("ca")
        self.other_ca = self._ca("other-ca")
        # etcd's gateway dials etcd's own gRPC port with the server
        # certificate, so it must be good for clients too.
        self.server = self.issue("server", "/CN=etcd-test",
                                 "subjectAltName=IP:127.0.0.1\n"
                                 "extendedKeyUsage=serverAuth,clientAuth")
        # No CommonName: with auth on, etcd's gateway refuses one that has.
        self.client = self.issue("client", "/O=snowflaked",
                                 "extendedKeyUsage=clientAuth")
        self.client_cn = self.issue("client-cn", "/CN=snowflaked",
                                    "extendedKeyUsage=clientAuth")
        self.stranger = self.issue("stranger", "/O=snowflaked",
                                   "extendedKeyUsage=clientAuth",
                                   ca=self.other_ca)
        self.expired = self.issue("expired", "/O=snowflaked",
                                  "extendedKeyUsage=clientAuth",
                                  ago="-10d", days=1)
        self.server_only = self.issue("server-only", "/O=snowflaked",
                                      "extendedKeyUsage=serverAuth")
        self.expired_server = self.issue(
            "expired-server", "/CN=etcd-test",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
            ago="-10d", days=1)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _run(self, args, ago="-30d"):
        # libfaketime itself, not the faketime wrapper: the wrapper's named
        # semaphore (per pid) collides with one a reused pid left behind
        # ("sem_open: File exists").
        env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME=ago)
        p = subprocess.run([OPENSSL] + args, env=env, capture_output=True,
                           cwd=self.dir, timeout=60)
        assert p.returncode == 0, (args, p.stderr.decode(errors="replace"))

    def _key(self, name):
        self._run(["genpkey", "-algorithm", "EC", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-out", name + ".key"])
        return self.path(name + ".key")

    def _ca(self, name):
        self._key(name)
        self._run(["req", "-x509", "-new", "-key", name + ".key", "-out",
                   name + ".pem", "-days", "3650", "-subj", "/CN=" + name])
        return (self.path(name + ".pem"), self.path(name + ".key"))

    def issue(self, name, subj, ext, ca=None, ago="-30d", days=3650):
        """(certificate, key) signed by ca (default: the test CA)."""
        ca = ca or self.ca
        self._key(name)
        with open(self.path(name + ".ext"), "w") as f:
            f.write(ext + "\n")
        self._run(["req", "-new", "-key", name + ".key", "-out", name + ".csr",
                   "-subj", subj])
        self._run(["x509", "-req", "-in", name + ".csr", "-CA", ca[0],
                   "-CAkey", ca[1], "-CAcreateserial", "-out", name + ".pem",
                   "-days", str(days), "-extfile", name + ".ext"], ago=ago)
        return (self.path(name + ".pem"), self.path(name + ".key"))


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="sf-etcd-pki-")
    yield Pki(d)
    shutil.rmtree(d, ignore_errors=True)


# -------------------------------------------------------------------- etcd


class TlsEtcd(Etcd):
    """etcd on https only, with --client-cert-auth, and auth enabled: root,
    the user "sf" whose role "snowflake" has readwrite on PREFIX only, and
    "outsider" with no role."""

    def __init__(self, d, pki, *flags):
        super().__init__(d)
        self.pki = pki
        self.flags = list(flags)
        self.url = "https://127.0.0.1:%d" % self.port
        self.ctx = ssl.create_default_context(cafile=pki.ca[0])
        self.ctx.load_cert_chain(*pki.client)

    def start(self):
        super().start("--client-cert-auth",
                      "--trusted-ca-file", self.pki.ca[0],
                      "--cert-file", self.pki.server[0],
                      "--key-file", self.pki.server[1], *self.flags)

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError("etcd exited: see " + self.log.name)
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1,
                                        context=self.ctx) as r:
                return r.status == 200 and b'"true"' in r.read()
        except OSError:
            return False

    def env(self, user="root:" + ROOT_PW):
        """etcdctl's environment: the certificates, and the user."""
        e = dict(os.environ, ETCDCTL_CACERT=self.pki.ca[0],
                 ETCDCTL_CERT=self.pki.client[0],
                 ETCDCTL_KEY=self.pki.client[1])
        e.pop("ETCDCTL_USER", None)
        if user:
            e["ETCDCTL_USER"] = user
        return e

    def ctl(self, *args, user="root:" + ROOT_PW, stdin=None):
        return subprocess.run([ETCDCTL, "--endpoints", self.url] + list(args),
                              env=self.env(user), input=stdin, check=True,
                              capture_output=True, text=True,
                              timeout=30).stdout

    def secure(self):
        """Users, roles, then auth on (before it, no user is needed)."""
        for args in (["user", "add", "root:" + ROOT_PW],
                     ["user", "grant-role", "root", "root"],
                     ["user", "add", "sf:" + SF_PW],
                     ["user", "add", "outsider:" + OUTSIDER_PW],
                     # docs/fleet.md's lines: readwrite on the prefix, no more
                     ["role", "add", "snowflake"],
                     ["role", "grant-permission", "snowflake", "--prefix=true",
                      "readwrite", PREFIX],
                     ["user", "grant-role", "sf", "snowflake"],
                     ["auth", "enable"]):
            self.ctl(*args, user=None)

    def _post(self, path, body, token=None):
        req = urllib.request.Request(self.url + path,
                                     data=json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", token)
        with urllib.request.urlopen(req, timeout=10, context=self.ctx) as r:
            return json.loads(r.read())

    def put_many(self, keys):
        """Put keys in transactions of up to 1024 puts (value "x"), as
        root through the gateway, as the plain Etcd does."""
        import base64
        b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
        token = self._post("/v3/auth/authenticate",
                           {"name": "root", "password": ROOT_PW})["token"]
        for i in range(0, len(keys), 1024):
            ops = [{"request_put": {"key": b64(k), "value": b64("x")}}
                   for k in keys[i:i + 1024]]
            self._post("/v3/kv/txn", {"success": ops}, token)


def start_tls_etcd(tmp, pki, *flags):
    e = TlsEtcd(tmp, pki, *flags)
    e.start()
    e.secure()
    return e


@pytest.fixture
def etcd(tmp, pki, monkeypatch):
    """A fresh TLS + auth etcd for each test; etcdctl run by the tests of
    test_etcd.py finds the certificates and root in its environment."""
    e = start_tls_etcd(tmp, pki)
    for k, v in e.env().items():
        if k.startswith("ETCDCTL_"):
            monkeypatch.setenv(k, v)
    yield e
    e.kill()


def node_env(pki, **env):
    """The settings of a node of the fleet: certificates and the sf user."""
    e = dict(ETCD_CACERT=pki.ca[0], ETCD_CERT=pki.client[0],
             ETCD_KEY=pki.client[1], ETCD_USERNAME="sf", ETCD_PASSWORD=SF_PW)
    e.update(env)
    return {k: v for k, v in e.items() if v is not None}


@pytest.fixture
def fleet(etcd, tmp, pki):
    """As test_etcd's fleet, under PREFIX, each node over TLS as sf."""
    nodes = []

    def start(**env):
        n = Node(etcd.url, PREFIX, tmp, **node_env(pki, **env))
        nodes.append(n)
        return n

    start.prefix = PREFIX
    yield start
    for n in nodes:
        n.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def shared_etcd(pki):
    """One TLS + auth etcd for the tests that only read from it."""
    d = tempfile.mkdtemp(prefix="sf-etcd-tls-")
    e = start_tls_etcd(d, pki)
    yield e
    e.kill()
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- failures


def failing_node(tmp, url, want, prefix=PREFIX, **env):
    """Starts a node that cannot lease an id and returns (exit status or
    None, its log, the body of its /health) once it has exited or said all
    of want in both (a node that waits for etcd says why on /health, /id
    and every protocol, and in its log)."""
    n = Node(url, prefix, tmp, **env)
    seen = ["", ""]

    def said_why():
        if n.proc.poll() is not None:
            return True
        body = http(n.url + "/health")[1]
        try:
            body = json.loads(body)["error"]  # unescaped
        except (ValueError, KeyError, TypeError):
            pass
        seen[0], seen[1] = n.output(), body
        return all(w in seen[0] and w in seen[1] for w in want)

    try:
        try:
            wait_for("the node to name the failure", said_why)
        except AssertionError:
            raise AssertionError("wanted %r\nlog:\n%s\n/health: %s"
                                 % (want, seen[0], seen[1]))
        rc = n.proc.poll()
        return rc, n.output(), seen[1]
    finally:
        n.stop(signal.SIGKILL)


def assert_named(tmp, url, causes, **env):
    """The node keeps running (it waits for etcd), and its log and its 503
    name the endpoint and every cause; no secret in either."""
    rc, log, body = failing_node(tmp, url, [url] + causes, **env)
    assert rc is None, log
    for c in [url] + causes:
        assert c in log, log
        assert c in body, body
    for secret in (SF_PW, OUTSIDER_PW, ROOT_PW):
        assert secret not in log and secret not in body
    return log


def test_wrong_ca(shared_etcd, tmp, pki):
    assert_named(tmp, shared_etcd.url,
                 ["etcd's certificate is not trusted by ETCD_CACERT",
                  pki.other_ca[0]],
                 **node_env(pki, ETCD_CACERT=pki.other_ca[0]))


def test_system_trust_store_does_not_know_a_private_ca(shared_etcd, tmp, pki):
    assert_named(tmp, shared_etcd.url,
                 ["not trusted by the system's trust store (ETCD_CACERT is "
                  "unset)"],
                 **node_env(pki, ETCD_CACERT=None))


def test_host_not_in_the_certificate(shared_etcd, tmp, pki):
    # The certificate names 127.0.0.1 only, not localhost.
    url = "https://localhost:%d" % shared_etcd.port
    assert_named(tmp, url, ["etcd's certificate does not name this host"],
                 **node_env(pki))


class ExpiredTlsServer:
    """A TLS server on loopback whose certificate expired 9 days ago: each
    connection gets a handshake, then is closed."""

    def __init__(self, pki):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(*pki.expired_server)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "https://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.settimeout(5)
                self.ctx.wrap_socket(c, server_side=True).close()
            except (OSError, ssl.SSLError):
                c.close()


def test_expired_etcd_certificate(tmp, pki):
    srv = ExpiredTlsServer(pki)
    try:
        assert_named(tmp, srv.url, ["etcd's certificate has expired"],
                     **node_env(pki))
    finally:
        srv.sock.close()


@pytest.mark.skipif(not os.path.exists(LIBFAKETIME),
                    reason="libfaketime not installed")
def test_client_certificate_expired_as_etcd_sees_it(shared_etcd, tmp, pki):
    """A node whose clock is 9.5 days behind still thinks its certificate
    good; etcd refuses it, and the message says which certificate."""
    assert_named(tmp, shared_etcd.url,
                 ["etcd refused our client certificate ETCD_CERT \"%s\""
                  % pki.expired[0], "bad certificate"],
                 **node_env(pki, ETCD_CERT=pki.expired[0],
                            ETCD_KEY=pki.expired[1], LD_PRELOAD=preload(),
                            FAKETIME="-9.5d"))


def test_client_certificate_of_another_ca(shared_etcd, tmp, pki):
    assert_named(tmp, shared_etcd.url,
                 ["etcd refused our client certificate ETCD_CERT \"%s\""
                  % pki.stranger[0]],
                 **node_env(pki, ETCD_CERT=pki.stranger[0],
                            ETCD_KEY=pki.stranger[1]))


def test_no_client_certificate(shared_etcd, tmp, pki):
    assert_named(tmp, shared_etcd.url,
                 ["etcd wants a client certificate: set ETCD_CERT and "
                  "ETCD_KEY"],
                 **node_env(pki, ETCD_CERT=None, ETCD_KEY=None))


def test_client_certificate_with_a_common_name(shared_etcd, tmp, pki):
    assert_named(tmp, shared_etcd.url,
                 ["CommonName of client", "issue ETCD_CERT without CN"],
                 **node_env(pki, ETCD_CERT=pki.client_cn[0],
                            ETCD_KEY=pki.client_cn[1]))


def test_wrong_password(shared_etcd, tmp, pki):
    out = assert_named(tmp, shared_etcd.url,
                       ["etcd refused user \"sf\"", "authentication failed",
                        "check ETCD_USERNAME and ETCD_PASSWORD"],
                       **node_env(pki, ETCD_PASSWORD="not-" + SF_PW))
    assert "not-" + SF_PW not in out


def test_user_without_the_role(shared_etcd, tmp, pki):
    assert_named(tmp, shared_etcd.url,
                 ["permission denied", "ETCD_USERNAME's role needs readwrite "
                  "on ETCD_PREFIX"],
                 **node_env(pki, ETCD_USERNAME="outsider",
                            ETCD_PASSWORD=OUTSIDER_PW))


def test_prefix_outside_the_role(shared_etcd, tmp, pki):
    rc, out, body = failing_node(tmp, shared_etcd.url, ["permission denied"],
                                 prefix="/elsewhere/", **node_env(pki))
    assert rc is None and "permission denied" in out, out
    assert "permission denied" in body, body


def test_no_user_on_an_etcd_with_auth(shared_etcd, tmp, pki):
    assert_named(tmp, shared_etcd.url,
                 ["user name is empty", "set ETCD_USERNAME and ETCD_PASSWORD"],
                 **node_env(pki, ETCD_USERNAME=None, ETCD_PASSWORD=None))


def test_http_endpoint_to_a_tls_etcd(shared_etcd, tmp, pki):
    url = "http://127.0.0.1:%d" % shared_etcd.port
    rc, out, body = failing_node(tmp, url, [url],
                                 ETCD_USERNAME="sf", ETCD_PASSWORD=SF_PW)
    assert rc is None and url in out and SF_PW not in out, out
    assert url in body and SF_PW not in body, body


@pytest.mark.parametrize("env,says", [
    ({"ETCD_KEY": "other"}, "ETCD_KEY: the key in \"{other}\" does not match "
                            "the certificate in ETCD_CERT \"{cert}\""),
    ({"ETCD_CACERT": "/nonexistent/ca.pem"},
     "ETCD_CACERT: cannot read \"/nonexistent/ca.pem\": No such file"),
    ({"ETCD_CERT": "key"}, "ETCD_CERT: \"{key}\" holds no PEM certificate"),
    ({"ETCD_CERT": "server"}, "ETCD_CERT: the certificate in \"{server}\" is "
                              "not for TLS clients"),
    ({"ETCD_PASSWORD": None, "ETCD_PASSWORD_FILE": "/nonexistent/pw"},
     "ETCD_PASSWORD_FILE: cannot read \"/nonexistent/pw\""),
    ({"ETCD_PASSWORD": None}, "ETCD_USERNAME needs ETCD_PASSWORD or "
                              "ETCD_PASSWORD_FILE"),
    ({"ETCD_KEY": None}, "ETCD_CERT needs ETCD_KEY"),
    ({"ETCD_CERT": "expired", "ETCD_KEY": "expired-key"},
     "ETCD_CERT: the certificate in \"{expired}\" expired at"),
    ({"ETCD_ENDPOINTS": "http://127.0.0.1:2379"},
     "ETCD_CACERT needs an https:// endpoint in ETCD_ENDPOINTS"),
])
def test_bad_settings_exit_2_at_once(tmp, pki, env, says):
    names = {"other": pki.stranger[1], "cert": pki.client[0],
             "key": pki.client[1], "server": pki.server_only[0],
             "expired": pki.expired[0], "expired-key": pki.expired[1]}
    env = {k: names.get(v, v) for k, v in env.items()}
    if env.get("ETCD_KEY") == pki.stranger[1]:
        env["ETCD_CERT"] = pki.client[0]
    e = dict(os.environ, MACHINE_ID="auto", PORT=str(free_port()),
             ETCD_ENDPOINTS="https://127.0.0.1:%d" % free_port())
    e.update(node_env(pki))
    e.update(env)
    e = {k: v for k, v in e.items() if v is not None}
    t0 = time.monotonic()
    p = subprocess.run([SNOWFLAKED], env=e, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert says.format(**names) in p.stderr, p.stderr
    assert time.monotonic() - t0 < DEADLINE  # before any etcd request
    assert SF_PW not in p.stderr


# ----------------------------------------------------------------- tokens


def metric(node, name):
    st, body = http(node.url + "/metrics")
    m = re.search(r"^snowflake_%s (\d+)$" % name, body, re.M)
    return int(m.group(1)) if st == 200 and m else None


def test_forgotten_token_is_fetched_again(tmp, pki):
    """etcd forgets a token unused for 2 s; the node's mark writes come every
    3 s (TTL 6 s, leap one TTL), so each one finds its token gone and must
    authenticate again. Then the password changes (etcd and the file), and
    the next authentication reads the file again."""
    e = start_tls_etcd(tmp, pki, "--auth-token-ttl", "2")
    pwfile = os.path.join(tmp, "sf-password")
    with open(pwfile, "w") as f:
        f.write(SF_PW + "\n")
    n = Node(e.url, PREFIX, tmp, **node_env(pki, ETCD_PASSWORD=None,
                                            ETCD_PASSWORD_FILE=pwfile,
                                            ETCD_LEASE_TTL="6"))
    try:
        assert n.wait_serving() == 0
        writes = metric(n, "lease_mark_writes_total")
        wait_for("three more mark writes, each past the token's TTL",
                 lambda: metric(n, "lease_mark_writes_total") >= writes + 3,
                 deadline=60)
        new_pw = "rotated-" + SF_PW
        e.ctl("user", "passwd", "sf", "--interactive=false",
              stdin=new_pw + "\n")
        with open(pwfile, "w") as f:
            f.write(new_pw + "\n")
        writes = metric(n, "lease_mark_writes_total")
        wait_for("three mark writes with the new password",
                 lambda: metric(n, "lease_mark_writes_total") >= writes + 3,
                 deadline=60)
        assert metric(n, "lease_mark_errors_total") == 0
        assert metric(n, "lease_losses_total") == 0
        assert n.get_id()[0] == 200
        out = n.output()
        for secret in (SF_PW, new_pw):
            assert secret not in out
            assert secret not in http(n.url + "/metrics")[1]
    finally:
        n.stop(signal.SIGKILL)
        e.kill()


def test_no_secret_in_the_log_or_metrics(fleet, tmp):
    n = fleet()
    n.wait_serving()
    n.get_id()
    shown = n.output() + http(n.url + "/metrics")[1] + http(n.url + "/health")[1]
    assert SF_PW not in shown and ROOT_PW not in shown
    # etcd's simple tokens look like "AbCdEfGhIjKlMnOp.42"
    assert not re.search(r"\b[A-Za-z]{16}\.\d+\b", shown), shown
    n.stop(signal.SIGTERM)
    out = n.output()
    assert SF_PW not in out and not re.search(r"\b[A-Za-z]{16}\.\d+\b", out)


def test_second_endpoint_is_used_when_the_first_is_down(fleet, etcd):
    dead = "https://127.0.0.1:%d" % free_port()
    n = fleet(ETCD_ENDPOINTS=dead + "," + etcd.url)
    assert n.wait_serving() == 0
