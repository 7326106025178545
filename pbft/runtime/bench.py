"""`pbft bench`: the micro-benchmarks of the PBFT paper (Castro & Liskov, OSDI 1999 §6.2) on
4 replica processes over loopback TLS, with durable storage, against an unreplicated baseline.

Rows: a/r is the argument and result size in KB. `ordered` requests go through the three-phase
protocol; `read_only` ones take R1's unordered path (2f + 1 matching replies); `unreplicated`
is one trio process on the same TLS transport that checks each request's Ed25519 signature,
executes it and replies: the cost of the service without replication. Every request in every
row is signed by its client (Ed25519). Closed loop: each client identity has one request
outstanding and sends the next as soon as the result arrives; throughput is counted over
`--duration` seconds after a warm-up, latency is per request (submit → accepted result).

Output: a header line, the table of rows and, as the last line, one JSON object with, among
others, `ordered_0_0_requests_per_s` and `latency_ms_p50_single_client` (ordered 0/0 with one
client), all on stdout. Progress (a bar per row) goes to stderr, and only when stderr is a
terminal unless `--progress` is given.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from pbft import codec
from pbft.app import ExecutionContext
from pbft.codec import signing_payload
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.ed25519 import Ed25519Signer, Ed25519Verifier, read_key_file, write_key_file
from pbft.messages import Reply, Request

from ._errors import unwrap_single_error
from .cli_common import Progress, check_client_key, load_config, load_key, make_table, print_table
from .client import ClientError, connect, percentile
from .metrics import fetch
from .transport import Peer, Transport

__all__ = ["BenchmarkApp", "bench_operation", "run_bench"]

KB = 1024
#: (row prefix, read_only) × (argument KB, result KB), in the paper's order.
SIZES = ((0, 0), (0, 4), (4, 0))
WARMUP_S = 1.0
_OPERATION_TAG = b"B"


def bench_operation(argument_bytes: int, result_bytes: int) -> bytes:
    """An operation of `argument_bytes` bytes (at least 5) asking for a result of
    `result_bytes` bytes."""
    header = _OPERATION_TAG + result_bytes.to_bytes(4, "big")
    return header + bytes(max(0, argument_bytes - len(header)))


class BenchmarkApp:
    """The benchmark service: each operation returns a result of the size it asks for and
    counts itself. Deterministic; malformed operations get an empty result."""

    RESULT_BYTES_MAX = 1024 * 1024

    def __init__(self) -> None:
        self.executed = 0

    def _result(self, operation: bytes) -> bytes:
        if len(operation) < 5 or operation[:1] != _OPERATION_TAG:
            return b""
        size = int.from_bytes(operation[1:5], "big")
        return bytes(min(size, self.RESULT_BYTES_MAX))

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        self.executed += 1
        return self._result(operation)

    def query(self, operation: bytes, client: bytes) -> bytes:
        return self._result(operation)

    def snapshot(self) -> bytes:
        return self.executed.to_bytes(8, "big")

    def restore(self, snapshot: bytes) -> None:
        if len(snapshot) != 8:
            raise ValueError("not a benchmark snapshot")
        self.executed = int.from_bytes(snapshot, "big")

    def digest(self) -> bytes:
        from pbft.crypto import sha256

        return sha256(self.snapshot())


# ---------------------------------------------------------------------------- measurement


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time used so far by process `pid` (this process if None), all its threads included,
    ended ones too: the kernel's exact per-process CPU clock (Linux: clock id (~pid << 3) | 2),
    not the tick-sampled user/system times of /proc, which overcharge processes that wake on
    timers. NaN if the clock cannot be read (another OS, a process gone)."""
    if pid is None:
        return time.process_time()
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        return math.nan


@dataclass
class Row:
    name: str
    clients: int
    completed: int = 0
    failed: int = 0
    duration_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    #: CPU seconds used during the window: by the client process, and by the server processes.
    client_cpu_s: float = math.nan
    server_cpu_s: float = math.nan
    #: Requests per batch (PRE-PREPARE) over the row, replicated rows only.
    batch_size_mean: float = math.nan

    def cpu_ms_per_request(self, cpu_s: float) -> float:
        return cpu_s / self.completed * 1000 if self.completed else math.nan

    @property
    def requests_per_s(self) -> float:
        return self.completed / self.duration_s if self.duration_s else 0.0

    def latency_ms(self, q: float) -> float:
        return percentile(self.latencies_s, q) * 1000


