"""A session of the trade-finance ledger on 4 replicas in this process: an exporter finances a
receivable with one bank, then offers the same receivable to a second bank, which the ledger
refuses (ALREADY_ENCUMBERED) on every replica alike. Each participant signs with its own key;
the key that signs a request is its actor."""

from contextlib import AsyncExitStack

import trio

from pbft.ed25519 import Ed25519Signer
from pbft.runtime import embedded_cluster
from tradeapp.client import TradeClient
from tradeapp.commands import Accepted, Rejected
from tradeapp.model import Role
from tradeapp.service import LedgerService

USD_100K = 10_000_000  # amounts are integers in minor units (cents)
FOUNDER = "FX-ADMIN"  # the founding administrator: the one participant no command admits
PARTICIPANTS = {"BANK-A": Role.BANK, "BANK-B": Role.BANK, "CUSTOMS-QD": Role.CUSTOMS,
                "EXP-QD": Role.TRADER}


async def session() -> None:
    keys = {name: Ed25519Signer.generate() for name in [FOUNDER, *PARTICIPANTS]}
    # Every replica starts from the same genesis: the founder's public key.
    founders = {FOUNDER: keys[FOUNDER].public_key}
    # clients=0: no configured client list; the ledger admits its own participants (N8').
    async with embedded_cluster(lambda: LedgerService(founders), clients=0) as cluster:
        async with AsyncExitStack() as connections:  # one connection per participant
            clients = {
                name: await connections.enter_async_context(
                    TradeClient.connect(cluster.config, key, actor=name))
                for name, key in keys.items()
            }  # fmt: skip
            await play(clients, keys)


async def play(c: dict[str, TradeClient], keys: dict[str, Ed25519Signer]) -> None:
    def show(who: str, what: str, result: Accepted | Rejected) -> None:
        if isinstance(result, Rejected):
            outcome = f"refused: {result.code.value} ({result.message})"
        else:
            outcome = f"ok {result.value.get('status', '')}".rstrip()
        print(f"{who:>10} {what:<28} {outcome}")

    for name, role in PARTICIPANTS.items():
        admitter = "BANK-A" if role is Role.TRADER else FOUNDER  # a bank sponsors its traders
        show(admitter, f"party.admit {name}", await c[admitter].party_admit(
            participant_id=name, role=role, legal_name=f"{name} Ltd", country="CN",
            tax_id=f"CN-{name}", public_key=keys[name].public_key, place="CN-QD"))
    show("EXP-QD", "decl.lodge D-1", await c["EXP-QD"].decl_lodge(
        decl_id="D-1", customs="CUSTOMS-QD", buyer="IMP-NL", buyer_country="NL",
        goods_description="LED lamps", hs_code="9405.42", currency="USD",
        declared_value_minor=USD_100K))
    show("CUSTOMS-QD", "decl.accept D-1", await c["CUSTOMS-QD"].decl_accept(decl_id="D-1"))
    show("CUSTOMS-QD", "decl.release D-1", await c["CUSTOMS-QD"].decl_release(decl_id="D-1"))
    show("EXP-QD", "inv.register INV-1", await c["EXP-QD"].inv_register(
        invoice_id="INV-1", buyer="IMP-NL", buyer_country="NL", invoice_no="2026/0042",
        currency="USD", amount_minor=USD_100K, issue_date="2026-11-30"))
    for fin_id, bank in (("F-1", "BANK-A"), ("F-2", "BANK-B")):
        show("EXP-QD", f"fin.request {fin_id} to {bank}", await c["EXP-QD"].fin_request(
            fin_id=fin_id, lender=bank, invoice_id="INV-1", decl_ids=["D-1"], currency="USD",
            amount_minor=8_000_000))
        show(bank, f"fin.approve {fin_id}", await c[bank].fin_approve(fin_id=fin_id, rate_bp=450))
    show("BANK-A", "get.financing F-1", await c["BANK-A"].get_financing(fin_id="F-1"))


if __name__ == "__main__":
    trio.run(session)
