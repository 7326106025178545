"""Local clusters: generated keys and configuration, and replica processes on one machine.

`generate_cluster` writes what `pbft keygen` writes: `cluster.toml` (the configuration every
replica and client reads, listing the admitted clients' keys unless asked not to) and one key
file per replica and client (mode 0600). `LocalCluster`
runs `python -m pbft.runtime.cli replica ...` processes for such a directory: start, kill (any
signal, SIGKILL included), restart, and stop them all; it is what `pbft cluster`, `pbft bench`
and the process tests use.

Addresses: replica i listens on its configured host and port; its metrics endpoint (plain
HTTP) on its configured metrics address (`ReplicaInfo.metrics_address`: by default the same
host, port + `METRICS_PORT_OFFSET`), which is where `pbft status` asks. With `hosts`
(`pbft keygen --hosts a,b,c,d`) each replica gets its own host, so a configuration for
replicas on separate machines needs no editing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import trio

from pbft import config as config_module
from pbft.config import METRICS_PORT_OFFSET, ClusterConfig, ConfigError, ReplicaInfo
from pbft.ed25519 import Ed25519Signer, read_key_file, write_key_file

from .metrics import fetch

__all__ = [
    "METRICS_PORT_OFFSET",
    "ClusterFiles",
    "LocalCluster",
    "free_ports",
    "generate_cluster",
    "metrics_address_of",
    "metrics_port_of",
    "parse_hosts",
    "wait_status",
]

CONFIG_NAME = "cluster.toml"
#: Addresses that mean "every interface" to a listener; to reach one, ask the loopback.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def metrics_port_of(info: ReplicaInfo, offset: int | None = None) -> int:
    """The replica's configured metrics port (`ReplicaInfo.metrics_address`), or with `offset`
    its port + offset (`pbft status --metrics-offset`). Raises ConfigError if it has none."""
    if offset is not None:
        return info.port + offset
    return metrics_address_of(info)[1]


def metrics_address_of(info: ReplicaInfo) -> tuple[str, int]:
    """Where to ask replica `info` for /status from here: its configured metrics address,
    with a wildcard listen address replaced by the loopback. Raises ConfigError when the
    configuration gives it none (port 0 and no metrics_port)."""
    address = info.metrics_address()
    if address is None:
        raise ConfigError(
            f"replica {info.id} has no metrics address in the configuration (port 0 and no "
            "metrics_port)"
        )
    host, port = address
    return ("127.0.0.1" if host in WILDCARD_HOSTS else host), port


def parse_hosts(text: str, replicas: int | None = None) -> list[tuple[str, int | None]]:
    """`a,b,c,d` (`pbft keygen --hosts`): one `host` or `host:port` per replica (IPv6 in
    brackets: `[::1]:7000`). Raises ConfigError on an empty entry, a bad port, or (given
    `replicas`) a count that differs."""
    entries: list[tuple[str, int | None]] = []
    for index, item in enumerate(text.split(",")):
        item = item.strip()
        host, port_text = item, None
        if item.startswith("["):
            closing = item.find("]")
            if closing < 0:
                raise ConfigError(f"--hosts entry {index} {item!r}: unclosed [")
            host, rest = item[1:closing], item[closing + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ConfigError(f"--hosts entry {index} {item!r}: expected [host]:port")
                port_text = rest[1:]
        elif item.count(":") == 1:
            host, port_text = item.split(":")
        if not host:
            raise ConfigError(f"--hosts entry {index} is empty ({text!r})")
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ConfigError(f"--hosts entry {index} {item!r}: port must be 1..65535")
            port = int(port_text)
        entries.append((host, port))
    if replicas is not None and len(entries) != replicas:
        raise ConfigError(f"--hosts lists {len(entries)} addresses for {replicas} replicas")
    return entries


def free_ports(count: int, host: str = "127.0.0.1", *, with_offset: int | None = None) -> list[int]:
    """`count` distinct ports free on `host` right now (and, with `with_offset`, whose port +
    offset is free too). Another process may take one before it is used: a small race that
    tests and local clusters accept."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind((host, 0))
            held.append(s)
            port = s.getsockname()[1]
            if with_offset is not None:
                if port + with_offset > 65535:
                    continue
                probe = socket.socket()
                try:
                    probe.bind((host, port + with_offset))
                except OSError:
                    continue
                finally:
                    probe.close()
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


