"""The `pbft` command: keys and configuration, replica processes, local clusters, a shell
client, status, bench.

    pbft keygen  --replicas 4 --clients N --out DIR       configuration (admitting just these
                 [--open-admission] [--hosts a,b,c,d]     clients) + key files (mode 0600);
                 [--free-ports]                           ports free here, for pbft cluster --dir
    pbft replica --config FILE --id N --key FILE --data DIR
    pbft cluster --replicas 4 [--dir DIR] [--keep]        a local cluster until Ctrl-C / SIGTERM /
                                                          SIGHUP, or until a replica dies
    pbft submit  --config FILE --key FILE put K V         order an operation (key-value verbs or
    pbft query   --config FILE --key FILE get K           raw bytes), print its decoded result
    pbft status  --config FILE [--wait S]                 each replica's progress, lag, state
                                                          digest and health (--wait: until a
                                                          quorum is healthy, at most S s)
    pbft bench   [--duration S] [--clients N]             the PBFT paper's micro-benchmarks
                 [--config FILE]                          (on a running cluster)

Exit codes: 0 success, 1 a runtime failure (storage corrupt, replica unreachable, port in use,
a replica died, ...), 2 bad usage or configuration. Errors are one line on stderr naming what
failed (the file, the address); a reader of stdout that goes away (`--json | head`) ends the
command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from pbft import config as config_module
from pbft.app import KeyValueStore, StateMachine
from pbft.config import BOUND_NAMES, ConfigError
from pbft.ed25519 import KeyFileError

from .cli_common import CommandError, load_config, load_key, make_table, print_table, run_command
from .transport import TransportSettings

__all__ = ["JsonFormatter", "app_factory", "check_identity", "check_listen", "cluster_health",
           "divergent", "load_app", "main"]

log = logging.getLogger("pbft.runtime.cli")

#: LogRecord attributes that are not `extra=` fields.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every `extra=` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value if isinstance(value, (int, float, str, bool, type(None))) \
                    else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str, log_file: str | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def app_factory(name: str, *, search_cwd: bool = False) -> Callable[[], StateMachine]:
    """The factory `--app name` names: `kv` (the reference key-value store), `bench` (the
    benchmark service) or `module:callable`, imported but not called. With `search_cwd` the
    working directory is searched too, as `python -m` does for the replicas `pbft cluster`
    starts there (an installed `pbft` command does not search it), and `sys.path` is left as it
    was. Raises ValueError, naming the allowed forms, if it cannot be found or is not callable."""
    if name == "kv":
        return KeyValueStore
    if name == "bench":
        from .bench import BenchmarkApp

        return BenchmarkApp
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--app {name!r}: expected kv, bench or module:callable")
    cwd = os.getcwd()
    added = search_cwd and cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"--app {name!r}: {e} (expected kv, bench or module:callable)"
                         ) from None  # fmt: skip
    finally:
        if added:
            sys.path.remove(cwd)
    if not callable(factory):
        raise ValueError(f"--app {name!r}: {attribute} is not callable")
    return factory


def load_app(name: str) -> StateMachine:
    """A fresh StateMachine from `app_factory(name)`. Raises ValueError if it cannot be found."""
    return app_factory(name)()


def _parse_bounds(items: list[str]) -> dict[str, int]:
    bounds = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in BOUND_NAMES:
            raise ConfigError(
                f"--set {item!r}: expected NAME=INTEGER with NAME one of {', '.join(BOUND_NAMES)}"
            )
        try:
            bounds[name] = int(value)
        except ValueError:
            raise ConfigError(f"--set {item!r}: {value!r} is not an integer") from None
    return bounds


# ---------------------------------------------------------------------------- keygen


def cmd_keygen(args: argparse.Namespace) -> int:
    from .cluster import generate_cluster, parse_hosts

    if args.free_ports and args.hosts:
        raise CommandError("--free-ports finds ports free on this machine; with --hosts give "
                           "--base-port or host:port entries")  # fmt: skip
    hosts = parse_hosts(args.hosts, args.replicas) if args.hosts else None
    out = Path(args.out)
    if (out / "cluster.toml").exists():
        print(f"pbft keygen: {out / 'cluster.toml'} exists; choose another --out", file=sys.stderr)
        return 2
    files = generate_cluster(
        out, replicas=args.replicas, clients=args.clients, host=args.host,
        base_port=None if args.free_ports else args.base_port, bounds=_parse_bounds(args.set),
        admit_clients=not args.open_admission, hosts=hosts,
    )  # fmt: skip
    config = files.config
    print(f"wrote {files.config_path} (n = {config.n}, f = {config.f})")
    for info, path in zip(config.replicas, files.replica_keys):
        metrics = info.metrics_address()
        where = f"  metrics {metrics[0]}:{metrics[1]}" if metrics and hosts else ""
        print(f"  replica {info.id}: {info.host}:{info.port}{where}  key {path}")
    admission = (f"the only {len(config.clients)} admitted" if config.clients
                 else "open admission: any key is a client")  # fmt: skip
    print(f"  {len(files.client_keys)} client keys in {out / 'keys'} ({admission})")
    return 0


# ---------------------------------------------------------------------------- replica


def check_listen(host: str, port: int, what: str) -> None:
    """Raise CommandError (exit 1) naming the address and `what` listens there if (host, port)
    cannot be bound now (another process holds it). Port 0 (any free port) always passes. A
    pre-check, so that a replica refuses before it writes anything (its storage, its log);
    another process may still take the port in between, and then listening fails as usual."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)  # fmt: skip
    except socket.gaierror as e:
        raise CommandError(f"cannot listen on {host}:{port} ({what}): {e.strerror}", 1) from None
    for family, kind, protocol, _, address in addresses:
        probe = socket.socket(family, kind, protocol)
        try:
            # As trio's listeners do: a port in TIME_WAIT after a restart is free to use.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
        except OSError as e:
            raise CommandError(
                f"cannot listen on {host}:{port} ({what}): {e.strerror or e}; nothing was "
                "written (is another replica or cluster running there?)", 1,
            ) from None  # fmt: skip
        finally:
            probe.close()


