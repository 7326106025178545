"""Speed of the deterministic simulator (issue 4): message deliveries per wall second, and the
ratio of virtual to wall time, for 4 replicas under 100 requests per second of client load.

The workload is the simulator's default (1-5 ms links, no faults, the real `pbft.core` replicas
and client sessions, `kv_append` operations): `--clients` closed-loop clients whose think time is
calibrated by a short pilot run so that together they submit `--rate` requests per (virtual)
second, for `--virtual-s` seconds. It runs once with the fast insecure signer (SHA-512 stand-in)
and once with real Ed25519. Targets (issue 4): at least 100,000 deliveries per wall second and
at least 100x real time, with the insecure signer.

    python benchmarks/simulator_speed.py [--virtual-s 60] [--rate 100] [--clients 10]
                                         [--seed 1] [--profile 25] [--no-ed25519]

Prints a table (and with --profile, where the time goes), then one JSON object as its last line
with at least `deliveries_per_s` and `virtual_to_wall_ratio` (insecure signer). Wall time is what
the targets are about; CPU time of this process is printed beside it, since a loaded machine
inflates wall time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import time

from simulations.engine import Simulation

TARGET_DELIVERIES_PER_S = 100_000
TARGET_VIRTUAL_TO_WALL = 100.0


def _simulation(seed: int, clients: int, think_ms: float, requests: int,
                insecure: bool) -> Simulation:
    return Simulation(seed=seed, clients=clients, requests_per_client=requests,
                      think_ms=think_ms, insecure_signatures=insecure)


def calibrate_think_ms(seed: int, clients: int, rate: float) -> tuple[float, float]:
    """Think time that makes `clients` closed-loop clients submit `rate` requests per second:
    one client's cycle is clients / rate seconds, of which the request's latency (measured by a
    5 s pilot run) is not thinking. Returns (think_ms, latency_ms)."""
    cycle_ms = 1000.0 * clients / rate
    pilot = _simulation(seed, clients, cycle_ms, 10_000, True)
    pilot.run(until_ms=5_000, liveness_bound_ms=10_000)
    latencies = [(done - invoked) / 1000 for c in pilot.clients
                 for _, invoked, done, _ in c.record.operations if done is not None]
    latency_ms = sum(latencies) / len(latencies)
    return max(cycle_ms - latency_ms, 0.0), latency_ms


def measure(seed: int, clients: int, think_ms: float, virtual_s: float, rate: float,
            insecure: bool) -> dict:
    """One run of `virtual_s` virtual seconds; clients never run out of requests before that."""
    requests = int(2 * rate * virtual_s / clients) + 10
    sim = _simulation(seed, clients, think_ms, requests, insecure)
    gc.collect()
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    sim.run(until_ms=virtual_s * 1000, liveness_bound_ms=virtual_s * 1000 + 1)
    wall_s = time.perf_counter() - wall_started
    cpu_s = time.process_time() - cpu_started
    virtual = sim.now_us / 1e6
    return {
        "signer": "insecure" if insecure else "ed25519",
        "virtual_s": round(virtual, 3), "wall_s": round(wall_s, 3), "cpu_s": round(cpu_s, 3),
        "committed": sim.committed(), "requests_per_s": round(sim.committed() / virtual, 1),
        "deliveries": sim.deliveries, "events": sim.events,
        "deliveries_per_s": round(sim.deliveries / wall_s),
        "deliveries_per_cpu_s": round(sim.deliveries / cpu_s),
        "virtual_to_wall_ratio": round(virtual / wall_s, 1),
        "virtual_to_cpu_ratio": round(virtual / cpu_s, 1),
        "deliveries_per_request": round(sim.deliveries / max(sim.committed(), 1), 1),
        "trace_hash": sim.trace_hash(),
    }


def _area(filename: str) -> str:
    path = filename.replace(os.sep, "/")
    for marker, area in (("/simulations/", "simulator (engine, network, storage)"),
                         ("/pbft/core/", "pbft.core (replica, client, log)"),
                         ("/pbft/codec", "pbft.codec (signing payloads, digests)"),
                         ("/pbft/app", "application (KeyValueStore)"),
                         ("/msgpack/", "msgpack"), ("/pbft/", "pbft (other)")):
        if marker in path:
            return area
    if filename.startswith("~") or "{" in filename:
        return "builtins (hashlib, heapq, dict, ...)"
    return "stdlib (random, dataclasses, ...)"


def profile(seed: int, clients: int, think_ms: float, virtual_s: float, rate: float,
            top: int) -> None:
    """Where the time of the insecure run goes: by area (own time), then the top functions."""
    requests = int(2 * rate * virtual_s / clients) + 10
    sim = _simulation(seed, clients, think_ms, requests, True)
    profiler = cProfile.Profile()
    profiler.enable()
    sim.run(until_ms=virtual_s * 1000, liveness_bound_ms=virtual_s * 1000 + 1)
    profiler.disable()
    stats = pstats.Stats(profiler)
    by_area: dict[str, float] = {}
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        by_area[_area(filename)] = by_area.get(_area(filename), 0.0) + tottime
        total += tottime
    print(f"\nwhere the time goes (insecure signer, cProfile own time, {total:.2f} s profiled):")
    for area, seconds in sorted(by_area.items(), key=lambda item: -item[1]):
        print(f"  {area:<42} {seconds:6.2f} s  {100 * seconds / total:5.1f}%")
    print(f"\ntop {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--virtual-s", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="aggregate requests per second")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile the insecure run and print the top N functions")
    parser.add_argument("--no-ed25519", action="store_true", help="skip the Ed25519 run")
    args = parser.parse_args()

    think_ms, latency_ms = calibrate_think_ms(args.seed, args.clients, args.rate)
    rows = [measure(args.seed, args.clients, think_ms, args.virtual_s, args.rate, True)]
    if not args.no_ed25519:
        rows.append(measure(args.seed, args.clients, think_ms, args.virtual_s, args.rate, False))

    print(f"simulator speed: 4 replicas, {args.clients} closed-loop clients, "
          f"think {think_ms:.1f} ms (request latency {latency_ms:.1f} ms) for {args.rate:g} "
          f"requests/s, {args.virtual_s:g} s of virtual time, seed {args.seed}")
    header = (f"{'signer':<9} {'virtual s':>9} {'wall s':>7} {'cpu s':>6} {'req/s':>6} "
              f"{'deliveries':>10} {'per req':>7} {'deliv/wall s':>12} {'deliv/cpu s':>11} "
              f"{'virt/wall':>9} {'virt/cpu':>8}")
    print(header)
    for r in rows:
        print(f"{r['signer']:<9} {r['virtual_s']:>9.1f} {r['wall_s']:>7.2f} {r['cpu_s']:>6.2f} "
              f"{r['requests_per_s']:>6.1f} {r['deliveries']:>10} "
              f"{r['deliveries_per_request']:>7.1f} {r['deliveries_per_s']:>12,} "
              f"{r['deliveries_per_cpu_s']:>11,} {r['virtual_to_wall_ratio']:>8.1f}x "
              f"{r['virtual_to_cpu_ratio']:>7.1f}x")
    insecure = rows[0]
    fast_enough = insecure["deliveries_per_s"] >= TARGET_DELIVERIES_PER_S
    real_time_enough = insecure["virtual_to_wall_ratio"] >= TARGET_VIRTUAL_TO_WALL
    print(f"targets (insecure signer): >= {TARGET_DELIVERIES_PER_S:,} deliveries/s: "
          f"{insecure['deliveries_per_s']:,} ({'met' if fast_enough else 'NOT met'}); "
          f">= {TARGET_VIRTUAL_TO_WALL:g}x real time: {insecure['virtual_to_wall_ratio']}x "
          f"({'met' if real_time_enough else 'NOT met'})")
    if hasattr(os, "getloadavg"):
        print(f"load average while measuring: {os.getloadavg()[0]:.2f} "
              f"({os.cpu_count()} CPUs); wall figures suffer from other load, cpu figures less")
    if args.profile:
        profile(args.seed, args.clients, think_ms, args.virtual_s, args.rate, args.profile)

    summary = {
        "deliveries_per_s": insecure["deliveries_per_s"],
        "virtual_to_wall_ratio": insecure["virtual_to_wall_ratio"],
        "deliveries_per_cpu_s": insecure["deliveries_per_cpu_s"],
        "virtual_to_cpu_ratio": insecure["virtual_to_cpu_ratio"],
        "requests_per_s": insecure["requests_per_s"],
        "deliveries_per_request": insecure["deliveries_per_request"],
        "targets": {"deliveries_per_s": TARGET_DELIVERIES_PER_S,
                    "virtual_to_wall_ratio": TARGET_VIRTUAL_TO_WALL},
        "meets_targets": fast_enough and real_time_enough,
        "runs": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
