"""snowflaked's life: configuration errors, signals, limits, state file,
--healthcheck."""
import json
import os
import re
import signal
import socket
import time

import pytest

from conftest import (connect, free_port, parse_responses, raw, recv_all,
                      recv_responses, request, run_snowflaked)


# --------------------------------------------------- configuration errors

CONFIG_ERRORS = [
    ({}, [], ["MACHINE_ID", "required", "0..1023"]),
    ({"MACHINE_ID": "x"}, [],
     ['MACHINE_ID must be an integer in 0..1023, "auto" or "ordinal" '
      '(got "x")']),
    ({"MACHINE_ID": "1024"}, [], ["MACHINE_ID", "0..1023", '"1024"']),
    ({"MACHINE_ID": "-1"}, [], ["MACHINE_ID", '"-1"']),
    ({"MACHINE_ID": "1"}, ["--machine-id", "abc"], ["--machine-id", '"abc"']),
    ({"MACHINE_ID": "1", "PORT": "65536"}, [], ["PORT", "0..65535", '"65536"']),
    ({"MACHINE_ID": "1", "PORT": "http"}, [], ["PORT", '"http"']),
    ({"MACHINE_ID": "1"}, ["--port=-3"], ["--port", '"-3"']),
    ({"MACHINE_ID": "1", "BIND": "localhost"}, [], ["BIND", '"localhost"']),
    ({"MACHINE_ID": "1", "BIND": "300.1.1.1"}, [], ["BIND", '"300.1.1.1"']),
    ({"MACHINE_ID": "1", "THREADS": "0"}, [], ["THREADS", "1..256", '"0"']),
    ({"MACHINE_ID": "1", "EPOCH": "yesterday"}, [], ["EPOCH", '"yesterday"']),
    ({"MACHINE_ID": "1", "EPOCH": "2999-01-01T00:00:00Z"}, [],
     ["EPOCH", "past"]),
    ({"MACHINE_ID": "1", "CLOCK_TOLERANCE_MS": "1e3"}, [],
     ["CLOCK_TOLERANCE_MS", '"1e3"']),
    ({"MACHINE_ID": "1", "CLOCK": "sundial"}, [],
     ["CLOCK", "monotonic", "wall", '"sundial"']),
    ({"MACHINE_ID": "1", "MAX_BATCH": "0"}, [], ["MAX_BATCH", '"0"']),
    ({"MACHINE_ID": "1", "IDLE_TIMEOUT_MS": "soon"}, [],
     ["IDLE_TIMEOUT_MS", '"soon"']),
    ({"MACHINE_ID": "1", "MAX_CONNECTIONS": "0"}, [],
     ["MAX_CONNECTIONS", '"0"']),
    ({"MACHINE_ID": "1", "ETCD_LEASE_TTL": "0"}, [],
     ["ETCD_LEASE_TTL", '"0"']),
    ({"MACHINE_ID": "1", "MACHINE_ID_OFFSET": "5000"}, [],
     ["MACHINE_ID_OFFSET", '"5000"']),
    ({"MACHINE_ID": "1"}, ["--bogus"], ['unknown option "--bogus"']),
    ({"MACHINE_ID": "1"}, ["--threads"], ["--threads", "value"]),
    ({"MACHINE_ID": "1", "STATE_FILE": "/nonexistent-dir/x/state"}, [],
     ["STATE_FILE", "/nonexistent-dir/x/state"]),
]