#: The progress of the row being measured (`Progress` off: nothing is drawn).
_progress = Progress(False)


async def _closed_loop(call, clients: int, duration_s: float, name: str,
                       server_pids: list[int]) -> Row:  # fmt: skip
    """Run `clients` workers calling `await call(worker)` in a loop; measure a window of
    `duration_s` after `WARMUP_S`, and the CPU time this process and `server_pids` use in it."""
    row = Row(name, clients)
    measuring = False
    task = _progress.task(f"{name:<18} (s)", WARMUP_S + duration_s)

    async def show_progress() -> None:
        began = trio.current_time()
        while True:
            task.update(round(trio.current_time() - began, 1))
            await trio.sleep(0.2)

    async def worker(index: int) -> None:
        while True:
            started = time.perf_counter()
            try:
                await call(index)
            except (ClientError, trio.TooSlowError):
                if measuring:
                    row.failed += 1
                continue
            if measuring:
                row.completed += 1
                row.latencies_s.append(time.perf_counter() - started)

    async with trio.open_nursery() as nursery:
        if _progress.enabled:
            nursery.start_soon(show_progress)
        for index in range(clients):
            nursery.start_soon(worker, index)
        await trio.sleep(WARMUP_S)
        measuring = True
        client_cpu, server_cpu = cpu_seconds(), sum(cpu_seconds(pid) for pid in server_pids)
        started = time.perf_counter()
        await trio.sleep(duration_s)
        measuring = False
        row.duration_s = time.perf_counter() - started
        row.client_cpu_s = cpu_seconds() - client_cpu
        row.server_cpu_s = sum(cpu_seconds(pid) for pid in server_pids) - server_cpu
        nursery.cancel_scope.cancel()
    task.update(task.total)
    return row


async def measure_replicated(config: ClusterConfig, signers, *, read_only: bool,
                             argument_kb: int, result_kb: int, duration_s: float,
                             name: str, server_pids: list[int],
                             connect_timeout_s: float = 10.0) -> Row:  # fmt: skip
    operation = bench_operation(argument_kb * KB, result_kb * KB)
    async with connect(config, signers, timeout_s=30.0,
                       wait_connected_s=connect_timeout_s) as client:  # fmt: skip
        call = client.query if read_only else client.submit

        async def one(index: int) -> None:
            await call(operation)

        row = await _closed_loop(one, len(signers), duration_s, name, server_pids)
    return row


async def measure_unreplicated(server: ReplicaInfo, signers, *, argument_kb: int,
                               result_kb: int, duration_s: float, name: str,
                               server_pids: list[int]) -> Row:  # fmt: skip
    """The same closed loop against the unreplicated server, with the same client costs: a
    signed request per call, one TLS connection carrying every identity's requests."""
    operation = bench_operation(argument_kb * KB, result_kb * KB)
    config = _baseline_config(server)
    transport = Transport(
        signers[0], peers=[server], accept_peer=lambda key: None,
        limits=codec.Limits.from_config(config), rng=random.Random(0),
    )  # fmt: skip
    timestamps = [time.time_ns() // 1000] * len(signers)
    waiting: dict[tuple[bytes, int], trio.Event] = {}

    async def receive_replies() -> None:
        while True:
            for peer, reply in await transport.wait_messages(1024):
                if type(reply) is Reply and peer.replica_id == server.id:
                    event = waiting.pop((reply.client, reply.timestamp), None)
                    if event is not None:
                        event.set()

    async def one(index: int) -> None:
        signer = signers[index]
        timestamps[index] += 1
        unsigned = Request(operation, timestamps[index], signer.public_key, False, b"")
        request = Request(operation, timestamps[index], signer.public_key, False,
                          signer.sign(signing_payload(unsigned)))  # fmt: skip
        event = waiting[(signer.public_key, request.timestamp)] = trio.Event()
        transport.send(server.id, request)
        with trio.fail_after(10):
            await event.wait()

    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve, None)
        nursery.start_soon(receive_replies)
        with trio.fail_after(10):
            await transport.wait_connected(server.id)
        row = await _closed_loop(one, len(signers), duration_s, name, server_pids)
        nursery.cancel_scope.cancel()
    return row


