"""Catalogue scenarios that run trade-finance scripts (`simulations.trade`) on four replicas of
the ledger of TRADE-DOMAIN.md, one of them Byzantine (which one, and how it lies, is drawn from
the seed), over a network whose faults are drawn from the seed too.

Each is judged by `check_trade`: every result a client accepted equals a sequential replay of a
correct replica's executed log, every step ends as its script expects, and the correct replicas
end with one ledger digest that satisfies the ledger's invariants. They register in the same
catalogue as the others (`simulations.scenarios` imports this module last):

    python -m simulations run trade_financing_double --seed 3
    python -m simulations run trade_financing_same_batch --seed 3
    python -m simulations sweep --scenarios trade_financing_double,trade_lc_flow --seeds 1-20
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from pbft.messages import PrePrepare
from tradeapp.commands import (
    Accepted,
    DeclAccept,
    DeclLodge,
    DeclRelease,
    EblIssue,
    EblSurrenderAccept,
    EblSurrenderRequest,
    FinApprove,
    FinRequest,
    GetInvoice,
    GetLc,
    InvRegister,
    LcAdvise,
    LcApply,
    LcClose,
    LcIssue,
    PresAttach,
    PresComplete,
    PresHonour,
    PresMarkComplying,
    PresOpen,
    PresReimburse,
    PresReleaseDocs,
    Rejected,
    Result,
)
from tradeapp.errors import ErrorCode
from tradeapp.scenario import at

from .byzantine import Behaviour, EquivocatingPrimary, Silent, TamperedRequest
from .engine import Simulation
from .network import NetworkProfile
from .scenarios import scenario
from .trade import (
    Concurrently,
    LyingReplies,
    ScriptStep,
    Step,
    TradeRun,
    cast_recorder,
    check_trade,
    trade_simulation,
)

USD_100K = 10_000_000  # in cents
TRADE_SEEDS = tuple(range(1, 21))
NETWORK_HEALS_MS = 2_000

#: The Byzantine replica of a run, by seed modulo 6: (description, behaviour, replica).
BYZANTINE_BY_SEED: tuple[tuple[str, Callable[[], Behaviour], int], ...] = (
    ("equivocating primary", EquivocatingPrimary, 0),
    ("backup lying in its replies", LyingReplies, 2),
    ("silent backup", Silent, 3),
    ("primary tampering with requests", TamperedRequest, 0),
    ("primary that never proposes", lambda: Silent(types=(PrePrepare,)), 0),
    ("silent primary", Silent, 0),
)


def seeded_trade_simulation(
    seed: int, script: list[ScriptStep], *, config_overrides: dict[str, Any] | None = None,
    **options: Any,
) -> Simulation:  # fmt: skip
    """Four ledger replicas, the seed's Byzantine replica (BYZANTINE_BY_SEED), the seed's
    network (latency always, loss and duplication for some seeds, until NETWORK_HEALS_MS),
    playing `script`. `config_overrides` are cluster options (`pbft.config.ClusterConfig`
    fields: `batch_delay_ms` to gather concurrent requests into one batch); `options` go to
    `trade_simulation` and the `Simulation` (e.g. `behaviours={}` for no faulty replica, or
    `network=`), replacing the seed's choice. Raises ValueError for invalid cluster options."""
    _, behaviour, replica = BYZANTINE_BY_SEED[seed % len(BYZANTINE_BY_SEED)]
    options.setdefault("behaviours", {replica: behaviour()})
    options.setdefault("network", NetworkProfile.draw(random.Random(seed ^ 0x7EADE)))
    sim = trade_simulation(seed=seed, config_overrides=config_overrides, **options)
    # Liveness is owed once the network is stable: loss and duplication stop at 2 s.
    sim.at(NETWORK_HEALS_MS, lambda s: s.network.heal())
    TradeRun(sim, script)
    return sim


# ------------------------------------------------------------------ double financing


def _exactly_one_wins(results: list[Result]) -> str | None:
    """Of two approvals of one receivable, one is applied, the other ALREADY_ENCUMBERED."""
    won = [r for r in results if isinstance(r, Accepted)]
    lost = [r for r in results if isinstance(r, Rejected)]
    if len(won) != 1 or len(lost) != 1 or lost[0].code != ErrorCode.ALREADY_ENCUMBERED:
        return f"expected one approval and one ALREADY_ENCUMBERED, got {results}"
    return None


def double_financing_script() -> list[ScriptStep]:
    """TRADE-DOMAIN.md, financing: EXP-QD asks three banks to finance the same receivable;
    BANK-A and BANK-B approve at the same moment (exactly one wins), BANK-I approves later and
    is refused; BANK-I sees that the receivable is encumbered, never by whom."""
    recorder = cast_recorder(at("2024-03-01"))
    recorder.ok(
        "EXP-QD",
        DeclLodge(
            decl_id="D-9", customs="CUSTOMS-QD", buyer="IMP-NL", goods_description="LED lamps",
            hs_code="9405.42", currency="USD", declared_value_minor=USD_100K,
        ),
    )  # fmt: skip
    recorder.ok("CUSTOMS-QD", DeclAccept(decl_id="D-9"))
    recorder.ok("CUSTOMS-QD", DeclRelease(decl_id="D-9"))
    recorder.ok(
        "EXP-QD",
        InvRegister(
            invoice_id="INV-9", buyer="IMP-NL", invoice_no="2024/0099", currency="USD",
            amount_minor=USD_100K, issue_date="2024-03-01",
        ),
    )  # fmt: skip
    for fin_id, lender in (("F-A", "BANK-A"), ("F-B", "BANK-B"), ("F-I", "BANK-I")):
        recorder.ok(
            "EXP-QD",
            FinRequest(
                fin_id=fin_id, lender=lender, invoice_id="INV-9", decl_ids=["D-9"],
                currency="USD", amount_minor=USD_100K // 2,
            ),
        )  # fmt: skip
    race = Concurrently(
        (
            Step("BANK-A", FinApprove(fin_id="F-A", rate_bp=300), expect=None),
            Step("BANK-B", FinApprove(fin_id="F-B", rate_bp=400), expect=None),
        ),
        _exactly_one_wins,
        "BANK-A and BANK-B approve the same receivable at once",
    )
    rival_view = {
        "invoice_id": "INV-9", "encumbered": True, "settled": False,
        "remaining_minor": USD_100K // 2,
    }  # fmt: skip
    return [
        *recorder.script,
        race,
        Step("BANK-I", FinApprove(fin_id="F-I", rate_bp=350), ErrorCode.ALREADY_ENCUMBERED),
        Step("BANK-I", GetInvoice(invoice_id="INV-9"), read=True,
             check=lambda value: value == rival_view),
    ]