def _check_data_unlocked(data: Path) -> None:
    """Raise CommandError (exit 1) if another process holds the data directory's lock: the
    precise reason a second replica on it fails, checked before its ports (which that process
    holds too) and without creating anything."""
    import fcntl

    from .storage import LOCK_NAME

    try:
        fd = os.open(data / LOCK_NAME, os.O_RDWR)
    except OSError:
        return  # no lock file: nobody holds it (storage creates it when it opens)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        raise CommandError(
            f"{data} is in use by another replica process (pid {owner}); two processes must "
            "never run as one replica: stop the other one first", 1,
        ) from None  # fmt: skip
    finally:
        os.close(fd)



#: `pbft replica` options that set a `TransportSettings` field of the same name (defaults are
#: the settings' own): (field, type, help).
_TRANSPORT_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("connections_max", int, "inbound connections at once (handshaking ones included)"),
    ("handshake_timeout_s", float, "a connection must finish its TLS handshake within this"),
    ("connections_per_address_max", int,
     "inbound connections from one IP address (replicas' excepted)"),
    ("client_idle_timeout_s", float,
     "close a client connection that sent no request for this long"),
    ("heartbeat_interval_s", float, "send a heartbeat on a connection idle for this long"),
    ("heartbeat_timeout_s", float, "close a connection on which nothing arrived for this long"),
)