def _baseline_config(server: ReplicaInfo) -> ClusterConfig:
    """A configuration only for the codec bounds and the transport's address book."""
    others = [ReplicaInfo(i, bytes([i]) * 32, "127.0.0.1", 0) for i in range(1, 4)]
    return ClusterConfig.create([server, *others])


async def serve_unreplicated(signer: Ed25519Signer, port: int, *,
                             task_status=trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
    """The baseline: accept any client, check each request's signature, execute, reply."""
    server = ReplicaInfo(0, signer.public_key, "127.0.0.1", port)
    config = _baseline_config(server)
    transport = Transport(
        signer, peers=[], accept_peer=lambda key: Peer(key), limits=codec.Limits.from_config(config),
        rng=random.Random(0),
    )  # fmt: skip
    app = BenchmarkApp()
    verifier = Ed25519Verifier()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(transport.serve, "127.0.0.1", port)
        task_status.started(bound)
        sequence = 0
        while True:
            try:
                batch = await transport.wait_messages(1024)
            except trio.EndOfChannel:
                return
            for peer, request in batch:
                if type(request) is not Request:
                    continue
                if not verifier.verify(request.client, signing_payload(request),
                                       request.signature):  # fmt: skip
                    continue
                sequence += 1
                if request.read_only:
                    result = app.query(request.operation, request.client)
                else:
                    result = app.execute(request.operation,
                                         ExecutionContext(sequence, request.client, 0))  # fmt: skip
                transport.send_to_client(
                    peer.public_key,
                    Reply(0, request.timestamp, request.client, 0, result, request.read_only),
                )


# ---------------------------------------------------------------------------- the command


async def _measure_row(config: ClusterConfig, signers, name: str, committed, *,
                       duration_s: float, server_pids: list[int],
                       connect_timeout_s: float = 10.0) -> Row:
    """Measure the replicated row `name` ("single_client", or KIND_A_R: ordered or read_only,
    argument and result KiB), with its mean batch size from `committed()` (an awaitable of
    (requests, batches) committed so far, or None when unknown) before and after."""
    if name == "single_client":
        kind, a, r, group = "ordered", 0, 0, signers[:1]
    else:
        kind, a, r = name.rsplit("_", 2)
        a, r, group = int(a), int(r), signers
    before = await committed()
    row = await measure_replicated(
        config, group, read_only=kind == "read_only", argument_kb=a, result_kb=r,
        duration_s=duration_s, name=name, server_pids=server_pids,
        connect_timeout_s=connect_timeout_s,
    )  # fmt: skip
    after = await committed()
    if before and after and after[1] > before[1]:
        row.batch_size_mean = (after[0] - before[0]) / (after[1] - before[1])
    return row


def _rows_wanted(only: str | None) -> list[str]:
    names = [f"{kind}_{a}_{r}" for kind in ("ordered", "read_only") for a, r in SIZES]
    names += [f"unreplicated_{a}_{r}" for a, r in SIZES]
    names.append("single_client")
    if only is None:
        return names
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"--only: unknown rows {', '.join(unknown)}; rows are {', '.join(names)}")
    return [name for name in names if name in wanted]


def run_bench(args: argparse.Namespace) -> int:
    global _progress

    wanted = _rows_wanted(args.only)
    if args.clients < 1 or args.duration <= 0:
        raise ValueError("--clients must be at least 1 and --duration positive")
    with Progress(True if getattr(args, "progress", False) else None) as progress:
        _progress = progress
        try:
            if getattr(args, "config", None):
                return _bench_existing(args, wanted)
            return _bench_local(args, wanted)
        finally:
            _progress = Progress(False)


