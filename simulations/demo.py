"""`make demo`: a 4-replica cluster in one process, driven by a seeded message order.

Ten clients write to the reference key-value store; a faulty client's forged request is refused;
every replica ends with the same state digest, and the simulator's checkers find nothing wrong
in what each replica did. Run: python -m simulations.demo [--seed N]
"""

from __future__ import annotations

import argparse
import sys

from pbft.app import kv_append, kv_decode_result, kv_get
from pbft.messages import Request

from . import checkers
from .engine import random_order_cluster
from .keys import ed25519_signer

#: The checkers the demo runs on its cluster (liveness is shown by the table itself).
CHECKERS = (checkers.agreement, checkers.single_vote, checkers.validity, checkers.exactly_once,
            checkers.evidence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    args = parser.parse_args()

    # Real Ed25519 and the wire codec on every message; any message in flight may be delivered
    # next, in an order drawn from the seed.
    sim = random_order_cluster(seed=args.seed, config_overrides={"checkpoint_interval": 16,
                                                                 "log_window": 64})
    clients = [sim.add_client(f"demo-{i}") for i in range(args.clients)]
    print(f"4 replicas (f = {sim.config.f}), {args.clients} clients, seed {args.seed}\n")

    deliveries = sim.run_workload(
        clients, args.requests, lambda c, i: kv_append(f"account-{c}", b"%d;" % i)
    )
    deliveries += sim.deliver_all()

    # A request whose signature is not its client's: every replica refuses it.
    mallory = ed25519_signer("mallory")
    forged = Request(kv_append("account-0", b"stolen;"), 10**15, clients[0].client, False,
                     mallory.sign(b"not the request"))
    for r in range(4):
        sim.inject(r, forged, source="mallory")
    deliveries += sim.deliver_all()

    print(f"{'replica':>7} {'role':>8} {'executed':>8} {'stable ckpt':>11} {'log':>4} "
          f"{'refused':>7}  state digest")
    for replica in sim.replicas:
        role = "primary" if replica.is_primary else "backup"
        refused = sum(replica.dropped.values())
        print(f"{replica.id:>7} {role:>8} {replica.last_executed:>8} "
              f"{replica.stable_checkpoint:>11} {replica.log_size():>4} {refused:>7}  "
              f"{replica.state_digest().hex()[:16]}")
    committed = sum(len(c.results) for c in clients)
    print(f"\n{committed} requests committed in {len(sim.executed[0])} batches, "
          f"{deliveries} message deliveries")
    reasons = sorted({reason for r in sim.replicas for reason in r.dropped})
    print("refusals by reason:", ", ".join(
        f"{reason} × {sum(r.dropped[reason] for r in sim.replicas)}" for reason in reasons))
    value = kv_decode_result(sim.apps[2].query(kv_get("account-0"), b""))[1]
    print(f"account-0 on replica 2: {value.decode()}")
    digests = {r.state_digest() for r in sim.replicas}
    assert len(digests) == 1, "replicas diverged"
    print("every replica holds the same state")
    violations = [v for check in CHECKERS for v in check(sim)]
    for violation in violations:
        print(f"VIOLATION {violation.checker}: {violation.message}")
    print(f"checkers ({', '.join(c.__name__ for c in CHECKERS)}): "
          f"{len(violations)} violations; trace {sim.trace_hash()}")
    assert not violations, "the checkers found a violation"


if __name__ == "__main__":
    from .__main__ import quiet_on_closed_pipe

    sys.exit(quiet_on_closed_pipe(main))
