"""A whole cluster inside one trio program: n replicas of one application on 127.0.0.1.

    async with embedded_cluster(Counter) as cluster:
        async with cluster.connect() as client:
            await client.submit(b"inc")

For examples, tests and trying an application out: every replica is a real `serve_replica`
(TLS, durable SQLite storage, the metrics endpoint off), on free ports of one host, with keys
generated in memory. A cluster that must survive this process runs as processes instead
(`pbft keygen` + `pbft replica`, or `pbft cluster`).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from pbft.app import StateMachine
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.ed25519 import Ed25519Signer

from ._errors import unwrap_single_error
from .client import Client, connect
from .cluster import free_ports
from .node import NodeSettings, ReplicaNode, serve_replica

__all__ = ["EmbeddedCluster", "embedded_cluster"]


@dataclass(frozen=True, slots=True)
class EmbeddedCluster:
    """What `embedded_cluster` started: the configuration every replica and client uses, the
    running replicas, the generated client identities and where the replicas store their data."""

    config: ClusterConfig
    nodes: tuple[ReplicaNode, ...]
    client_signers: tuple[Ed25519Signer, ...]
    data_dir: Path

    def connect(self, client: int = 0, **options: Any) -> AbstractAsyncContextManager[Client]:
        """`pbft.runtime.connect` as generated client number `client` (`options`: its keyword
        arguments, e.g. `timeout_s`). Raises IndexError for a client that was not generated."""
        return connect(self.config, self.client_signers[client], **options)


@asynccontextmanager
async def embedded_cluster(
    app_factory: Callable[[], StateMachine],
    *,
    replicas: int = 4,
    clients: int = 1,
    admit_clients: bool = True,
    host: str = "127.0.0.1",
    data_dir: str | Path | None = None,
    bounds: dict[str, int] | None = None,
    settings: NodeSettings | None = None,
) -> AsyncIterator[EmbeddedCluster]:
    """Start `replicas` replicas, each running `app_factory()` (called once per replica: each
    needs a fresh state machine), and yield once all of them listen; leaving stops them all.

    Keys are generated for the replicas and for `clients` clients; with `admit_clients` the
    configuration lists those clients and serves no other (N8'), without it (or with no
    clients) any key is a client or the application decides (`pbft.app.Admission`). Ports are
    free ports of `host` (another process may take one first: then starting fails with
    OSError naming it). `data_dir` holds a subdirectory per replica (default: a temporary
    directory removed on leaving). `bounds` override configuration defaults; `settings` the
    nodes' (default: `NodeSettings` without a metrics endpoint).

    Raises ConfigError for an invalid configuration (fewer than 4 replicas, bad bounds), and
    whatever `app_factory` or `serve_replica` raise; a lone error of the body comes out as
    itself, not inside an ExceptionGroup.
    """
    replica_signers = [Ed25519Signer.generate() for _ in range(replicas)]
    client_signers = tuple(Ed25519Signer.generate() for _ in range(clients))
    ports = free_ports(replicas, host)
    config = ClusterConfig.create(
        [ReplicaInfo(i, s.public_key, host, ports[i]) for i, s in enumerate(replica_signers)],
        clients=[s.public_key for s in client_signers] if admit_clients else [],
        **(bounds or {}),
    )
    node_settings = settings if settings is not None else NodeSettings(metrics_port=None)
    with (
        tempfile.TemporaryDirectory(prefix="pbft-embedded-") as scratch,
        unwrap_single_error(),
    ):
        root = Path(data_dir) if data_dir is not None else Path(scratch)
        async with trio.open_nursery() as nursery:
            nodes = []
            for i, signer in enumerate(replica_signers):
                serve = functools.partial(
                    serve_replica, config, i, signer, app_factory(), root / f"replica-{i}",
                    settings=node_settings,
                )  # fmt: skip
                nodes.append(await nursery.start(serve))
            try:
                yield EmbeddedCluster(config, tuple(nodes), client_signers, root)
            finally:
                nursery.cancel_scope.cancel()

