"""The per-client reply cache (N8): each request executes at most once.

Part of the replicated state: it changes only at execution, in sequence order, so it is equal on
every correct replica at equal sequence numbers and is covered by the checkpoint digest.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from ..codec import packb_canonical, unpackb_canonical
from ..crypto import sha256


class ClientRecord(NamedTuple):
    """The last request executed for one client and the result it produced."""

    timestamp: int
    result: bytes
    sequence: int


class ClientTable:
    """Last executed timestamp and result per client, bounded by `capacity` clients.

    When full, the client whose last execution is the oldest is forgotten: the eviction depends
    only on the execution history, so every replica forgets the same client. A forgotten client's
    replayed old request could execute again; size `client_table_max` above the number of
    clients a deployment admits.
    """

    __slots__ = ("_records", "_capacity")

    def __init__(self, capacity: int) -> None:
        self._records: OrderedDict[bytes, ClientRecord] = OrderedDict()
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._records)

    def get(self, client: bytes) -> ClientRecord | None:
        return self._records.get(client)

    def last_timestamp(self, client: bytes) -> int:
        record = self._records.get(client)
        return -1 if record is None else record[0]

    def record(self, client: bytes, timestamp: int, result: bytes, sequence: int) -> None:
        records = self._records
        if client in records:
            records.move_to_end(client)
        elif len(records) >= self._capacity:
            records.popitem(last=False)
        records[client] = ClientRecord(timestamp, result, sequence)

    def snapshot(self) -> bytes:
        """Canonical bytes: entries in eviction order (which is itself replicated state)."""
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