@scenario("trade_financing_double", "trade ledger: two banks finance one receivable at once "
                                    "(one wins), a third is refused; a Byzantine replica and "
                                    "network faults drawn from the seed",
          seeds=TRADE_SEEDS, linearizability=check_trade)
def _financing_double(seed: int) -> Simulation:
    return seeded_trade_simulation(seed, double_financing_script())


#: A batching delay long enough that the primary gathers requests sent at one moment.
SAME_BATCH_DELAY_MS = 200


@scenario("trade_financing_same_batch", "trade ledger: trade_financing_double with a batching "
                                        "delay, so that both banks' approvals land in one "
                                        "batch (exactly one wins on every replica)",
          seeds=TRADE_SEEDS, linearizability=check_trade)
def _financing_same_batch(seed: int) -> Simulation:
    return seeded_trade_simulation(
        seed, double_financing_script(),
        config_overrides={"batch_delay_ms": SAME_BATCH_DELAY_MS},
    )  # fmt: skip


# ------------------------------------------------------------------ letter of credit


def lc_flow_script() -> list[ScriptStep]:
    """TRADE-DOMAIN.md scenario 1 in short: a sight LC from application to close with a
    complying presentation of an eBL; the refusals on the way (a second honour, a rival bank's
    read) must come back with their codes."""
    recorder = cast_recorder(at("2024-03-01"))
    recorder.ok(
        "IMP-NL",
        LcApply(
            lc_id="LC-9", issuing_bank="BANK-I", advising_bank="BANK-A", beneficiary="EXP-QD",
            currency="USD", amount_minor=USD_100K, expiry_date="2024-06-30",
            latest_shipment_date="2024-05-31", presentation_period_days=21,
            goods_description="LED lamps, 20,000 pcs",
        ),
    )  # fmt: skip
    recorder.ok("BANK-I", LcIssue(lc_id="LC-9"))
    recorder.refused("BANK-B", LcAdvise(lc_id="LC-9"), ErrorCode.UNAUTHORIZED)
    recorder.ok("BANK-A", LcAdvise(lc_id="LC-9"))
    recorder.now_ms = at("2024-04-10")
    ebl_id = recorder.ok(
        "CARRIER-1",
        EblIssue(
            bl_no="BL-9", shipper="EXP-QD", consignee="IMP-NL", holder="EXP-QD",
            goods_description="LED lamps", port_of_loading="Qingdao",
            port_of_discharge="Rotterdam", shipped_on_board_date="2024-04-10",
        ),
    )["ebl_id"]  # fmt: skip
    recorder.now_ms = at("2024-04-15")
    recorder.ok("EXP-QD", PresOpen(pres_id="P-9", lc_id="LC-9"))
    recorder.ok(
        "EXP-QD", PresAttach(pres_id="P-9", doc_type="ebl", ref=ebl_id, content_digest=None)
    )
    presented = recorder.ok("EXP-QD", PresComplete(pres_id="P-9", amount_minor=USD_100K))
    assert presented["deadline"] == "2024-04-22"
    recorder.now_ms = at("2024-04-16")
    recorder.ok("BANK-I", PresMarkComplying(pres_id="P-9"))
    recorder.ok("BANK-I", PresHonour(pres_id="P-9"))
    recorder.refused("BANK-I", PresHonour(pres_id="P-9"), ErrorCode.ALREADY_HONOURED)
    recorder.ok("BANK-I", PresReimburse(pres_id="P-9"))
    recorder.ok("BANK-I", PresReleaseDocs(pres_id="P-9"))
    recorder.ok("IMP-NL", EblSurrenderRequest(ebl_id=ebl_id))
    recorder.ok("CARRIER-1", EblSurrenderAccept(ebl_id=ebl_id))
    recorder.ok("BANK-I", LcClose(lc_id="LC-9"))
    recorder.read("BANK-B", GetLc(lc_id="LC-9"))  # FORBIDDEN
    recorder.read("IMP-NL", GetLc(lc_id="LC-9"))
    return recorder.script


@scenario("trade_lc_flow", "trade ledger: a sight LC from application to close (eBL, "
                           "complying presentation, honour, surrender); a Byzantine replica "
                           "and network faults drawn from the seed",
          seeds=TRADE_SEEDS, linearizability=check_trade)
def _lc_flow(seed: int) -> Simulation:
    return seeded_trade_simulation(seed, lc_flow_script())
