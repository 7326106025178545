"""The per-client reply cache (N8): each request executes at most once.

Part of the replicated state: it changes only at execution, in sequence order, so it is equal on
every correct replica at equal sequence numbers and is covered by the checkpoint digest.
"""

from __future__ import annotations

from typing import NamedTuple

from ..codec import packb_canonical, unpackb_canonical
from ..crypto import sha256


class ClientRecord(NamedTuple):
    """The last request executed for one client and the result it produced."""

    timestamp: int
    result: bytes
    sequence: int


class ClientTable:
    """Last executed timestamp and result per client, for at most `capacity` clients.

    Admission policy (N8'). Exactly-once rests on this table: a request executes only if its
    timestamp is above its client's record, so a client whose record were dropped could have
    any old signed request of its own executed again (replayed by a faulty replica). Hence:

    - Who is a client. With `ClusterConfig.clients` listed, those keys and no others: a replica
      drops any other key's request before checking its signature, and a backup refuses a
      PRE-PREPARE that carries one. An application may also decide, through the ordered log,
      whom it serves (`StateMachine.admits`, e.g. the trade ledger's participants). With
      neither, any key is a client (open admission).
    - What bounds the table. `ClusterConfig.client_capacity`: the number of listed clients (the
      table then never fills), otherwise `client_table_max`.
    - No eviction, ever. A record, once written, is only ever replaced by the same client's
      newer one. When the table is full, a request from a client not in it is refused at
      execution (not executed, no record, no reply); the decision depends only on the table,
      which is equal on every correct replica at equal sequence numbers, so all refuse the
      same requests. Under open admission, then, the first `client_table_max` clients keep
      being served and later ones are not: an attacker who generates keys can lock new
      clients out (list the clients, or let the application admit them, to prevent that), but
      can never make a request execute twice.
    - A refused client (not admitted, table full, or revoked by the application) gets nothing
      executed; a record it already has is kept, so its old requests stay refused if it is
      admitted again later.

    `record` for a client with no room raises ValueError: callers check `has_room_for` first.
    Entries are kept in the order of each client's first execution, which is itself replicated
    state, so the snapshot is deterministic without sorting.
    """

    __slots__ = ("_records", "_capacity")

    def __init__(self, capacity: int) -> None:
        self._records: dict[bytes, ClientRecord] = {}
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._records)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def full(self) -> bool:
        return len(self._records) >= self._capacity

    def has_room_for(self, client: bytes) -> bool:
        """Whether a request of `client` may execute: it has a record, or the table has room."""
        return client in self._records or len(self._records) < self._capacity

    def get(self, client: bytes) -> ClientRecord | None:
        return self._records.get(client)

    def last_timestamp(self, client: bytes) -> int:
        record = self._records.get(client)
        return -1 if record is None else record[0]

    def record(self, client: bytes, timestamp: int, result: bytes, sequence: int) -> None:
        records = self._records
        if client not in records and len(records) >= self._capacity:
            raise ValueError(f"the client table is full ({self._capacity} clients)")
        records[client] = ClientRecord(timestamp, result, sequence)

    def snapshot(self) -> bytes:
        """Canonical bytes: entries in the order of each client's first execution."""
        return packb_canonical(
            [[client, r.timestamp, r.result, r.sequence] for client, r in self._records.items()]
        )

    def restore(self, snapshot: bytes) -> None:
        """Replace the table with one from `snapshot()` (bytes already checked by digest)."""
        self._records.clear()
        for client, timestamp, result, sequence in unpackb_canonical(snapshot):
            self._records[client] = ClientRecord(timestamp, result, sequence)

    def digest(self) -> bytes:
        return sha256(self.snapshot())