@dataclass(frozen=True, slots=True)
class ClusterFiles:
    """What `generate_cluster` wrote."""

    directory: Path
    config_path: Path
    replica_keys: tuple[Path, ...]
    client_keys: tuple[Path, ...]

    @property
    def config(self) -> ClusterConfig:
        return config_module.load(self.config_path)

    def replica_signer(self, replica_id: int) -> Ed25519Signer:
        return read_key_file(self.replica_keys[replica_id])

    def client_signers(self, count: int | None = None) -> list[Ed25519Signer]:
        keys = self.client_keys if count is None else self.client_keys[:count]
        return [read_key_file(path) for path in keys]

    def data_dir(self, replica_id: int) -> Path:
        return self.directory / f"data-{replica_id}"

    def log_path(self, replica_id: int) -> Path:
        return self.directory / f"replica-{replica_id}.log"


def generate_cluster(
    directory: str | os.PathLike[str],
    *,
    replicas: int = 4,
    clients: int = 1,
    host: str = "127.0.0.1",
    base_port: int | None = None,
    bounds: dict[str, int] | None = None,
    admit_clients: bool = True,
    hosts: Sequence[tuple[str, int | None]] | None = None,
) -> ClusterFiles:
    """Write a configuration for `replicas` replicas on `host` and key files for them and for
    `clients` clients into `directory` (created; existing key files are never overwritten:
    FileExistsError). Ports are base_port, base_port + 1, ... or, without `base_port`, free
    ports (with their metrics ports free too). `bounds` override configuration defaults.
    `hosts` (see `parse_hosts`): replica i on hosts[i] instead, at the port given there or
    base_port + i (7000 + i without base_port: free ports here say nothing of another host),
    with its metrics endpoint written out as that host, port + METRICS_PORT_OFFSET.
    With `admit_clients` the configuration lists the clients' keys and the replicas serve no
    other (N8'); without it, or with no clients, it lists none: open admission, or admission
    by the application (e.g. `tradeapp.service:ledger` serves its participants).
    Raises ConfigError for an invalid configuration (fewer than 4 replicas, bad bounds)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keys = directory / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    metrics: list[tuple[str | None, int | None]] = [(None, None)] * replicas
    if hosts is not None:
        if len(hosts) != replicas:
            raise ConfigError(f"{len(hosts)} hosts for {replicas} replicas")
        first = 7000 if base_port is None else base_port
        ports = [port if port is not None else first + i for i, (_, port) in enumerate(hosts)]
        metrics = [(h, p + METRICS_PORT_OFFSET) for (h, _), p in zip(hosts, ports)]
    elif base_port is None:
        ports = free_ports(replicas, host if host != "0.0.0.0" else "127.0.0.1",
                           with_offset=METRICS_PORT_OFFSET)  # fmt: skip
    else:
        ports = [base_port + i for i in range(replicas)]
    signers = [Ed25519Signer.generate() for _ in range(replicas)]
    client_signers = [Ed25519Signer.generate() for _ in range(clients)]
    config = ClusterConfig.create(
        [
            ReplicaInfo(i, s.public_key, hosts[i][0] if hosts else host, ports[i],
                        metrics_host=metrics[i][0], metrics_port=metrics[i][1])
            for i, s in enumerate(signers)
        ],  # fmt: skip
        clients=[s.public_key for s in client_signers] if admit_clients else [],
        **(bounds or {}),
    )
    replica_keys = []
    for i, s in enumerate(signers):
        path = keys / f"replica-{i}.key"
        write_key_file(path, s)
        replica_keys.append(path)
    client_keys = []
    for j, s in enumerate(client_signers):
        path = keys / f"client-{j}.key"
        write_key_file(path, s)
        client_keys.append(path)
    config_path = directory / CONFIG_NAME
    config_module.dump(config, config_path)
    return ClusterFiles(directory, config_path, tuple(replica_keys), tuple(client_keys))


def open_cluster_files(directory: str | os.PathLike[str]) -> ClusterFiles:
    """The `ClusterFiles` of a directory `generate_cluster` wrote earlier."""
    directory = Path(directory)
    config = config_module.load(directory / CONFIG_NAME)
    keys = directory / "keys"
    clients = sorted(keys.glob("client-*.key"), key=lambda p: int(p.stem.split("-")[1]))
    return ClusterFiles(
        directory,
        directory / CONFIG_NAME,
        tuple(keys / f"replica-{i}.key" for i in range(config.n)),
        tuple(clients),
    )


async def wait_status(
    host: str, port: int, timeout_s: float = 2.0
) -> dict:
    """The /status object of the metrics endpoint at (host, port); raises OSError,
    trio.TooSlowError or ValueError if it does not answer properly."""
    body = await fetch(host, port, "/status", timeout_s)
    return json.loads(body)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (prctl
    PR_SET_PDEATHSIG); elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class LocalCluster:
    """Replica processes of `files` on this machine.

    Use as a context manager (`with` or `async with`); leaving kills (SIGKILL) every process
    still running. Starting and signalling processes is synchronous (it takes milliseconds);
    waiting for a replica to answer exists in both forms: `await wait_ready(i)` in trio code,
    `wait_ready_blocking(i)` elsewhere (fixtures shared by several trio tests).

    `replica_args` are extra arguments for every `pbft replica` command (e.g. `["--app",
    "bench"]`). Each replica writes its log (JSON lines) to `files.log_path(i)`. `wrap(i)`
    is put before replica i's command (e.g. `["ip", "netns", "exec", "host-i"]`: each replica
    on its own network host); it must exec the command, so that signals reach the replica.

    `own_process_group` (what `pbft cluster` uses): each replica runs in a session of its own,
    so that a terminal's Ctrl-C or hang-up reaches only the caller, which stops the replicas
    itself; and (Linux) a replica gets SIGTERM when the caller dies, even by SIGKILL, rather
    than run on as an orphan.

    A replica is ready when its metrics endpoint answers *as that process* (the /status `pid`
    is the one started): a replica of another cluster on the same ports is not taken for it.
    """

    def __init__(
        self,
        files: ClusterFiles,
        *,
        replica_args: Sequence[str] = (),
        python: str = sys.executable,
        log_level: str = "INFO",
        wrap: Callable[[int], Sequence[str]] | None = None,
        own_process_group: bool = False,
    ) -> None:
        self.files = files
        self._own_process_group = own_process_group
        self._wrap = wrap
        self.config = files.config
        self._replica_args = list(replica_args)
        self._python = python
        self._log_level = log_level
        self.processes: dict[int, subprocess.Popen] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all(signal.SIGKILL)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop_all(signal.SIGKILL)

    def command(self, replica_id: int) -> list[str]:
        files = self.files
        return [
            *(self._wrap(replica_id) if self._wrap is not None else ()),
            self._python, "-m", "pbft.runtime.cli", "replica",
            "--config", str(files.config_path),
            "--id", str(replica_id),
            "--key", str(files.replica_keys[replica_id]),
            "--data", str(files.data_dir(replica_id)),
            "--log-format", "json",
            "--log-level", self._log_level,
            *self._replica_args,
        ]  # fmt: skip

    def running(self, replica_id: int) -> bool:
        process = self.processes.get(replica_id)
        return process is not None and process.poll() is None

    def start(self, replica_id: int) -> subprocess.Popen:
        """Start replica `replica_id` (it must not be running); its log is appended to."""
        if self.running(replica_id):
            raise RuntimeError(f"replica {replica_id} is already running")
        with open(self.files.log_path(replica_id), "ab") as log_file:
            process = subprocess.Popen(
                self.command(replica_id),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=self._own_process_group,
                preexec_fn=_die_with_parent if self._own_process_group else None,
            )
        self.processes[replica_id] = process
        return process

    def start_all(self) -> None:
        for replica_id in range(self.config.n):
            self.start(replica_id)

    def _check_alive(self, replica_id: int) -> None:
        process = self.processes.get(replica_id)
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"replica {replica_id} exited with {process.returncode}:\n"
                + self.log_tail(replica_id)
            )

    async def wait_ready(self, replica_id: int, timeout_s: float = 30.0) -> dict:
        """Wait until replica `replica_id` answers on its metrics endpoint; returns its status.
        Raises RuntimeError (with the end of its log) if the process exits first, and
        trio.TooSlowError if it does not answer in time."""
        with trio.fail_after(timeout_s):
            while True:
                self._check_alive(replica_id)
                status = await self.status(replica_id, 1.0)
                if status is not None and self._is_ours(replica_id, status):
                    return status
                await trio.sleep(0.05)

    async def wait_all_ready(self, timeout_s: float = 30.0) -> None:
        for replica_id in range(self.config.n):
            await self.wait_ready(replica_id, timeout_s)

    def wait_ready_blocking(self, replica_id: int, timeout_s: float = 30.0) -> dict:
        """`wait_ready` for code outside trio; raises TimeoutError if it does not answer."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive(replica_id)
            status = self.status_blocking(replica_id)
            if status is not None and self._is_ours(replica_id, status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica {replica_id} not ready within {timeout_s} s:\n"
                                   + self.log_tail(replica_id))  # fmt: skip
            time.sleep(0.05)

    def wait_all_ready_blocking(self, timeout_s: float = 30.0) -> None:
        """`wait_ready_blocking` for every replica, in id order."""
        for replica_id in range(self.config.n):
            self.wait_ready_blocking(replica_id, timeout_s)

    def _is_ours(self, replica_id: int, status: dict) -> bool:
        """Whether `status` comes from the process this cluster started as `replica_id` (a
        wrapper that does not exec, or an old replica without `pid`, is taken at its word)."""
        process = self.processes.get(replica_id)
        pid = status.get("pid")
        if process is None or not isinstance(pid, int) or self._wrap is not None:
            return True
        return pid == process.pid

    def metrics_address(self, replica_id: int) -> tuple[str, int]:
        return metrics_address_of(self.config.replicas[replica_id])

    async def status(self, replica_id: int, timeout_s: float = 2.0) -> dict | None:
        """Replica `replica_id`'s /status, or None if it does not answer."""
        try:
            return await wait_status(*self.metrics_address(replica_id), timeout_s)
        except (OSError, ValueError, trio.TooSlowError):
            return None

    def status_blocking(self, replica_id: int, timeout_s: float = 2.0) -> dict | None:
        host, port = self.metrics_address(replica_id)
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/status", timeout=timeout_s) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    async def metrics(self, replica_id: int, timeout_s: float = 2.0) -> str:
        host, port = self.metrics_address(replica_id)
        return (await fetch(host, port, "/metrics", timeout_s)).decode()

    def kill(self, replica_id: int, signum: int = signal.SIGKILL, timeout_s: float = 10.0) -> int:
        """Send `signum` to replica `replica_id` and wait (blocking, at most `timeout_s`) for it
        to exit; returns its exit code."""
        process = self.processes[replica_id]
        if process.poll() is None:
            process.send_signal(signum)
        return process.wait(timeout_s)

    def stop_all(self, signum: int = signal.SIGTERM, grace_s: float = 5.0) -> None:
        """Signal every running replica, wait up to `grace_s` (blocking), then SIGKILL what is
        left."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self, replica_id: int, lines: int = 20) -> str:
        try:
            text = self.files.log_path(replica_id).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_records(self, replica_id: int) -> list[dict]:
        """The JSON log records replica `replica_id` wrote so far (unparsable lines skipped)."""
        records = []
        try:
            text = self.files.log_path(replica_id).read_text(errors="replace")
        except OSError:
            return records
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records