def cmd_replica(args: argparse.Namespace) -> int:
    from ._errors import unwrap_single_error
    from .node import NodeSettings, serve_replica
    from .storage import StorageError

    config = load_config(args.config)
    if not 0 <= args.id < config.n:
        raise ConfigError(f"--id {args.id}: the configuration has replicas 0..{config.n - 1}")
    signer = load_key(args.key)
    if signer.public_key != config.public_key(args.id):
        raise ConfigError(
            f"--key {args.key} holds key {signer.public_key.hex()[:16]}…, but replica {args.id} "
            f"is configured with {config.public_key(args.id).hex()[:16]}…"
        )
    app = load_app(args.app)
    # The metrics endpoint listens where the configuration says (`pbft status` asks there),
    # unless told otherwise: --metrics-host 0.0.0.0 listens on every interface of the host.
    configured = config.replicas[args.id].metrics_address()
    metrics_host = configured[0] if configured else "127.0.0.1"
    if args.metrics_host is not None:
        metrics_host = args.metrics_host
    if args.no_metrics:
        metrics_port = None
    elif args.metrics_port is not None:
        metrics_port = args.metrics_port
    else:
        metrics_port = configured[1] if configured else 0
    info = config.replicas[args.id]
    host = info.host if args.host is None else args.host
    _check_data_unlocked(Path(args.data))
    check_listen(host, info.port if args.port is None else args.port,
                 f"replica {args.id}'s replica listener")  # fmt: skip
    if metrics_port is not None:
        check_listen(metrics_host, metrics_port, f"replica {args.id}'s metrics listener")
    configure_logging(args.log_level, args.log_format, args.log_file)
    settings = NodeSettings(
        tick_interval_ms=args.tick_ms,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        health_behind_max=args.health_behind_max,
        storage_synchronous=args.synchronous,
        persist_in_thread=args.persist == "thread",
        transport=TransportSettings(
            reconnect_delay_max_s=args.reconnect_max_s,
            client_send_queue_bytes_max=16 * 1024 * 1024,
            **{field: getattr(args, field) for field, _, _ in _TRANSPORT_OPTIONS},
        ),
    )

    async def run() -> None:
        with (
            trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals,
            unwrap_single_error(),
        ):
            async with trio.open_nursery() as nursery:
                async def stop_on_signal() -> None:
                    async for signum in signals:
                        log.info(
                            "replica %d: %s received, stopping", args.id,
                            signal.Signals(signum).name,
                            extra={"replica": args.id, "reason": "signal"},
                        )  # fmt: skip
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                await nursery.start(
                    lambda task_status: serve_replica(
                        config, args.id, signer, app, args.data, host=args.host,
                        port=args.port, settings=settings, task_status=task_status,
                    )
                )  # fmt: skip

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: other processes do not count
        profiler.enable()
    try:
        trio.run(run)
    except StorageError as e:
        log.critical("replica %d refuses to run: %s", args.id, e,
                     extra={"replica": args.id, "reason": type(e).__name__})  # fmt: skip
        print(f"pbft replica: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        log.critical("replica %d cannot run: %s", args.id, e,
                     extra={"replica": args.id, "reason": "os_error"})  # fmt: skip
        print(f"pbft replica: {e}", file=sys.stderr)
        return 1
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile.replace("{id}", str(args.id)))
    return 0


# ---------------------------------------------------------------------------- cluster


def _check_ports(listeners: list[tuple[str, int, str]], hint: str) -> None:
    """Refuse (CommandError, exit 1, the message ending with `hint`) before starting or
    writing anything if one of the (host, port, what) listeners cannot be bound: a replica
    already running there would otherwise answer as one of ours."""
    for host, port, what in listeners:
        try:
            check_listen(host, port, what)
        except CommandError as e:
            raise CommandError(f"{e}. {hint}", 1) from None


def _listeners(config: config_module.ClusterConfig) -> list[tuple[str, int, str]]:
    """Every replica's and metrics listener of `config`, as `_check_ports` takes them."""
    listeners = []
    for info in config.replicas:
        listeners.append((info.host, info.port, f"replica {info.id}'s replica listener"))
        metrics = info.metrics_address()
        if metrics is not None:
            listeners.append((*metrics, f"replica {info.id}'s metrics listener"))
    return listeners


def cmd_cluster(args: argparse.Namespace) -> int:
    from .cluster import generate_cluster, open_cluster_files

    app_factory(args.app, search_cwd=True)  # refuse a wrong --app before starting anything
    if args.dir and (Path(args.dir) / "cluster.toml").exists():
        directory = Path(args.dir)
        files = open_cluster_files(directory)
        if files.config.n != args.replicas:
            raise CommandError(f"--dir {directory} holds a cluster of {files.config.n} "
                               f"replicas, not {args.replicas}")  # fmt: skip
        _check_ports(_listeners(files.config),
                     f"Is the cluster of {directory} running already?")  # fmt: skip
        return _run_cluster(args, files, temporary=False)
    if args.base_port is not None:
        # Before anything is written: a cluster on ports in use could not start.
        from pbft.config import METRICS_PORT_OFFSET

        listeners = [
            ("127.0.0.1", args.base_port + i + offset, f"replica {i}'s {what}")
            for i in range(args.replicas)
            for offset, what in ((0, "replica listener"), (METRICS_PORT_OFFSET, "metrics listener"))
        ]  # fmt: skip
        _check_ports(listeners, "Choose another --base-port")
    temporary = not args.dir
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="pbft-cluster-"))
    try:
        files = generate_cluster(
            directory, replicas=args.replicas, clients=args.clients, host="127.0.0.1",
            base_port=args.base_port, bounds=_parse_bounds(args.set),
            admit_clients=not args.open_admission,
        )  # fmt: skip
    except BaseException:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return _run_cluster(args, files, temporary=temporary)