@pytest.mark.parametrize("env,args,words", CONFIG_ERRORS)
def test_config_error_exits_2_with_one_line(env, args, words):
    rc, out, err = run_snowflaked(args, **env)
    assert rc == 2, (rc, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("snowflaked: ")
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("setting", ["PORT", "REDIS_PORT", "MEMCACHED_PORT"])
def test_port_in_use_exits_1_naming_it(setting):
    """A port another process holds: exit 1 (not a bad setting: the same
    settings work once the port is free) with one line naming the setting,
    the address and the cause, whichever listener it is."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {"MACHINE_ID": "1", "BIND": "127.0.0.1", "THREADS": "2",
               "PORT": "0", "REDIS_PORT": "0", "MEMCACHED_PORT": "0"}
        env[setting] = str(port)
        rc, out, err = run_snowflaked([], **env)
    assert rc == 1, (rc, err)
    assert err.strip().splitlines()[-1] == (
        "snowflaked: %s: cannot listen on 127.0.0.1:%d: Address already in use"
        % (setting, port))


def test_flag_wins_over_environment(snowflaked):
    n = snowflaked(MACHINE_ID="3", args=["--machine-id", "9"])
    assert n.get_json("/id")["machine_id"] == 9
    assert "machine id 9" in n.output()


def test_startup_line_shows_effective_config(snowflaked):
    n = snowflaked(MACHINE_ID="4", THREADS="1", MAX_BATCH="77")
    line = [l for l in n.output().splitlines() if "listening on" in l][0]
    for w in ["machine id 4", "threads=1", "max_batch=77",
              "epoch=2024-01-01T00:00:00.000Z", "clock=monotonic"]:
        assert w in line


def test_help_and_version():
    rc, out, _ = run_snowflaked(["--help"])
    assert rc == 0 and "MACHINE_ID" in out and "--healthcheck" in out
    rc, out, _ = run_snowflaked(["--version"])
    assert rc == 0 and re.match(r"snowflaked \d+\.\d+\.\d+", out)


def test_max_batch_applies(snowflaked):
    n = snowflaked(MAX_BATCH="10")
    assert len(n.get_json("/ids?count=10")["ids"]) == 10
    st, _, body = n.get("/ids?count=11")
    assert st == 400 and b"1..10" in body


def test_epoch_changes_the_timestamp(snowflaked):
    n = snowflaked(EPOCH="2020-01-01T00:00:00Z")
    i = n.get_json("/id")["id"]
    d = n.get_json("/decode/%d" % i)
    # /decode uses the node's own epoch: the time is now, not 2028.
    assert abs(d["timestamp_ms"] - time.time() * 1000) < 60000


# ----------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_0(snowflaked, sig):
    n = snowflaked()
    assert n.get("/health")[0] == 200
    assert n.stop(sig) == 0


def test_sigterm_with_open_connections_exits_0(snowflaked):
    n = snowflaked(THREADS="2")
    idle = [connect(n.port) for _ in range(5)]
    busy = connect(n.port)
    busy.sendall(request("GET", "/ids?count=10000") * 20)
    assert n.stop(signal.SIGTERM) == 0
    for s in idle + [busy]:
        s.close()


def test_stops_accepting_after_sigterm(snowflaked):
    n = snowflaked()
    port = n.port
    assert n.stop() == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# ------------------------------------------------------------------ limits


def test_idle_connection_is_closed(snowflaked):
    n = snowflaked(IDLE_TIMEOUT_MS="200")
    with connect(n.port) as s:
        assert recv_all(s, timeout=20) == b""  # closed by the server
    with connect(n.port) as s:  # also after an answered request
        s.sendall(request("GET", "/health"))
        data = recv_all(s, timeout=20)
        assert parse_responses(data)[0][2] == b"ok"
    assert n.get("/health")[0] == 200


def test_slow_client_does_not_delay_others(snowflaked):
    n = snowflaked(THREADS="1")
    slow = connect(n.port)
    slow.sendall(b"GET /id HTTP/1.1\r\nHo")  # and never finishes
    for _ in range(20):
        assert n.get("/id")[0] == 200
    slow.close()


def test_max_connections_refused_cleanly(snowflaked):
    n = snowflaked(MAX_CONNECTIONS="3", THREADS="1")
    held = [connect(n.port) for _ in range(3)]
    for s in held:  # all three are really served
        s.sendall(request("GET", "/health"))
        assert recv_responses(s, 1)[0][2] == b"ok"
    with connect(n.port) as s:
        data = recv_all(s)
    (st, h, body), = parse_responses(data)
    assert st == 503 and "retry-after" in h and json.loads(body)["error"]
    held.pop().close()
    for _ in range(200):  # the close reaches the server asynchronously
        got = parse_responses(raw(n.port, request(
            "GET", "/health", headers=["Connection: close"])))
        if got[0][0] == 200:
            break
        time.sleep(0.02)
    assert got[0][0] == 200
    for s in held:
        s.close()


# -------------------------------------------------------------- state file


def test_state_file_survives_restart(snowflaked, tmp_path):
    path = str(tmp_path / "state")
    a = snowflaked(STATE_FILE=path)
    before = a.get_json("/ids?count=100")["ids"][-1]
    assert a.stop() == 0
    assert os.path.exists(path)
    mark = int(open(path).read().split()[0])
    assert mark >= (before >> 22) + 1704067200000
    b = snowflaked(STATE_FILE=path)
    after = b.get_json("/id")["id"]
    assert after > before
    assert (after >> 22) + 1704067200000 > mark - 1  # above the old mark


def test_state_file_far_ahead_serves_503_with_retry_after(snowflaked,
                                                          tmp_path):
    path = tmp_path / "state"
    path.write_text("%d\n" % (int(time.time() * 1000) + 120000))
    n = snowflaked(STATE_FILE=str(path))
    st, h, body = n.get("/id")
    assert st == 503
    assert 100 <= int(h["retry-after"]) <= 121
    assert "clock" in json.loads(body)["error"]
    st, h, body = n.get("/health")
    assert st == 503 and int(h["retry-after"]) >= 1
    assert json.loads(body)["error"]
    st, _, _ = n.get("/ids?count=5")
    assert st == 503
    assert n.get("/metrics")[0] == 200  # still observable


# ------------------------------------------------------------ healthcheck


def test_healthcheck_flag(snowflaked):
    n = snowflaked()
    rc, _, err = run_snowflaked(["--healthcheck"], PORT=str(n.port),
                                BIND="127.0.0.1")
    assert rc == 0, err
    port = free_port()
    rc, _, _ = run_snowflaked(["--healthcheck", "--port", str(port)])
    assert rc == 1
