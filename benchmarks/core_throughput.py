"""Throughput of the PBFT core alone: 4 replica cores and their clients in one process, real
Ed25519 on every request and protocol message, every message through the wire codec, no network.

Compared with the limit set by signature checks alone: each request's client signature is
checked by 4 replicas, so no implementation can commit more than 1 / (4 × verify time) requests
per second on one core. `ratio` = committed requests/s at batch size 100 ÷ that limit.

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

from simulations.cluster import InProcessCluster


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


def run_cluster(batch_size: int, requests: int, seed: int) -> dict:
    # Enough closed-loop clients to fill batches while one batch is in flight.
    clients = max(10, 2 * batch_size)
    per_client = max(1, requests // clients)
    cluster = InProcessCluster(
        4, seed=seed, config_overrides={"batch_size_max": batch_size, "log_window": 256}
    )
    sessions = [cluster.add_client(f"bench-{i}") for i in range(clients)]
    gc.collect()
    start = time.perf_counter()
    deliveries = cluster.run_workload(
        sessions, per_client, lambda c, i: kv_put(f"key{c}", b"v" * 16)
    )
    elapsed = time.perf_counter() - start
    committed = sum(len(r) for r in cluster.results.values())
    assert committed == clients * per_client
    batches = len(cluster.executed[0])
    return {
        "batch_size_max": batch_size,
        "clients": clients,
        "committed": committed,
        "batches": batches,
        "mean_batch": committed / max(1, batches),
        "messages": deliveries,
        "seconds": elapsed,
        "requests_per_s": committed / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests at batch size 100")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    verify_us, limit = signature_limit_requests_per_s()
    rows = [
        run_cluster(1, max(200, args.requests // 20), args.seed),
        run_cluster(10, max(1000, args.requests // 4), args.seed),
        run_cluster(100, args.requests, args.seed),
    ]
    print(f"Ed25519 verify: {verify_us:.1f} µs → signature limit "
          f"{limit:,.0f} requests/s (4 replicas check each request)")
    print()
    print(f"{'batch max':>9} {'clients':>7} {'committed':>9} {'mean batch':>10} "
          f"{'messages':>9} {'seconds':>8} {'requests/s':>11} {'of limit':>8}")
    for r in rows:
        print(f"{r['batch_size_max']:>9} {r['clients']:>7} {r['committed']:>9} "
              f"{r['mean_batch']:>10.1f} {r['messages']:>9} {r['seconds']:>8.2f} "
              f"{r['requests_per_s']:>11,.0f} {r['requests_per_s'] / limit:>8.2f}")
    best = rows[-1]["requests_per_s"]
    figures = {
        "requests_per_s": round(best, 1),
        "requests_per_s_batch_1": round(rows[0]["requests_per_s"], 1),
        "requests_per_s_batch_10": round(rows[1]["requests_per_s"], 1),
        "signature_limit_requests_per_s": round(limit, 1),
        "verify_us": round(verify_us, 2),
        "ratio": round(best / limit, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