def _bench_local(args: argparse.Namespace, wanted: list[str]) -> int:
    from .cluster import LocalCluster, generate_cluster

    clients = args.clients
    with tempfile.TemporaryDirectory(prefix="pbft-bench-", dir=args.dir) as tmp:
        directory = Path(tmp)
        files = generate_cluster(directory / "cluster", replicas=4, clients=clients)
        signers = files.client_signers()
        print(f"pbft bench: 4 replica processes on 127.0.0.1 (TLS 1.3, SQLite "
              f"synchronous={args.synchronous}, appends in the {args.persist}), {clients} "
              f"closed-loop clients, {args.duration:g} s per row after {WARMUP_S:g} s warm-up; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
              flush=True)  # fmt: skip
        rows: list[Row] = []

        async def run() -> None:
            replicated = [name for name in wanted if not name.startswith("unreplicated")]
            if replicated:
                replica_args = ["--app", "bench", "--synchronous", args.synchronous,
                                "--persist", args.persist]  # fmt: skip
                async with LocalCluster(files, replica_args=replica_args) as cluster:
                    cluster.start_all()
                    await cluster.wait_all_ready()
                    for name in replicated:
                        rows.append(await _measure_row(
                            files.config, signers, name, functools.partial(_committed, cluster),
                            duration_s=args.duration,
                            server_pids=[p.pid for p in cluster.processes.values()],
                        ))  # fmt: skip
                    cluster.stop_all()
            baseline = [name for name in wanted if name.startswith("unreplicated")]
            if baseline:
                await _run_baseline(directory, baseline, signers, args.duration, rows)

        with unwrap_single_error():
            trio.run(run)
    _print_table(rows)
    summary = _summary(rows, clients, args.duration)
    summary["synchronous"] = args.synchronous
    print(json.dumps(summary))
    return 0


def _bench_existing(args: argparse.Namespace, wanted: list[str]) -> int:
    """`pbft bench --config FILE`: the replicated rows against the running cluster of FILE,
    from this host, with the client keys of --client-keys (default: keys/ beside FILE; with
    open admission and no key files, fresh keys). The unreplicated rows need a local server
    and are refused; CPU per request is measured for the client only (the servers are not
    this host's processes). Raises ValueError for unusable arguments, ConfigError for an
    invalid configuration."""
    from .cluster import metrics_address_of

    config = load_config(args.config)
    if args.only is None:
        wanted = [name for name in wanted if not name.startswith("unreplicated")]
    elif any(name.startswith("unreplicated") for name in wanted):
        raise ValueError("--config: the unreplicated rows run a local server; leave them out")
    key_dir = Path(args.client_keys) if args.client_keys else Path(args.config).parent / "keys"
    if args.client_keys and not key_dir.is_dir():
        raise ValueError(f"--client-keys {key_dir}: no such directory")
    key_paths = sorted(key_dir.glob("client-*.key"), key=lambda p: int(p.stem.split("-")[1]))
    signers = [load_key(path, "--client-keys") for path in key_paths[:args.clients]]
    for path, signer in zip(key_paths, signers):
        check_client_key(signer.public_key, config, f"--client-keys {path}")
    if len(signers) < args.clients:
        if config.clients:
            raise ValueError(f"--clients {args.clients}: {key_dir} holds {len(signers)} client "
                             "keys and the cluster admits only its listed clients")  # fmt: skip
        signers += [Ed25519Signer.generate() for _ in range(args.clients - len(signers))]
    print(f"pbft bench: the running cluster of {args.config} (n = {config.n}), "
          f"{len(signers)} closed-loop clients, {args.duration:g} s per row after "
          f"{WARMUP_S:g} s warm-up", flush=True)  # fmt: skip
    rows: list[Row] = []

    async def committed() -> tuple[int, int] | None:
        """(requests, batches) committed at the first backup that answers, None if none."""
        for info in config.replicas:
            try:
                host, port = metrics_address_of(info)
                status = json.loads(await fetch(host, port, "/status"))
                if status.get("primary") == info.id:
                    continue
                return _committed_counts((await fetch(host, port, "/metrics")).decode())
            except (OSError, ValueError, KeyError, trio.TooSlowError):
                continue
        return None

    async def run() -> None:
        for name in wanted:
            row = await _measure_row(config, signers, name, committed, duration_s=args.duration,
                                     server_pids=[], connect_timeout_s=args.connect_timeout)
            row.server_cpu_s = math.nan
            rows.append(row)

    with unwrap_single_error():
        trio.run(run)
    _print_table(rows)
    print(json.dumps(_summary(rows, len(signers), args.duration)))
    return 0


