"""Messages a replica keeps for later, per sender (V3', C2'): bookkeeping only.

The replica decides what is worth keeping (a message of the next view, or of this view just
above the high watermark), checks its signature, and replays what `take_all` returns.
"""

from __future__ import annotations

from collections.abc import Callable

from ..messages import Message
from . import sizes


class Stash:
    """Per sender, messages in arrival order: at most `count_max` messages and `bytes_max`
    encoded bytes (`sizes.message_bytes`) each, so that one sender can never hold more than
    its share. Holds nothing else; senders are whatever the caller keys them by."""

    __slots__ = ("_messages", "_bytes", "_count_max", "_bytes_max")

    def __init__(self, count_max: int, bytes_max: int) -> None:
        self._messages: dict[int, list[Message]] = {}
        self._bytes: dict[int, int] = {}
        self._count_max = count_max
        self._bytes_max = bytes_max

    def __bool__(self) -> bool:
        return bool(self._messages)

    def __len__(self) -> int:
        """How many messages are kept, from all senders."""
        return sum(len(messages) for messages in self._messages.values())

    @property
    def bytes(self) -> int:
        """The bytes kept, from all senders."""
        return sum(self._bytes.values())

    def bytes_of(self, sender: int) -> int:
        return self._bytes.get(sender, 0)

    def has_room(self, sender: int, size: int) -> bool:
        """Whether `sender` may have one more message of `size` bytes kept."""
        return (self._bytes.get(sender, 0) + size <= self._bytes_max
                and len(self._messages.get(sender, ())) < self._count_max)

    def add(self, sender: int, message: Message, size: int) -> None:
        """Keep `message` of `sender`, `size` bytes; the caller checked `has_room`."""
        assert self.has_room(sender, size)
        self._messages.setdefault(sender, []).append(message)
        self._bytes[sender] = self._bytes.get(sender, 0) + size

    def keep_only(self, wanted: Callable[[Message], bool]) -> None:
        """Drop every message for which `wanted` is false."""
        for sender in list(self._messages):
            kept = [m for m in self._messages[sender] if wanted(m)]
            if kept:
                self._messages[sender] = kept
                self._bytes[sender] = sum(sizes.message_bytes(m) for m in kept)
            else:
                del self._messages[sender]
                del self._bytes[sender]

    def take_all(self) -> list[Message]:
        """Everything kept, sender by sender (in the order senders were first kept), each
        sender's in arrival order; the stash is empty afterwards."""
        messages = [m for kept in self._messages.values() for m in kept]
        self._messages, self._bytes = {}, {}
        return messages
