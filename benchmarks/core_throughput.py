"""Throughput of the PBFT core alone: 4 replica cores and their clients in one process, real
Ed25519 on every request and protocol message, every message through the wire codec, no network.

Compared with the limit set by signature checks alone: each request's client signature is
checked by 4 replicas, so no implementation can commit more than 1 / (4 × verify time) requests
per second on one core. `ratio` = committed requests/s at batch size 100 ÷ that limit.

Everything runs on one core in one process: the 4 replicas, the closed-loop clients (which sign
every request and collect f + 1 replies), and the simulator's event loop on a random-order
network (no latency: each delivery is drawn from the messages in flight), with the simulator's
own evidence recording off (it checks the protocol; this measures the core). Rows marked 'wire'
also pass every message through the codec, as a network would; 'memory' rows hand the objects
over.

    python benchmarks/core_throughput.py [--requests N] [--seed S]

Prints a table, then one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

from pbft.app import kv_put
from pbft.codec import signing_payload
from pbft.ed25519 import Ed25519Signer, Ed25519Verifier
from pbft.messages import Request

from simulations.engine import random_order_cluster


def signature_limit_requests_per_s(samples: int = 4000) -> tuple[float, float]:
    """Time what a replica does to check one client request (payload + verify); return
    (verify_us, requests/s when each request is checked by 4 replicas)."""
    signer = Ed25519Signer(bytes(range(32)))
    verifier = Ed25519Verifier()
    requests = []
    for i in range(samples):
        unsigned = Request(kv_put(f"key{i % 100}", b"v" * 16), i + 1, signer.public_key, False, b"")
        requests.append(Request(unsigned.operation, unsigned.timestamp, unsigned.client, False,
                                signer.sign(signing_payload(unsigned))))
    start = time.perf_counter()
    for r in requests:
        assert verifier.verify(r.client, signing_payload(r), r.signature)
    elapsed = time.perf_counter() - start
    verify_s = elapsed / samples
    return verify_s * 1e6, 1.0 / (4 * verify_s)


def run_cluster(batch_size: int, requests: int, seed: int, wire: bool) -> dict:
    # Enough closed-loop clients to fill batches while one batch is in flight.
    clients = max(10, 2 * batch_size)
    per_client = max(1, requests // clients)
    cluster = random_order_cluster(seed=seed, wire=wire, evidence=False,
                                   config_overrides={"batch_size_max": batch_size})
    sessions = [cluster.add_client(f"bench-{i}") for i in range(clients)]
    gc.collect()
    start = time.perf_counter()
    deliveries = cluster.run_workload(
        sessions, per_client, lambda c, i: kv_put(f"key{c}", b"v" * 16)
    )
    deliveries += cluster.deliver_all()  # until the slowest replica has executed everything
    elapsed = time.perf_counter() - start
    committed = sum(len(s.results) for s in sessions)
    assert committed == clients * per_client
    histories = {tuple(b.digest for b in cluster.executed[r]) for r in range(4)}
    assert len(histories) == 1, "replicas disagree"
    return {
        "batch_size_max": batch_size,
        "wire": wire,
        "clients": clients,
        "committed": committed,
        "mean_batch": committed / max(1, len(cluster.executed[0])),
        "messages": deliveries,
        "seconds": elapsed,
        "requests_per_s": committed / elapsed,
    }


def measured(batch_size: int, requests: int, seed: int, wire: bool, repeats: int) -> dict:
    """The median of `repeats` runs, each beside a fresh measurement of the signature limit
    (this machine's speed drifts by ±10% between runs; a ratio of neighbours is steadier)."""
    runs = []
    for i in range(repeats):
        _, limit = signature_limit_requests_per_s()
        row = run_cluster(batch_size, requests, seed + i, wire)
        row["limit"] = limit
        row["ratio"] = row["requests_per_s"] / limit
        runs.append(row)
    runs.sort(key=lambda r: r["ratio"])
    return runs[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests at batch size 100")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (median shown)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    verify_us, limit = signature_limit_requests_per_s()
    rows = []
    for wire in (False, True):
        rows.append(measured(1, max(200, args.requests // 20), args.seed, wire, 1))
        rows.append(measured(10, max(1000, args.requests // 4), args.seed, wire, 1))
        rows.append(measured(100, args.requests, args.seed, wire, args.repeats))
    print(f"Ed25519 verify: {verify_us:.1f} µs → signature limit "
          f"{limit:,.0f} requests/s (4 replicas check each request)")
    print("messages: 'memory' hands message objects from core to core; 'wire' also encodes and")
    print("decodes every message with pbft.codec. Batch 100 rows: median of --repeats runs.")
    print()
    print(f"{'messages':>8} {'batch max':>9} {'clients':>7} {'committed':>9} {'mean batch':>10} "
          f"{'deliveries':>10} {'seconds':>8} {'requests/s':>11} {'of limit':>8}")
    for r in rows:
        print(f"{'wire' if r['wire'] else 'memory':>8} {r['batch_size_max']:>9} {r['clients']:>7} "
              f"{r['committed']:>9} {r['mean_batch']:>10.1f} {r['messages']:>10} "
              f"{r['seconds']:>8.2f} {r['requests_per_s']:>11,.0f} {r['ratio']:>8.2f}")
    memory, wire = rows[2], rows[5]
    figures = {
        "requests_per_s": round(memory["requests_per_s"], 1),
        "signature_limit_requests_per_s": round(memory["limit"], 1),
        "ratio": round(memory["ratio"], 3),
        "requests_per_s_batch_1": round(rows[0]["requests_per_s"], 1),
        "requests_per_s_batch_10": round(rows[1]["requests_per_s"], 1),
        "requests_per_s_wire": round(wire["requests_per_s"], 1),
        "ratio_wire": round(wire["ratio"], 3),
        "verify_us": round(verify_us, 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
