"""The cluster configuration: who the replicas are, and every bound the core enforces.

n replicas tolerate f = (n - 1) // 3 Byzantine faults; a quorum is 2f + 1 when n = 3f + 1 (see
`ClusterConfig.quorum` for other n); the primary of view v is replica v mod n. Every queue, log,
stash and cache in the core is bounded by a field here.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Iterable

import tomli_w

if TYPE_CHECKING:  # the core imports this module; it never touches the file system itself
    from os import PathLike

#: Ed25519 public keys are 32 bytes.
PUBLIC_KEY_BYTES = 32
#: A batch larger than this would make one PRE-PREPARE (and its verification) a stall.
BATCH_SIZE_CEILING = 10_000
PORT_MAX = 65_535
#: Without a configured `metrics_port`, a replica's metrics endpoint listens on its replica
#: port plus this (the convention of `pbft keygen` and `pbft cluster`).
METRICS_PORT_OFFSET = 1000


class ConfigError(ValueError):
    """A cluster configuration that the core must not run with; the message names the field."""


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """One replica: its id (0 .. n-1), Ed25519 public key, listening address, and where its
    metrics endpoint (`/metrics`, `/status`) answers.

    `metrics_host` None: the replica's `host`; `metrics_port` None: `port` +
    `METRICS_PORT_OFFSET` (none at all when `port` is 0, a port picked at start, or when
    that sum is not a port). Operators on other hosts (`pbft status`) use this address, so on
    a multi-host cluster it must be one they can reach (`pbft keygen --hosts` writes it).
    Validation (in `ClusterConfig`): a non-empty metrics_host, a metrics_port in 1..65535,
    and an endpoint other than the replica's own address, else ConfigError."""

    id: int
    public_key: bytes
    host: str = "127.0.0.1"
    port: int = 0
    metrics_host: str | None = None
    metrics_port: int | None = None

    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of the replica's metrics endpoint as configured, or None when neither
        a metrics port nor a usable replica port is configured."""
        host = self.metrics_host if self.metrics_host is not None else self.host
        if self.metrics_port is not None:
            return host, self.metrics_port
        if self.port and self.port + METRICS_PORT_OFFSET <= PORT_MAX:
            return host, self.port + METRICS_PORT_OFFSET
        return None


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A validated cluster configuration. Build with `ClusterConfig.create(...)` or `load()`.

    Construction validates (also through the plain constructor and `dataclasses.replace`):
    an invalid configuration raises `ConfigError` naming the offending field, so a replica
    never starts with one. `replicas` may be given as any sequence; it is stored as a tuple.
    """

    replicas: tuple[ReplicaInfo, ...]
    #: A batch closes at this many requests (or when the primary has no batch in flight).
    batch_size_max: int = 100
    #: L: the high watermark is H = h + L, h the last stable checkpoint.
    log_window: int = 256
    #: K: a checkpoint every K sequence numbers (C1). log_window must be a multiple ≥ 2.
    checkpoint_interval: int = 64
    #: A backup starts a view change when a known request waits longer than this (V1).
    request_timeout_ms: int = 2_000
    #: T of V4: how long a view change may take before moving on (doubles while failing).
    view_change_timeout_ms: int = 4_000
    #: S1: a state or log fetch unanswered for this long is asked of another replica.
    state_transfer_timeout_ms: int = 1_000
    #: S1: snapshots travel in chunks of at most this many bytes.
    state_chunk_bytes: int = 256 * 1024
    #: S1: the largest snapshot a replica accepts from another (bounds a fetch's memory).
    snapshot_bytes_max: int = 1024 * 1024 * 1024
    #: S1': chunk requests a fetching replica keeps outstanding, spread over the n - 1 others:
    #: each is asked at most q = ceil(state_fetch_window / (n - 1)) chunks per
    #: state_transfer_timeout_ms. A replica serves each requester 2q chunks at once and q per
    #: state_transfer_timeout_ms after that, which never refuses a fetcher pacing itself so.
    #: A fetch of C chunks with g correct sources takes at most about C / (g q) periods
    #: (`pbft.core.state_transfer.StateFetch` states the bound).
    state_fetch_window: int = 64
    #: D1: a backup refuses a batch timestamp further than this from its own clock.
    timestamp_skew_max_ms: int = 30_000
    #: A client multicasts its request when no result arrived within this (N9).
    client_retry_timeout_ms: int = 1_000
    #: Largest frame the codec decodes; checked before reading the body.
    frame_bytes_max: int = 4 * 1024 * 1024
    #: Largest operation (request payload) and result accepted.
    operation_bytes_max: int = 1024 * 1024
    result_bytes_max: int = 1024 * 1024
    #: Requests the primary holds waiting for a batch; beyond this new requests are dropped.
    pending_requests_max: int = 10_000
    #: N8, N8': the most clients the reply cache holds. Nobody is ever evicted: once it is
    #: full, a request from a client not in it is refused (see pbft.core.client_table).
    client_table_max: int = 100_000
    #: Per sending replica: messages for the next view or above the high watermark kept for
    #: later (with stash_bytes_max).
    stash_max: int = 10_000
    #: N2 with a batching delay: with no batch in flight, the primary closes a batch that is
    #: not full only once it has been filling for this long (0: at once, the classic rule).
    #: At light load this trades that much latency for fewer, fuller batches (BFT-SMaRt has
    #: the same knob). Time is what `tick` gives, so the delay is as coarse as the ticks.
    #: 0 or more, and below request_timeout_ms (a waiting batch must not look like a faulty
    #: primary).
    batch_delay_ms: int = 0
    #: N8': the admitted clients' Ed25519 public keys. When listed, only these clients are
    #: served (any other key's request is dropped before its signature is checked) and the
    #: reply cache holds exactly them; empty: any key is a client (open admission), and the
    #: cache holds the first `client_table_max` clients executed. Not a bound; each key 32
    #: bytes, no duplicates, no replica's key; client_table_max must be at least their number.
    clients: tuple[bytes, ...] = ()
    #: N2': a batch closes before its PRE-PREPARE (header and requests, `pbft.core.sizes`)
    #: would exceed this many bytes. Validation proves that the largest message carrying a
    #: batch (a LOGGED-BATCH with n COMMITs) fits `frame_bytes_max`, and that one request of
    #: `operation_bytes_max` fits a batch alone.
    batch_bytes_max: int = 3 * 1024 * 1024
    #: Bytes of requests a replica holds waiting to be ordered (the primary's pending batch,
    #: a backup's waiting requests; each bounded separately). Beyond it new requests are
    #: dropped, so clients with large requests cannot exhaust memory.
    pending_bytes_max: int = 64 * 1024 * 1024
    #: Per sending replica: bytes of messages for the next view, or above the high watermark,
    #: kept until the view is installed or the window advances (V3', C2').
    stash_bytes_max: int = 16 * 1024 * 1024
    #: V1'': the longest a backup lets a request it waits on go without a PRE-PREPARE carrying
    #: it (twice: once before relaying it to the primary, once before suspecting the primary).
    #: Backups tolerate three of their own measured commit rounds, at least a fifth of this,
    #: at most this. Above batch_delay_ms, at most request_timeout_ms; 0 means
    #: batch_delay_ms + request_timeout_ms // 4 (see `propose_timeout`).
    propose_timeout_ms: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.replicas, tuple):
            if isinstance(self.replicas, (str, bytes)) or not hasattr(self.replicas, "__iter__"):
                raise ConfigError(
                    "replicas must be a sequence of ReplicaInfo, "
                    f"got {type(self.replicas).__name__}"
                )
            object.__setattr__(self, "replicas", tuple(self.replicas))
        if not isinstance(self.clients, tuple):
            if isinstance(self.clients, (str, bytes)) or not hasattr(self.clients, "__iter__"):
                kind = type(self.clients).__name__
                raise ConfigError(f"clients must be a sequence of public keys, got {kind}")
            object.__setattr__(self, "clients", tuple(self.clients))
        _check_replicas(self.replicas)
        _check_bounds(self)
        _check_clients(self)

    @classmethod
    def create(
        cls, replicas: Iterable[ReplicaInfo], clients: Iterable[bytes] = (), **bounds: int
    ) -> ClusterConfig:
        """Build a validated configuration; bounds not given keep their defaults; `clients`
        lists the admitted clients' keys (none: open admission).

        Raises ConfigError for an unknown bound name or any invalid value.
        """
        unknown = sorted(set(bounds) - set(BOUND_NAMES))
        if unknown:
            raise ConfigError(f"unknown bound(s): {', '.join(unknown)}")
        return cls(tuple(replicas), clients=tuple(clients), **bounds)

    @property
    def n(self) -> int:
        return len(self.replicas)

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """The size of a commit/checkpoint/view-change quorum: 2f + 1 when n = 3f + 1.

        In general ceil((n + f + 1) / 2): any two quorums then share at least f + 1 replicas,
        so at least one correct one. Plain 2f + 1 is unsafe when n > 3f + 1 (n = 5, f = 1:
        two quorums of 3 may share only one replica, possibly the faulty one).
        """
        return (self.n + self.f + 2) // 2

    @property
    def propose_timeout(self) -> int:
        """V1'': `propose_timeout_ms`, or its default when 0."""
        if self.propose_timeout_ms:
            return self.propose_timeout_ms
        return min(self.request_timeout_ms,
                   self.batch_delay_ms + max(1, self.request_timeout_ms // 4))

    def primary(self, view: int) -> int:
        return view % self.n

    def public_key(self, replica_id: int) -> bytes:
        return self.replicas[replica_id].public_key

    @property
    def cluster_id(self) -> str:
        """A name for this cluster that every replica and operator computes alike: the hex
        SHA-256 of what defines it (each replica's id and public key, every bound, the
        admitted clients), not of where replicas listen, which may be written differently on
        each host (0.0.0.0 on the replica, its address elsewhere). `/status` carries it, so
        `pbft status` can tell a replica of another cluster on the same address."""
        parts = [f"n={self.n}"]
        parts += [f"replica {r.id} {r.public_key.hex()}" for r in self.replicas]
        parts += [f"{name}={getattr(self, name)}" for name in BOUND_NAMES]
        parts += [f"client {key.hex()}" for key in self.clients]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @property
    def client_capacity(self) -> int:
        """N8': how many clients the reply cache holds: the admitted clients when they are
        listed (the cache never needs more), `client_table_max` under open admission."""
        return len(self.clients) or self.client_table_max


#: The fields of ClusterConfig that are not bounds (TOML gives them their own shapes).
_NOT_BOUNDS = ("replicas", "clients")
#: Every bound of ClusterConfig, in declaration order: integer top-level TOML keys.
BOUND_NAMES: tuple[str, ...] = tuple(
    f.name for f in fields(ClusterConfig) if f.name not in _NOT_BOUNDS
)
_REPLICA_KEYS = ("id", "public_key", "host", "port", "metrics_host", "metrics_port")


def _is_int(value: object) -> bool:
    # bool is an int subclass; `batch_size_max = true` is a typo, not 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_replicas(replicas: tuple[ReplicaInfo, ...]) -> None:
    n = len(replicas)
    if n < 4:
        raise ConfigError(
            f"n = {n} replicas: PBFT needs n = 3f + 1 >= 4 replicas to tolerate f >= 1 fault"
        )
    seen_ids: dict[int, int] = {}
    seen_keys: dict[bytes, int] = {}
    for index, replica in enumerate(replicas):
        where = f"replicas[{index}]"
        if not isinstance(replica, ReplicaInfo):
            raise ConfigError(f"{where} must be a ReplicaInfo, got {type(replica).__name__}")
        if not _is_int(replica.id):
            raise ConfigError(f"{where}.id must be an integer, got {type(replica.id).__name__}")
        if replica.id in seen_ids:
            raise ConfigError(
                f"duplicate replica id {replica.id} (replicas[{seen_ids[replica.id]}] and {where})"
            )
        seen_ids[replica.id] = index
        if not isinstance(replica.public_key, bytes):
            raise ConfigError(
                f"{where}.public_key must be bytes, got {type(replica.public_key).__name__}"
            )
        if len(replica.public_key) != PUBLIC_KEY_BYTES:
            raise ConfigError(
                f"{where}.public_key must be {PUBLIC_KEY_BYTES} bytes (Ed25519), "
                f"got {len(replica.public_key)}"
            )
        if replica.public_key in seen_keys:
            raise ConfigError(
                f"duplicate public key: replicas[{seen_keys[replica.public_key]}] and {where} "
                f"share {replica.public_key.hex()}"
            )
        seen_keys[replica.public_key] = index
        if not isinstance(replica.host, str) or not replica.host:
            raise ConfigError(f"{where}.host must be a non-empty string, got {replica.host!r}")
        if not _is_int(replica.port) or not 0 <= replica.port <= PORT_MAX:
            raise ConfigError(
                f"{where}.port must be an integer in 0..{PORT_MAX}, got {replica.port!r}"
            )
        _check_metrics_address(where, replica)
    # Ids are positions: the primary of view v is replicas[v mod n].
    for index, replica in enumerate(replicas):
        if replica.id != index:
            raise ConfigError(
                f"replicas[{index}] has id {replica.id}: replica ids must be 0..{n - 1} in order"
            )


def _check_metrics_address(where: str, replica: ReplicaInfo) -> None:
    host, port = replica.metrics_host, replica.metrics_port
    if host is not None and (not isinstance(host, str) or not host):
        raise ConfigError(f"{where}.metrics_host must be a non-empty string, got {host!r}")
    if port is not None and (not _is_int(port) or not 1 <= port <= PORT_MAX):
        # 0 ("any free port") would be an address nobody can find: status asks this one.
        raise ConfigError(f"{where}.metrics_port must be an integer in 1..{PORT_MAX}, got {port!r}")
    address = replica.metrics_address()
    if address is not None and address == (replica.host, replica.port):
        raise ConfigError(
            f"{where}: the metrics endpoint {address[0]}:{address[1]} is the replica's own address"
        )


#: Bounds that may be 0 (a delay that can be switched off); every other bound is positive.
_ZERO_ALLOWED = frozenset({"batch_delay_ms", "propose_timeout_ms"})


def _check_bounds(config: ClusterConfig) -> None:
    for name in BOUND_NAMES:
        value = getattr(config, name)
        if not _is_int(value):
            raise ConfigError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
        if name in _ZERO_ALLOWED:
            if value < 0:
                raise ConfigError(f"{name} must be 0 or more, got {value}")
        elif value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    if config.batch_delay_ms >= config.request_timeout_ms:
        raise ConfigError(
            f"batch_delay_ms = {config.batch_delay_ms} must be below "
            f"request_timeout_ms = {config.request_timeout_ms}"
        )
    k, window = config.checkpoint_interval, config.log_window
    if window % k != 0 or window < 2 * k:
        raise ConfigError(
            f"log_window = {window} must be a multiple of checkpoint_interval = {k} "
            f"and at least 2 * checkpoint_interval = {2 * k}"
        )
    if not config.batch_delay_ms < config.propose_timeout <= config.request_timeout_ms:
        raise ConfigError(
            f"propose_timeout_ms = {config.propose_timeout_ms} must be above batch_delay_ms = "
            f"{config.batch_delay_ms} and at most request_timeout_ms = {config.request_timeout_ms}"
        )
    _check_message_sizes(config)
    if config.batch_size_max > BATCH_SIZE_CEILING:
        raise ConfigError(
            f"batch_size_max = {config.batch_size_max} exceeds the ceiling {BATCH_SIZE_CEILING}"
        )


def _check_clients(config: ClusterConfig) -> None:
    replica_keys = {r.public_key: r.id for r in config.replicas}
    seen: dict[bytes, int] = {}
    for index, key in enumerate(config.clients):
        where = f"clients[{index}]"
        if not isinstance(key, bytes):
            raise ConfigError(f"{where} must be bytes, got {type(key).__name__}")
        if len(key) != PUBLIC_KEY_BYTES:
            raise ConfigError(
                f"{where} must be {PUBLIC_KEY_BYTES} bytes (Ed25519), got {len(key)}"
            )
        if key in seen:
            raise ConfigError(f"duplicate client key: clients[{seen[key]}] and {where}")
        seen[key] = index
        if key in replica_keys:
            raise ConfigError(f"{where} is the public key of replica {replica_keys[key]}")
    if len(config.clients) > config.client_table_max:
        raise ConfigError(
            f"client_table_max = {config.client_table_max} is below the "
            f"{len(config.clients)} admitted clients (clients): the reply cache must hold "
            "every one of them"
        )


def _check_message_sizes(config: ClusterConfig) -> None:
    """Every message a correct replica builds must fit one frame: a batch too large to send
    would be rebuilt by every new primary and stop the cluster for good."""
    from .core import sizes  # the core imports this module: import its size bounds lazily

    frame = config.frame_bytes_max
    largest_request = sizes.REQUEST_OVERHEAD_BYTES + config.operation_bytes_max
    if sizes.PRE_PREPARE_OVERHEAD_BYTES + largest_request > config.batch_bytes_max:
        raise ConfigError(
            f"batch_bytes_max = {config.batch_bytes_max} cannot hold one request of "
            f"operation_bytes_max = {config.operation_bytes_max} "
            f"(needs {sizes.PRE_PREPARE_OVERHEAD_BYTES + largest_request})"
        )
    logged_batch = (sizes.CONTAINER_OVERHEAD_BYTES + config.batch_bytes_max
                    + sizes.VOTE_BYTES * config.n)
    if logged_batch > frame:
        raise ConfigError(
            f"batch_bytes_max = {config.batch_bytes_max}: a batch with its {config.n} COMMITs "
            f"needs {logged_batch} bytes, above frame_bytes_max = {frame}"
        )
    if largest_request > config.pending_bytes_max:
        raise ConfigError(
            f"pending_bytes_max = {config.pending_bytes_max} cannot hold one request of "
            f"operation_bytes_max = {config.operation_bytes_max}"
        )
    if config.stash_bytes_max < config.batch_bytes_max:
        raise ConfigError(
            f"stash_bytes_max = {config.stash_bytes_max} must hold at least one batch "
            f"(batch_bytes_max = {config.batch_bytes_max})"
        )
    state_chunk = sizes.state_chunk_bytes_max(config)
    if state_chunk > frame:
        raise ConfigError(
            f"state_chunk_bytes = {config.state_chunk_bytes}: a STATE-CHUNK with its proof "
            f"needs {state_chunk} bytes, above frame_bytes_max = {frame}"
        )
    view_change = sizes.view_change_bytes_max(config)
    new_view = sizes.new_view_bytes_max(config)
    if max(view_change, new_view) > frame:
        raise ConfigError(
            f"log_window = {config.log_window} with n = {config.n}: a VIEW-CHANGE may need "
            f"{view_change} bytes and a NEW-VIEW {new_view}, above frame_bytes_max = {frame}"
        )


def loads(text: str) -> ClusterConfig:
    """Parse and validate a TOML cluster configuration.

    Format: top-level bound keys (`batch_size_max = 100`, any subset; the rest keep their
    defaults), an optional `f`, which must equal (n - 1) // 3, an optional `clients` array of
    admitted client keys (64 hex digits each; absent or empty: open admission), and one
    `[[replicas]]` table per replica with `id`, `public_key` (64 hex digits), and optional
    `host`, `port`, `metrics_host` and `metrics_port` (see `ReplicaInfo`).
    Raises ConfigError on TOML syntax errors, unknown keys (typos are never ignored), wrong
    types and invalid values; the message names the key.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"invalid TOML: {error}") from None
    return _from_document(document)


def load(path: str | PathLike[str]) -> ClusterConfig:
    """Read a TOML cluster configuration from `path` (see `loads`).

    Raises ConfigError on invalid content; OSError if the file cannot be read.
    """
    with open(path, "rb") as file:
        raw = file.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8: {error}") from None
    return loads(text)


def dumps(config: ClusterConfig) -> str:
    """The TOML text of `config`: every bound, `f`, the admitted clients and every replica;
    `loads` inverts it."""
    document: dict[str, Any] = {"f": config.f}
    for name in BOUND_NAMES:
        document[name] = getattr(config, name)
    document["clients"] = [key.hex() for key in config.clients]
    document["replicas"] = [_replica_table(r) for r in config.replicas]
    return tomli_w.dumps(document)


def _replica_table(replica: ReplicaInfo) -> dict[str, Any]:
    table: dict[str, Any] = {"id": replica.id, "public_key": replica.public_key.hex(),
                             "host": replica.host, "port": replica.port}  # fmt: skip
    # TOML has no null: an unset metrics address is an absent key.
    if replica.metrics_host is not None:
        table["metrics_host"] = replica.metrics_host
    if replica.metrics_port is not None:
        table["metrics_port"] = replica.metrics_port
    return table


def dump(config: ClusterConfig, path: str | PathLike[str]) -> None:
    """Write `dumps(config)` to `path`, replacing it; raises OSError if it cannot be written."""
    with open(path, "w", encoding="utf-8", newline="\n") as file:
        file.write(dumps(config))


def _from_document(document: dict[str, Any]) -> ClusterConfig:
    allowed = {*BOUND_NAMES, "f", *_NOT_BOUNDS}
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s): {', '.join(unknown)}")
    bounds: dict[str, int] = {}
    for name in BOUND_NAMES:
        if name in document:
            value = document[name]
            if not _is_int(value):
                raise ConfigError(f"{name} must be an integer, got {type(value).__name__}")
            bounds[name] = value
    if "replicas" not in document:
        raise ConfigError("missing [[replicas]] tables")
    tables = document["replicas"]
    if not isinstance(tables, list):
        raise ConfigError("replicas must be an array of tables ([[replicas]])")
    replicas = tuple(_replica_from_table(index, table) for index, table in enumerate(tables))
    clients = _clients_from_array(document.get("clients", []))
    config = ClusterConfig(replicas, **bounds, clients=clients)
    if "f" in document:
        f = document["f"]
        if not _is_int(f):
            raise ConfigError(f"f must be an integer, got {type(f).__name__}")
        if f != config.f:
            raise ConfigError(
                f"f inconsistent: f = {f} but n = {config.n} replicas tolerate f = {config.f}"
            )
    return config


def _clients_from_array(array: object) -> tuple[bytes, ...]:
    if not isinstance(array, list):
        raise ConfigError(f"clients must be an array of hex strings, got {type(array).__name__}")
    keys = []
    for index, key_hex in enumerate(array):
        if not isinstance(key_hex, str):
            raise ConfigError(
                f"clients[{index}] must be a hex string, got {type(key_hex).__name__}"
            )
        try:
            keys.append(bytes.fromhex(key_hex))
        except ValueError:
            raise ConfigError(f"clients[{index}] is not valid hex: {key_hex!r}") from None
    return tuple(keys)


def _replica_from_table(index: int, table: object) -> ReplicaInfo:
    where = f"replicas[{index}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(_REPLICA_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(unknown)}")
    for required in ("id", "public_key"):
        if required not in table:
            raise ConfigError(f"{where}: missing key {required}")
    replica_id = table["id"]
    if not _is_int(replica_id):
        raise ConfigError(f"{where}.id must be an integer, got {type(replica_id).__name__}")
    key_hex = table["public_key"]
    if not isinstance(key_hex, str):
        raise ConfigError(f"{where}.public_key must be a hex string, got {type(key_hex).__name__}")
    try:
        public_key = bytes.fromhex(key_hex)
    except ValueError:
        raise ConfigError(f"{where}.public_key is not valid hex: {key_hex!r}") from None
    host = table.get("host", "127.0.0.1")
    if not isinstance(host, str):
        raise ConfigError(f"{where}.host must be a string, got {type(host).__name__}")
    port = table.get("port", 0)
    if not _is_int(port):
        raise ConfigError(f"{where}.port must be an integer, got {type(port).__name__}")
    metrics_host = table.get("metrics_host")
    if metrics_host is not None and not isinstance(metrics_host, str):
        raise ConfigError(
            f"{where}.metrics_host must be a string, got {type(metrics_host).__name__}"
        )
    metrics_port = table.get("metrics_port")
    if metrics_port is not None and not _is_int(metrics_port):
        raise ConfigError(
            f"{where}.metrics_port must be an integer, got {type(metrics_port).__name__}"
        )
    return ReplicaInfo(id=replica_id, public_key=public_key, host=host, port=port,
                       metrics_host=metrics_host, metrics_port=metrics_port)  # fmt: skip
