"""Three nodes, MACHINE_ID 1, 2 and 3, two threads each, hit concurrently
from many connections: no ID is issued twice and each decodes to its
node."""
import json
import threading
import time

from conftest import connect, recv_responses, request

SEQ_BITS, MACHINE_BITS = 12, 10
SECONDS = 3.0
CLIENTS_PER_NODE = 4


def machine_of(i):
    return (i >> SEQ_BITS) & ((1 << MACHINE_BITS) - 1)


def hammer(port, stop, out, errors):
    """Pipelines /id and /ids?count=50 on one keep-alive connection."""
    try:
        with connect(port) as s:
            batch = request("GET", "/id") * 8 + request("GET", "/ids?count=50")
            while not stop.is_set():
                s.sendall(batch)
                for st, _, body in recv_responses(s, 9):
                    assert st == 200, body
                    j = json.loads(body)
                    if "ids" in j:
                        out.extend((i, j["machine_id"]) for i in j["ids"])
                    else:
                        out.append((j["id"], j["machine_id"]))
    except Exception as e:  # reported by the main thread
        errors.append(repr(e))


def test_three_nodes_no_duplicates(snowflaked):
    nodes = {m: snowflaked(MACHINE_ID=str(m), THREADS="2") for m in (1, 2, 3)}
    stop = threading.Event()
    results = {m: [] for m in nodes}
    errors = []
    threads = [threading.Thread(target=hammer,
                                args=(n.port, stop, results[m], errors))
               for m, n in nodes.items() for _ in range(CLIENTS_PER_NODE)]
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    everything = []
    for m, got in results.items():
        assert len(got) > 100, (m, len(got))
        for i, mid in got:
            assert mid == m
            assert machine_of(i) == m
        everything.extend(i for i, _ in got)
    assert len(everything) == len(set(everything)), "duplicate IDs"
    for n in nodes.values():
        assert n.stop() == 0