def _run_cluster(args: argparse.Namespace, files, *, temporary: bool) -> int:
    """Run the replicas of `files` until a signal (SIGINT, SIGTERM, SIGHUP: exit 0) or until one
    of them exits (the others are stopped; exit 1). A temporary directory is removed at the end
    unless --keep; where the files are is said either way, for they hold private keys."""
    try:
        code = trio.run(_cluster_main, args, files)
    finally:
        directory = files.directory
        if temporary and not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
            _say(f"removed {directory} (its private keys with it; --keep or --dir keeps one)")
        else:
            _say(f"the cluster's files, private keys included, stay in {directory}")
    return code


def _say(text: str, file=None) -> None:
    try:
        print(text, file=file or sys.stdout, flush=True)
    except BrokenPipeError:
        pass


async def _cluster_main(args: argparse.Namespace, files) -> int:
    from ._errors import unwrap_single_error
    from .cluster import LocalCluster, metrics_port_of

    directory = files.directory
    with (
        trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals,
        unwrap_single_error(),
    ):
        async with LocalCluster(files, replica_args=["--app", args.app],
                                own_process_group=True) as cluster:  # fmt: skip
            cluster.start_all()
            try:
                await cluster.wait_all_ready()
            except (RuntimeError, trio.TooSlowError) as e:
                _say(f"pbft cluster: a replica did not start: {e}", sys.stderr)
                cluster.stop_all()
                return 1
            _say(f"cluster of {files.config.n} replicas running in {directory}")
            _say(f"  configuration: {files.config_path}")
            for info in files.config.replicas:
                _say(f"  replica {info.id}: {info.host}:{info.port}  pid "
                     f"{cluster.processes[info.id].pid}  metrics "
                     f"http://127.0.0.1:{metrics_port_of(info)}/metrics  "
                     f"log {files.log_path(info.id)}")  # fmt: skip
            _say(f"  client keys: {directory / 'keys'}/client-*.key")
            _say(f"  status: pbft status --config {files.config_path}")
            _say("Ctrl-C (or SIGTERM, SIGHUP) stops every replica.")
            died: list[int] = []
            async with trio.open_nursery() as nursery:
                async def watch(replica_id: int) -> None:
                    process = cluster.processes[replica_id]
                    while process.poll() is None:
                        await trio.sleep(0.2)
                    died.append(replica_id)
                    nursery.cancel_scope.cancel()

                for replica_id in range(files.config.n):
                    nursery.start_soon(watch, replica_id)
                async for signum in signals:
                    _say(f"{signal.Signals(signum).name} received")
                    break
                nursery.cancel_scope.cancel()
            for replica_id in died:
                process = cluster.processes[replica_id]
                _say(f"pbft cluster: replica {replica_id} exited with {process.returncode} "
                     f"(its log: {files.log_path(replica_id)}); stopping the others",
                     sys.stderr)  # fmt: skip
            _say("stopping every replica ...")
            cluster.stop_all(signal.SIGTERM)
            _say("stopped.")
    return 1 if died else 0


