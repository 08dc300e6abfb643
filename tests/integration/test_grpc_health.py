"""grpc.health.v1.Health against the real snowflaked: Watch (a server
stream) with grpcio, following a lease lost and back (a real etcd from
test_etcd.py, stopped with SIGSTOP), and grpc-health-probe (the probe
Kubernetes users reach for; Go, from the module proxy: `make
test-conformance` installs it, its directory in SF_GO_TOOLS) on the same.
"""
import signal
import subprocess
import threading

import pytest

from conftest import go_tool
from test_etcd import DEADLINE, wait_for
from test_etcd import etcd, fleet, tmp  # noqa: F401 (fixtures)
from test_grpc import Client, pb  # noqa: F401 (fixture)

grpc = pytest.importorskip("grpc", reason="python3-grpcio not installed")

SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3


class Watch:
    """A Watch stream read by a thread: every status received, in order,
    and how the call ended."""

    def __init__(self, port, pb, service=""):
        self.client = Client(port, pb)
        watch = self.client.channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=pb.HealthCheckRequest.SerializeToString,
            response_deserializer=pb.HealthCheckResponse.FromString)
        self.call = watch(pb.HealthCheckRequest(service=service),
                          timeout=DEADLINE * 4)
        self.got, self.end = [], None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for r in self.call:
                self.got.append(r.status)
        except grpc.RpcError as e:
            self.end = (e.code(), e.details())

    def close(self):
        self.call.cancel()
        self.thread.join(DEADLINE)
        self.client.close()


def probe(port, *args):
    p = subprocess.run([go_tool("grpc-health-probe"),
                        "-addr", "127.0.0.1:%d" % port, *args],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def test_watch_follows_the_lease(etcd, fleet, pb):  # noqa: F811
    """The status now, then each change: etcd stops answering, the lease
    runs out (NOT_SERVING); etcd is back (SERVING). grpc-health-probe
    agrees at each step when it is installed."""
    n = fleet()
    n.wait_serving()
    w = Watch(n.port, pb)
    other = Watch(n.port, pb, "nope.v1.Svc")
    has_probe = go_tool("grpc-health-probe") is not None
    try:
        wait_for("SERVING", lambda: w.got == [SERVING])
        if has_probe:
            assert probe(n.port)[0] == 0
        etcd.signal(signal.SIGSTOP)
        try:
            wait_for("NOT_SERVING", lambda: w.got == [SERVING, NOT_SERVING])
            if has_probe:
                rc, out = probe(n.port)
                assert rc == 4 and "NOT_SERVING" in out, out
        finally:
            etcd.signal(signal.SIGCONT)
        wait_for("SERVING again",
                 lambda: w.got == [SERVING, NOT_SERVING, SERVING])
        if has_probe:
            assert probe(n.port)[0] == 0
        assert w.end is None  # the stream stays open
        assert other.got == [SERVICE_UNKNOWN] and other.end is None
    finally:
        w.close()
        other.close()


def test_watch_at_shutdown(snowflaked, pb):  # noqa: F811
    n = snowflaked()
    w = Watch(n.port, pb)
    wait_for("SERVING", lambda: w.got == [SERVING])
    assert n.stop() == 0
    wait_for("the end of the call", lambda: w.end is not None)
    assert w.got == [SERVING, NOT_SERVING]
    assert w.end[0] == grpc.StatusCode.UNAVAILABLE
    w.close()


@pytest.mark.skipif(go_tool("grpc-health-probe") is None,
                    reason="grpc-health-probe not installed (make "
                    "test-conformance installs it; needs Go and its "
                    "module proxy)")
def test_grpc_health_probe(snowflaked, tmp_path):
    n = snowflaked()
    rc, out = probe(n.port)
    assert rc == 0 and "SERVING" in out, out
    rc, out = probe(n.port, "-service", "snowflake.v1.Snowflake")
    assert rc == 0, out
    rc, out = probe(n.port, "-service", "nope.v1.Svc")
    assert rc != 0 and "unknown service nope.v1.Svc" in out, out
    state = tmp_path / "state"  # the clock behind the state file's mark
    state.write_text("%d\n" % (int(__import__("time").time() * 1000)
                               + 120000))
    rc, out = probe(snowflaked(STATE_FILE=str(state)).port)
    assert rc == 4 and "NOT_SERVING" in out, out
