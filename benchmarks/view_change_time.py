"""How long a view change takes on 4 replicas once the network is stable, in the simulator's
virtual time on a random-order network (each message delivery takes --ms-per-delivery of
virtual time).

The primary crashes with client requests in flight; the clock starts when the first backup
sends its VIEW-CHANGE and stops when every correct replica has installed the new view. The
target (issue: complete protocol) is at most two view-change timeouts.

    python benchmarks/view_change_time.py [--seeds 20] [--ms-per-delivery 1]

Prints a table, then one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import statistics

from pbft.app import kv_append

from simulations.engine import random_order_cluster
from simulations.network import NetworkProfile

TIMEOUTS = {"request_timeout_ms": 500, "view_change_timeout_ms": 1_000,
            "client_retry_timeout_ms": 200}


def one_view_change(seed: int, ms_per_delivery: int) -> dict:
    sim = random_order_cluster(
        seed=seed, config_overrides=TIMEOUTS,
        network=NetworkProfile(random_order=True, ms_per_delivery=ms_per_delivery))
    clients = [sim.add_client(f"c{i}") for i in range(4)]
    sim.run_workload(clients, 5, lambda c, i: kv_append(f"k{c}", b"%d" % i))
    sim.deliver_all()  # every replica up to date: the clock measures the view change alone
    sim.crash(0)
    backups = sim.replicas[1:]
    started = None

    def installed() -> bool:
        nonlocal started
        if started is None and any(not r.view_active for r in backups):
            started = sim.now_ms
        return started is not None and all(r.view_active and r.view == 1 for r in backups)

    for client in clients:
        sim.submit(client, kv_append("after-crash", b"x"))
    if not sim.run_until(installed, within_ms=60_000):
        raise RuntimeError(f"seed {seed}: no new view after 60 s of virtual time")
    view_change_ms = sim.now_ms - started
    if not sim.run_until(lambda: all(c.done for c in clients), within_ms=60_000):
        raise RuntimeError(f"seed {seed}: requests unanswered in the new view")
    return {"seed": seed, "view_change_ms": view_change_ms,
            "view_changes": sum(r.view_changes_started for r in backups)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--ms-per-delivery", type=int, default=1)
    args = parser.parse_args()
    rows = [one_view_change(seed, args.ms_per_delivery) for seed in range(1, args.seeds + 1)]
    bound = 2 * TIMEOUTS["view_change_timeout_ms"]
    print(f"view-change timeout T = {TIMEOUTS['view_change_timeout_ms']} ms; "
          f"bound 2T = {bound} ms; {args.ms_per_delivery} ms of virtual time per delivery")
    print(f"{'seed':>5} {'view change ms':>15} {'VIEW-CHANGEs sent':>18}")
    for r in rows:
        print(f"{r['seed']:>5} {r['view_change_ms']:>15} {r['view_changes']:>18}")
    times = [r["view_change_ms"] for r in rows]
    figures = {
        "view_change_ms_p50": statistics.median(times),
        "view_change_ms_max": max(times),
        "bound_ms": bound,
        "within_bound": max(times) <= bound,
        "seeds": len(rows),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
