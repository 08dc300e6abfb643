"""Shared fixtures for the integration tests: start the real snowflaked on
a free port, stop it at the end, and speak raw HTTP/1.x over sockets.

    def test_x(snowflaked):
        node = snowflaked(MACHINE_ID="1", THREADS="2")
        status, headers, body = node.get("/id")

Only the standard library and pytest; Debian's /usr/bin/python3.
"""
import os
import re
import shutil
import signal as signals
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SNOWFLAKED = os.environ.get("SNOWFLAKED", os.path.join(ROOT, "build", "snowflaked"))
SNOWFLAKE = os.environ.get("SNOWFLAKE", os.path.join(ROOT, "build", "snowflake"))
START_TIMEOUT = 20.0  # seconds; generous for sanitizer builds on a busy box
IO_TIMEOUT = 10.0


def go_tool(name):
    """The path of a Go tool `make test-conformance` installs (h2spec,
    grpcurl, grpc-health-probe, gomemcache-client): in SF_GO_TOOLS when
    set, else on PATH; None when absent. With SF_GO_TOOLS set (the
    conformance goal) a missing tool is an error, not a skip, unless its
    go install or build failed and the goal said so (SF_GO_SKIPPED)."""
    if name in os.environ.get("SF_GO_SKIPPED", "").split():
        return None
    d = os.environ.get("SF_GO_TOOLS")
    path = os.path.join(d, name) if d else shutil.which(name)
    if path and os.access(path, os.X_OK):
        return path
    if d:
        raise AssertionError("%s not in SF_GO_TOOLS=%s" % (name, d))
    return None


def free_port():
    """A TCP port free on 127.0.0.1 right now (for tests that need the port
    before the server starts; the others use PORT=0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_responses(data, head=False):
    """Splits raw bytes into [(status, {lower-case name: value}, body)].
    Bodies are framed by Content-Length (none for HEAD answers)."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            raise AssertionError("incomplete response: %r" % data[:200])
        lines = data[:end].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0] + " ")
        assert m, "bad status line %r" % lines[0]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = 0 if head else int(headers.get("content-length", "0"))
        body = data[end + 4:end + 4 + n]
        assert len(body) == n, "short body"
        out.append((int(m.group(1)), headers, body))
        data = data[end + 4 + n:]
    return out


def connect(port, host="127.0.0.1", timeout=IO_TIMEOUT):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_all(s, timeout=IO_TIMEOUT):
    """Reads until the peer closes (or resets) the connection."""
    s.settimeout(timeout)
    chunks = []
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def recv_responses(s, n, head=False, timeout=IO_TIMEOUT):
    """Reads exactly n complete responses from a kept-alive connection."""
    s.settimeout(timeout)
    data = b""
    while True:
        try:
            got = parse_responses(data, head)
            if len(got) >= n:
                return got
        except AssertionError:
            pass
        b = s.recv(65536)
        if not b:
            return parse_responses(data, head)
        data += b


def raw(port, data, host="127.0.0.1", timeout=IO_TIMEOUT):
    """Sends data on a fresh connection, half-closes, and returns every byte
    the server sends until it closes."""
    with connect(port, host, timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s, timeout)


def request(method, path, version="1.1", headers=(), body=b""):
    lines = ["%s %s HTTP/%s" % (method, path, version), "Host: localhost"]
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Node:
    """A running snowflaked. Its stderr goes to a file (self.log)."""

    def __init__(self, env, args, tmpdir):
        e = {k: v for k, v in os.environ.items()
             if k not in ("MACHINE_ID", "PORT", "THREADS", "STATE_FILE")}
        e.update({"PORT": "0", "BIND": "127.0.0.1", "THREADS": "2"})
        e.update({k: str(v) for k, v in env.items()})
        self.log = tempfile.NamedTemporaryFile(
            dir=tmpdir, prefix="snowflaked-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([SNOWFLAKED] + list(args), env=e,
                                     stdout=self.log, stderr=self.log)
        self.port = self.redis_port = self.memcached_port = None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = re.search(r"listening on \S+:(\d+)", self.output())
            if m:
                self.port = int(m.group(1))
                # The other listeners are on the same line, when set.
                r = re.search(r":(\d+) \(Redis\)", self.output())
                mc = re.search(r":(\d+) \(memcached\)", self.output())
                self.redis_port = int(r.group(1)) if r else None
                self.memcached_port = int(mc.group(1)) if mc else None
                return
            if self.proc.poll() is not None:
                raise AssertionError("snowflaked exited %d:\n%s"
                                     % (self.proc.returncode, self.output()))
            time.sleep(0.01)
        self.kill()
        raise AssertionError("snowflaked did not start:\n" + self.output())

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def request(self, method, path, version="1.1", headers=()):
        """One request on a fresh connection: (status, headers, body)."""
        hdrs = list(headers) + ["Connection: close"]
        data = raw(self.port, request(method, path, version, hdrs))
        got = parse_responses(data, head=(method == "HEAD"))
        assert len(got) == 1, got
        return got[0]

    def get(self, path):
        return self.request("GET", path)

    def get_json(self, path):
        import json
        st, _, body = self.get(path)
        assert st == 200, (path, st, body)
        return json.loads(body)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signals.SIGTERM, timeout=IO_TIMEOUT):
        """Sends sig and returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def snowflaked(tmp_path):
    """A factory: snowflaked(**env, args=[...]) starts a node (PORT=0,
    BIND=127.0.0.1, THREADS=2 unless given) and kills it at the end."""
    nodes = []

    def start(*, args=(), **env):
        env.setdefault("MACHINE_ID", "1")
        n = Node(env, args, str(tmp_path))
        nodes.append(n)
        return n

    yield start
    for n in nodes:
        n.kill()


def run_snowflaked(args=(), timeout=IO_TIMEOUT, **env):
    """Runs snowflaked to completion: (status, stdout, stderr)."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("MACHINE_ID", "PORT", "THREADS")}
    e.update({k: str(v) for k, v in env.items()})
    p = subprocess.run([SNOWFLAKED] + list(args), env=e, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr
