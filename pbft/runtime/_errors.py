"""Exceptions out of nurseries: trio (strict exception groups) wraps whatever escapes a nursery
in an ExceptionGroup, even a lone error raised by the caller's own code. Public context
managers and servers of the runtime unwrap such a lone error so that callers can write
`except NoQuorumError` / `except StorageError`; groups of several errors stay groups."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio


@contextlib.contextmanager
def unwrap_single_error() -> Iterator[None]:
    """Re-raise the only exception of an escaping group (not a Cancelled: trio's cancel scopes
    handle those themselves) as itself, its traceback kept."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exception in group.exceptions:
        if isinstance(exception, BaseExceptionGroup):
            found.extend(_leaves(exception))
        else:
            found.append(exception)
    return found