def _committed_counts(metrics_text: str) -> tuple[int, int]:
    values = {}
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("pbft_requests_committed_total", "pbft_batches_committed_total"):
            values[name] = int(float(value))
    return values["pbft_requests_committed_total"], values["pbft_batches_committed_total"]


async def _committed(cluster) -> tuple[int, int]:
    """(requests, batches) committed so far at replica 1 (a backup in view 0)."""
    return _committed_counts(await cluster.metrics(1))


async def _run_baseline(directory: Path, names: list[str], signers, duration_s: float,
                        rows: list[Row]) -> None:  # fmt: skip
    """The unreplicated server runs in its own process, as each replica does."""
    from .cluster import free_ports

    key_path = directory / "baseline.key"
    server_signer = Ed25519Signer.generate()
    write_key_file(key_path, server_signer)
    [port] = free_ports(1)
    process = _spawn_baseline(directory, key_path, port)
    try:
        server = ReplicaInfo(0, server_signer.public_key, "127.0.0.1", port)
        for name in names:
            _, a, r = name.rsplit("_", 2)
            row = await measure_unreplicated(server, signers, argument_kb=int(a),
                                             result_kb=int(r), duration_s=duration_s,
                                             name=name, server_pids=[process.pid])  # fmt: skip
            rows.append(row)
    finally:
        process.kill()
        process.wait()


def _spawn_baseline(directory: Path, key_path: Path, port: int) -> subprocess.Popen:
    with open(directory / "baseline.log", "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "pbft.runtime.bench", "serve-baseline", str(key_path),
             str(port)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
        )  # fmt: skip


def _print_table(rows: list[Row]) -> None:
    columns = ["benchmark", "clients", "requests/s", "p50 ms", "p99 ms", "failed", "batch",
               "CPU ms/req client", "CPU ms/req servers"]  # fmt: skip
    table_rows = [
        [row.name, row.clients, f"{row.requests_per_s:,.0f}", f"{row.latency_ms(0.5):.2f}",
         f"{row.latency_ms(0.99):.2f}", row.failed, f"{row.batch_size_mean:.1f}",
         f"{row.cpu_ms_per_request(row.client_cpu_s):.3f}",
         f"{row.cpu_ms_per_request(row.server_cpu_s):.3f}"]
        for row in rows
    ]  # fmt: skip
    print()
    print_table(make_table(columns, table_rows, numeric=[False] + [True] * 8))


def _summary(rows: list[Row], clients: int, duration_s: float) -> dict:
    summary: dict[str, object] = {"clients": clients, "duration_s": duration_s,
                                  "cpus": os.cpu_count(),
                                  "load_average_1m": round(os.getloadavg()[0], 2)}  # fmt: skip
    for row in rows:
        if row.name == "single_client":
            summary["latency_ms_p50_single_client"] = _round(row.latency_ms(0.5))
            summary["latency_ms_p99_single_client"] = _round(row.latency_ms(0.99))
            summary["single_client_requests_per_s"] = round(row.requests_per_s)
            continue
        summary[f"{row.name}_requests_per_s"] = round(row.requests_per_s)
        summary[f"{row.name}_latency_ms_p50"] = _round(row.latency_ms(0.5))
        summary[f"{row.name}_latency_ms_p99"] = _round(row.latency_ms(0.99))
    return summary


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def _main(argv: list[str]) -> int:
    """`python -m pbft.runtime.bench serve-baseline KEY_FILE PORT`: the baseline server."""
    if len(argv) != 3 or argv[0] != "serve-baseline":
        print("usage: python -m pbft.runtime.bench serve-baseline KEY_FILE PORT", file=sys.stderr)
        return 2
    signer = read_key_file(argv[1])
    try:
        trio.run(functools.partial(serve_unreplicated, signer, int(argv[2])))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