# ---------------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace) -> int:
    from .cluster import metrics_address_of, metrics_port_of, wait_status

    if args.wait is not None and args.wait < 0:
        raise CommandError("--wait must be at least 0 seconds")
    config = load_config(args.config)

    async def ask_all() -> list[dict | str]:
        results: list[dict | str] = [""] * config.n

        async def one(replica_id: int) -> None:
            info = config.replicas[replica_id]
            host, port = metrics_address_of(info)
            if args.metrics_offset is not None:
                port = metrics_port_of(info, args.metrics_offset)
            host = args.metrics_host or host
            try:
                answer = await wait_status(host, port, args.timeout)
            except (OSError, ValueError, trio.TooSlowError) as e:
                results[replica_id] = f"unreachable ({type(e).__name__}: {e})"
                return
            results[replica_id] = check_identity(answer, replica_id, config)

        async with trio.open_nursery() as nursery:
            for replica_id in range(config.n):
                nursery.start_soon(one, replica_id)
        return results

    async def run() -> list[dict | str]:
        """Ask once, or with --wait until a quorum is healthy or the time is up."""
        deadline = trio.current_time() + (args.wait or 0)
        while True:
            results = await ask_all()
            healthy = sum(health == "ok" for health, _ in cluster_health(results))
            if healthy >= config.quorum or trio.current_time() >= deadline:
                return results
            await trio.sleep(0.2)

    results = trio.run(run)
    judged = cluster_health(results)
    healthy = sum(health == "ok" for health, _ in judged)
    if args.json:
        print(json.dumps(results), flush=True)
        return 0 if healthy >= config.quorum else 1
    rows = []
    for replica_id, (result, (health, behind)) in enumerate(zip(results, judged)):
        if isinstance(result, str):
            rows.append([replica_id, "-", "-", "-", "-", "-", "-", "-", "-", health])
            continue
        if result["recovering"] and health == "ok":
            health = "ok (recovering)"
        rows.append([
            replica_id, result["view"], result["primary"], result["last_executed"], behind,
            result["low_watermark"], result["committed_requests"],
            len(result["connected_peers"]), result["state_digest"][:16], health,
        ])  # fmt: skip
    columns = ["replica", "view", "primary", "last executed", "behind", "stable", "committed",
               "peers", "state digest", "health"]  # fmt: skip
    print_table(make_table(columns, rows, numeric=[True] * 8 + [False, False]))
    verdict = "serving" if healthy >= config.quorum else "NOT serving (no healthy quorum)"
    print(f"{healthy} of {config.n} replicas healthy; quorum is {config.quorum}: {verdict}",
          flush=True)  # fmt: skip
    return 0 if healthy >= config.quorum else 1


#: /status fields `pbft status` reads; an answer without them is not a replica's.
_STATUS_FIELDS = {
    "replica": int, "public_key": str, "cluster_id": str, "view": int, "primary": int,
    "last_executed": int, "low_watermark": int, "behind": int, "behind_max": int,
    "recovering": bool, "state_digest": str, "committed_requests": int,
    "connected_peers": list, "health": str,
}  # fmt: skip


def check_identity(answer: object, replica_id: int, config: config_module.ClusterConfig
                   ) -> dict | str:  # fmt: skip
    """`answer` (the /status object read at replica `replica_id`'s metrics address) if it is
    that replica of this cluster; else a one-line health saying what answered instead:
    `bad answer` (not a /status object with the fields `pbft status` reads), `other cluster`
    (a cluster_id other than `config.cluster_id`: another cluster's replica, or this one's
    configuration changed), `wrong replica` (another replica id or public key: two replicas
    share a metrics address, e.g. a configuration with the same one for every host)."""
    if not isinstance(answer, dict):
        return "bad answer (not a JSON object)"
    for name, kind in _STATUS_FIELDS.items():
        value = answer.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"bad answer ({name} missing or not {kind.__name__})"
    if answer["cluster_id"] != config.cluster_id:
        return f"other cluster (cluster id {answer['cluster_id'][:16]}…)"
    expected_key = config.public_key(replica_id).hex()
    if answer["replica"] != replica_id or answer["public_key"] != expected_key:
        return (f"wrong replica (answered as replica {answer['replica']}, key "
                f"{answer['public_key'][:16]}…)")  # fmt: skip
    return answer


def cluster_health(results: list[dict | str]) -> list[tuple[str, int | None]]:
    """Each replica's (health, sequence numbers behind) as `pbft status` judges them from every
    replica's /status object (a str: the replica did not answer, or not as itself, and that is
    its health; None behind). Behind is the larger of what the replica knows and how far the
    replica that executed most is ahead of it: a replica that has not heard from the others
    lately (just restarted, or cut off) does not know how far behind it is. Its "ok" becomes
    "behind" beyond its `behind_max`; a replica whose state digest differs from the others' at
    the same sequence number (`divergent`) is "DIVERGED", whatever it says of itself."""
    executed = [r["last_executed"] for r in results if isinstance(r, dict)]
    highest = max(executed, default=0)
    judged: list[tuple[str, int | None]] = []
    for result in results:
        if isinstance(result, str):
            judged.append((result, None))
            continue
        behind = max(result["behind"], highest - result["last_executed"])
        health = result["health"]
        if health == "ok" and behind > result["behind_max"]:
            health = "behind"
        judged.append((health, behind))
    for index in divergent(results):
        result = results[index]
        assert isinstance(result, dict)
        judged[index] = (f"DIVERGED (state digest differs at {result['last_executed']})",
                         judged[index][1])  # fmt: skip
    return judged


def divergent(results: list[dict | str]) -> set[int]:
    """The replicas whose state digest differs from the others' at the same `last_executed`
    (correct replicas at one sequence number have one state, C1): in each group of replicas
    at one sequence number, those outside the largest set agreeing on a digest, or all of
    them when no set is largest. Replicas at different sequence numbers are not compared."""
    groups: dict[int, dict[str, list[int]]] = {}
    for index, result in enumerate(results):
        if isinstance(result, dict) and "state_digest" in result:
            by_digest = groups.setdefault(result["last_executed"], {})
            by_digest.setdefault(result["state_digest"], []).append(index)
    flagged: set[int] = set()
    for by_digest in groups.values():
        if len(by_digest) < 2:
            continue
        sizes = sorted((len(members) for members in by_digest.values()), reverse=True)
        for members in by_digest.values():
            if len(members) < sizes[0] or sizes[0] == sizes[1]:
                flagged.update(members)
    return flagged


# ---------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench
    from .client import ClientError

    try:
        return run_bench(args)
    except ClientError as e:  # the cluster of --config cannot be reached
        raise CommandError(str(e), 1) from None


# ---------------------------------------------------------------------------- main


