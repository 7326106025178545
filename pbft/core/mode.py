"""The replica's mode: what it is doing (normal case, view change, state fetch)."""

from __future__ import annotations

from enum import Enum


class Mode(Enum):
    """What a replica is doing: the one value that says whether its view is active and whether
    it is fetching a state.

    A state fetch (S1) and a view change (V1) can overlap: a VIEW-CHANGE, or a NEW-VIEW, may
    prove a stable checkpoint above our state in the middle of a view change, and a view change
    may start during a fetch. VIEW_CHANGE takes precedence: the fetch (`Replica._fetch`, the
    data of FETCHING_STATE) goes on through the view change, and when the view is installed the
    mode is FETCHING_STATE again if the fetch has not ended. Hence (`_check_invariants`):
    NORMAL never has a fetch, FETCHING_STATE always has one, VIEW_CHANGE may have one.
    """

    #: The view is active and our state is our own: we order and execute.
    NORMAL = "normal"
    #: Between sending a VIEW-CHANGE for `view` and installing its NEW-VIEW (V1–V5).
    VIEW_CHANGE = "view_change"
    #: The view is active, and the state of the stable checkpoint is being fetched (S1):
    #: we vote, but execute nothing until it is restored.
    FETCHING_STATE = "fetching_state"
