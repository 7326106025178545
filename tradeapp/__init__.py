"""The replicated trade-finance ledger: a deterministic `pbft.app.StateMachine` for banks,
regulators, carriers and traders (see docs/TRADE-DOMAIN.md and tradeapp/README.md).

The public surface: `TradeLedger` (the state machine), the operation builders and result
decoding of `tradeapp.commands` (one dataclass per command and query), `ErrorCode`, `Role`,
`Money`, and the lifecycle tables of `tradeapp.transitions`.
"""

from .commands import (
    COMMANDS,
    OPERATIONS,
    QUERIES,
    Accepted,
    Operation,
    Rejected,
    Result,
    decode_operation,
    decode_result,
)
from .errors import ErrorCode
from .machine import TradeLedger
from .model import Role
from .money import CURRENCIES, Money
from .transitions import TRANSITIONS, Transition

__all__ = [
    "COMMANDS",
    "CURRENCIES",
    "OPERATIONS",
    "QUERIES",
    "TRANSITIONS",
    "Accepted",
    "ErrorCode",
    "Money",
    "Operation",
    "Rejected",
    "Result",
    "Role",
    "TradeLedger",
    "Transition",
    "decode_operation",
    "decode_result",
]
