"""`make demo`: a 4-replica cluster in one process, driven by a seeded message order.

Ten clients write to the reference key-value store; a faulty client's forged request is refused;
every replica ends with the same state digest. Run: python -m simulations.demo [--seed N]
"""

from __future__ import annotations

import argparse
from pbft.app import kv_append, kv_decode_result, kv_get
from pbft.messages import Request

from .cluster import InProcessCluster, deterministic_signer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    args = parser.parse_args()

    cluster = InProcessCluster(4, seed=args.seed, config_overrides={"checkpoint_interval": 16,
                                                                    "log_window": 64})
    sessions = [cluster.add_client(f"demo-{i}") for i in range(args.clients)]
    print(f"4 replicas (f = {cluster.config.f}), {args.clients} clients, seed {args.seed}\n")

    deliveries = cluster.run_workload(
        sessions, args.requests, lambda c, i: kv_append(f"account-{c}", b"%d;" % i)
    )
    cluster.run()

    # A request whose signature is not its client's: every replica refuses it.
    mallory = deterministic_signer("mallory")
    forged = Request(kv_append("account-0", b"stolen;"), 10**15, sessions[0].client, False,
                     mallory.sign(b"not the request"))
    for r in range(4):
        cluster.inject(r, forged, source="mallory")
    cluster.run()

    print(f"{'replica':>7} {'role':>8} {'executed':>8} {'stable ckpt':>11} {'log':>4} "
          f"{'refused':>7}  state digest")
    for replica in cluster.replicas:
        role = "primary" if replica.is_primary else "backup"
        refused = sum(replica.dropped.values())
        print(f"{replica.id:>7} {role:>8} {replica.last_executed:>8} "
              f"{replica.stable_checkpoint:>11} {replica.log_size():>4} {refused:>7}  "
              f"{replica.state_digest().hex()[:16]}")
    committed = sum(len(r) for r in cluster.results.values())
    print(f"\n{committed} requests committed in {len(cluster.executed[0])} batches, "
          f"{deliveries} message deliveries")
    reasons = sorted({reason for r in cluster.replicas for reason in r.dropped})
    print("refusals by reason:", ", ".join(
        f"{reason} × {sum(r.dropped[reason] for r in cluster.replicas)}" for reason in reasons))
    value = kv_decode_result(cluster.apps[2].query(kv_get("account-0"), b""))[1]
    print(f"account-0 on replica 2: {value.decode()}")
    digests = {r.state_digest() for r in cluster.replicas}
    assert len(digests) == 1, "replicas diverged"
    print("every replica holds the same state")


if __name__ == "__main__":
    main()