OPEN_ADMISSION_HELP = (
    "list no client keys in the configuration: any key is a client (the reply cache then "
    "holds the first client_table_max), or the application admits its own (e.g. "
    "tradeapp.service:ledger, its participants). By default only the generated clients are "
    "served"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbft", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    keygen = commands.add_parser("keygen", help="write a cluster configuration and key files")
    keygen.add_argument("--replicas", type=int, default=4)
    keygen.add_argument("--clients", type=int, default=1)
    keygen.add_argument("--out", required=True, help="directory to write into")
    keygen.add_argument("--host", default="127.0.0.1", help="the replicas' address")
    keygen.add_argument("--hosts", default=None, metavar="A,B,C,D",
                        help="one address per replica (host or host:port; replicas on "
                             "separate machines): replica i listens there on base-port + i, "
                             "its metrics on that port + 1000")
    keygen.add_argument("--base-port", type=int, default=7000,
                        help="replica i listens on base-port + i (metrics: + 1000)")
    keygen.add_argument("--free-ports", action="store_true",
                        help="instead of --base-port: ports free on this machine now (a local "
                             "cluster, e.g. for pbft cluster --dir)")
    keygen.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a configuration bound, e.g. request_timeout_ms=1000")
    keygen.add_argument("--open-admission", action="store_true", help=OPEN_ADMISSION_HELP)
    keygen.set_defaults(handler=cmd_keygen)

    replica = commands.add_parser("replica", help="run one replica until SIGTERM/SIGINT")
    replica.add_argument("--config", required=True)
    replica.add_argument("--id", type=int, required=True)
    replica.add_argument("--key", required=True, help="the replica's key file (mode 0600)")
    replica.add_argument("--data", required=True, help="the replica's storage directory")
    replica.add_argument("--host", default=None, help="listen address (default: configured)")
    replica.add_argument("--port", type=int, default=None, help="listen port (default: configured)")
    replica.add_argument("--metrics-host", default=None,
                         help="metrics listen address, e.g. 0.0.0.0 (default: the configured "
                              "metrics_host, else the replica's host)")
    replica.add_argument("--metrics-port", type=int, default=None,
                         help="metrics port (default: the configured metrics_port, else "
                              "port + 1000)")
    replica.add_argument("--no-metrics", action="store_true")
    replica.add_argument("--app", default="kv", help="kv, bench or module:callable")
    replica.add_argument("--tick-ms", type=int, default=10)
    replica.add_argument("--health-behind-max", type=int, default=None,
                         help="health is not ok beyond this many sequence numbers behind "
                              "(default: the checkpoint interval)")
    replica.add_argument("--synchronous", default="FULL", choices=["FULL", "EXTRA", "NORMAL"],
                         help="SQLite durability; NORMAL is not crash-safe for power loss")
    replica.add_argument("--persist", default="loop", choices=["thread", "loop"],
                         help="run durable appends in a worker thread or in the event loop")
    replica.add_argument("--reconnect-max-s", type=float, default=1.0,
                         help="longest pause between attempts to reach another replica")
    defaults = TransportSettings()
    for field, kind, text in _TRANSPORT_OPTIONS:
        replica.add_argument(f"--{field.replace('_', '-')}", type=kind,
                             default=getattr(defaults, field), help=text)  # fmt: skip
    replica.add_argument("--log-level", default="INFO", type=str.upper,
                         choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    replica.add_argument("--log-format", default="text", choices=["text", "json"])
    replica.add_argument("--log-file", default=None)
    replica.add_argument("--profile", default=None, help=argparse.SUPPRESS)
    replica.set_defaults(handler=cmd_replica)

    cluster = commands.add_parser("cluster", help="run a local cluster until Ctrl-C")
    cluster.add_argument("--replicas", type=int, default=4)
    cluster.add_argument("--clients", type=int, default=4)
    cluster.add_argument("--dir", default=None,
                         help="work directory: used as it is if it holds a cluster.toml (e.g. "
                              "from pbft keygen), else written (default: a new temporary "
                              "directory, removed when the cluster stops)")
    cluster.add_argument("--keep", action="store_true",
                         help="keep the temporary directory (it holds private keys)")
    cluster.add_argument("--base-port", type=int, default=None,
                         help="replica i listens on base-port + i (default: free ports)")
    cluster.add_argument("--app", default="kv", help="kv, bench or module:callable")
    cluster.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    cluster.add_argument("--open-admission", action="store_true", help=OPEN_ADMISSION_HELP)
    cluster.set_defaults(handler=cmd_cluster)

    from .cli_client import add_client_commands

    add_client_commands(commands)

    status = commands.add_parser("status",
                                 help="each replica's progress, lag, state digest and health")
    status.add_argument("--config", required=True)
    status.add_argument("--metrics-offset", type=int, default=None,
                        help="ask port + this (default: each replica's configured metrics "
                             "address)")
    status.add_argument("--metrics-host", default=None,
                        help="ask this host for every replica (default: the configured ones)")
    status.add_argument("--timeout", type=float, default=2.0, help="seconds per replica asked")
    status.add_argument("--wait", type=float, default=None, metavar="S",
                        help="ask again until a quorum is healthy, for at most S seconds "
                             "(scripts: wait for a cluster just started)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    bench = commands.add_parser("bench", help="micro-benchmarks 0/0, 0/4, 4/0 on 4 processes")
    bench.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    bench.add_argument("--clients", type=int, default=100, help="closed-loop clients")
    bench.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    bench.add_argument("--config", default=None,
                       help="measure the running cluster of this configuration instead of "
                            "starting one (client keys: --client-keys, else keys/client-*.key "
                            "beside it; its replicas should run --app bench)")
    bench.add_argument("--connect-timeout", type=float, default=10.0,
                       help="with --config: seconds to reach a quorum of its replicas")
    bench.add_argument("--client-keys", default=None,
                       help="with --config: the directory of the admitted clients' key files")
    bench.add_argument("--only", default=None,
                       help="comma-separated rows to run, e.g. ordered_0_0,single_client")
    bench.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"],
                       help="replicas' SQLite durability (NORMAL: for analysis only; not "
                            "durable across power loss)")
    bench.add_argument("--persist", default="loop", choices=["thread", "loop"],
                       help="replicas' durable appends in a worker thread or the event loop")
    bench.add_argument("--progress", action="store_true",
                       help="report progress on stderr even when it is not a terminal")
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `pbft` command; returns its exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    return run_command(f"pbft {args.command}", lambda: args.handler(args),
                       (ConfigError, KeyFileError, ValueError))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
