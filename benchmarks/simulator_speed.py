"""Speed of the deterministic simulator (issue 4): message deliveries per wall second, and the
ratio of virtual to wall time, for 4 replicas under 100 requests per second of client load.

The workload is the simulator's default (1-5 ms links, no faults, the real `pbft.core` replicas
and client sessions, `kv_append` operations): `--clients` closed-loop clients whose think time is
calibrated by a short pilot run so that together they submit `--rate` requests per (virtual)
second, for `--virtual-s` seconds. It runs with the fast insecure signer (SHA-512 stand-in)
and with real Ed25519, each in two configurations:

- `default`: the cluster configuration as shipped (`batch_delay_ms = 0`: the primary closes a
  batch at once when none is in flight, so at this light load most batches hold one request);
- `batching`: the same with `batch_delay_ms = --batch-delay-ms` (N2 with a batching delay, as
  BFT-SMaRt offers): fewer, fuller batches, hence fewer deliveries per request, for that much
  more latency (the pilot run calibrates the think time again, so the load stays the same).

Targets (issue 4): at least 100,000 deliveries per wall second and at least 100x real time, with
the insecure signer. The headline figures (`deliveries_per_s`, `virtual_to_wall_ratio`) are
those of the insecure signer in the default configuration; `headline_configuration` says so, and
`batching` holds the same figures with the batching delay, with its own `meets_targets`.

    python benchmarks/simulator_speed.py [--virtual-s 60] [--rate 100] [--clients 10]
                                         [--seed 1] [--batch-delay-ms 50] [--profile 25]
                                         [--no-ed25519]

Prints a table (and with --profile, where the time goes in the default configuration), then one
JSON object as its last line. Wall time is what the targets are about; CPU time of this process
is printed beside it, since a loaded machine inflates wall time.
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
                insecure: bool, batch_delay_ms: int = 0) -> Simulation:
    return Simulation(seed=seed, clients=clients, requests_per_client=requests,
                      think_ms=think_ms, insecure_signatures=insecure,
                      config_overrides={"batch_delay_ms": batch_delay_ms})


def calibrate_think_ms(seed: int, clients: int, rate: float,
                       batch_delay_ms: int = 0) -> tuple[float, float]:
    """Think time that makes `clients` closed-loop clients submit `rate` requests per second:
    one client's cycle is clients / rate seconds, of which the request's latency (measured by a
    5 s pilot run) is not thinking. Returns (think_ms, latency_ms)."""
    cycle_ms = 1000.0 * clients / rate
    pilot = _simulation(seed, clients, cycle_ms, 10_000, True, batch_delay_ms)
    pilot.run(until_ms=5_000, liveness_bound_ms=10_000)
    latencies = [(done - invoked) / 1000 for c in pilot.clients
                 for _, invoked, done, _ in c.record.operations if done is not None]
    latency_ms = sum(latencies) / len(latencies)
    return max(cycle_ms - latency_ms, 0.0), latency_ms


def measure(seed: int, clients: int, think_ms: float, virtual_s: float, rate: float,
            insecure: bool, batch_delay_ms: int = 0) -> dict:
    """One run of `virtual_s` virtual seconds; clients never run out of requests before that."""
    requests = int(2 * rate * virtual_s / clients) + 10
    sim = _simulation(seed, clients, think_ms, requests, insecure, batch_delay_ms)
    gc.collect()
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    sim.run(until_ms=virtual_s * 1000, liveness_bound_ms=virtual_s * 1000 + 1)
    wall_s = time.perf_counter() - wall_started
    cpu_s = time.process_time() - cpu_started
    virtual = sim.now_us / 1e6
    return {
        "signer": "insecure" if insecure else "ed25519",
        "configuration": "batching" if batch_delay_ms else "default",
        "batch_delay_ms": batch_delay_ms, "think_ms": round(think_ms, 1),
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


def _meets(row: dict) -> tuple[bool, bool]:
    return (row["deliveries_per_s"] >= TARGET_DELIVERIES_PER_S,
            row["virtual_to_wall_ratio"] >= TARGET_VIRTUAL_TO_WALL)


def _figures(row: dict) -> dict:
    keys = ("deliveries_per_s", "virtual_to_wall_ratio", "deliveries_per_cpu_s",
            "virtual_to_cpu_ratio", "requests_per_s", "deliveries_per_request")
    fast_enough, real_time_enough = _meets(row)
    return {**{k: row[k] for k in keys}, "batch_delay_ms": row["batch_delay_ms"],
            "meets_targets": fast_enough and real_time_enough}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--virtual-s", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="aggregate requests per second")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-delay-ms", type=int, default=50,
                        help="batch_delay_ms of the batching configuration (must be > 0)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile the insecure run and print the top N functions")
    parser.add_argument("--no-ed25519", action="store_true", help="skip the Ed25519 runs")
    args = parser.parse_args()
    if args.batch_delay_ms <= 0:
        parser.error("--batch-delay-ms must be positive (the default configuration has 0)")

    configurations = [("default", 0), ("batching", args.batch_delay_ms)]
    calibration = {delay: calibrate_think_ms(args.seed, args.clients, args.rate, delay)
                   for _, delay in configurations}
    rows = []
    for insecure in (True, False) if not args.no_ed25519 else (True,):
        for _, delay in configurations:
            think_ms = calibration[delay][0]
            rows.append(measure(args.seed, args.clients, think_ms, args.virtual_s, args.rate,
                                insecure, delay))

    print(f"simulator speed: 4 replicas, {args.clients} closed-loop clients for {args.rate:g} "
          f"requests/s, {args.virtual_s:g} s of virtual time, seed {args.seed}")
    for name, delay in configurations:
        think_ms, latency_ms = calibration[delay]
        print(f"  {name:<9} batch_delay_ms={delay:<4} think {think_ms:.1f} ms "
              f"(request latency {latency_ms:.1f} ms)")
    header = (f"{'signer':<9} {'config':<9} {'virtual s':>9} {'wall s':>7} {'cpu s':>6} "
              f"{'req/s':>6} {'deliveries':>10} {'per req':>7} {'deliv/wall s':>12} "
              f"{'deliv/cpu s':>11} {'virt/wall':>9} {'virt/cpu':>8}")
    print(header)
    for r in rows:
        print(f"{r['signer']:<9} {r['configuration']:<9} {r['virtual_s']:>9.1f} "
              f"{r['wall_s']:>7.2f} {r['cpu_s']:>6.2f} "
              f"{r['requests_per_s']:>6.1f} {r['deliveries']:>10} "
              f"{r['deliveries_per_request']:>7.1f} {r['deliveries_per_s']:>12,} "
              f"{r['deliveries_per_cpu_s']:>11,} {r['virtual_to_wall_ratio']:>8.1f}x "
              f"{r['virtual_to_cpu_ratio']:>7.1f}x")
    insecure, batching = rows[0], rows[1]
    for label, row in (("default configuration (headline)", insecure),
                       (f"batching configuration (batch_delay_ms={args.batch_delay_ms})",
                        batching)):
        fast_enough, real_time_enough = _meets(row)
        print(f"targets, insecure signer, {label}: "
              f">= {TARGET_DELIVERIES_PER_S:,} deliveries/s: {row['deliveries_per_s']:,} "
              f"({'met' if fast_enough else 'NOT met'}); "
              f">= {TARGET_VIRTUAL_TO_WALL:g}x real time: {row['virtual_to_wall_ratio']}x "
              f"({'met' if real_time_enough else 'NOT met'})")
    if hasattr(os, "getloadavg"):
        print(f"load average while measuring: {os.getloadavg()[0]:.2f} "
              f"({os.cpu_count()} CPUs); wall figures suffer from other load, cpu figures less")
    if args.profile:
        profile(args.seed, args.clients, calibration[0][0], args.virtual_s, args.rate,
                args.profile)

    headline = _figures(insecure)
    summary = {
        **{k: v for k, v in headline.items() if k != "batch_delay_ms"},
        "headline_configuration": "default (batch_delay_ms=0), insecure signer",
        "targets": {"deliveries_per_s": TARGET_DELIVERIES_PER_S,
                    "virtual_to_wall_ratio": TARGET_VIRTUAL_TO_WALL},
        "batching": _figures(batching),
        "runs": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
