"""The invoice fingerprint: one receivable, however it was keyed in, gives one SHA-256.

A re-keyed copy of an invoice ("inv-0042" for "INV 42", "2024-1" for "2024/0001") must collide
with the original, so the invoice number is normalised first: upper case, leading zeros of each
run of digits removed, every character that is not an ASCII letter or digit removed
("A-007/B0" -> "A7B0").
"""

from __future__ import annotations

import msgpack

from pbft.crypto import sha256

_FINGERPRINT_TAG = "tradeapp/invoice-fingerprint/1"


def normalise_invoice_number(invoice_no: str) -> str:
    """Upper case, ASCII alphanumerics only, leading zeros of every digit run dropped (a run of
    zeros alone becomes "0"). Digit runs are taken as keyed, before separators go, so that
    "2024/0001" and "2024-1" agree ("20241")."""
    out: list[str] = []
    run: list[str] = []
    for ch in invoice_no.upper() + " ":  # the trailing space ends the last run
        if ch.isascii() and ch.isdigit():
            run.append(ch)
            continue
        if run:
            out.append("".join(run).lstrip("0") or "0")
            run = []
        if ch.isascii() and ch.isalpha():
            out.append(ch)
    return "".join(out)


def invoice_fingerprint(
    *,
    seller_tax_id: str,
    buyer: str,
    invoice_no: str,
    currency: str,
    amount_minor: int,
    issue_date: str,
) -> bytes:
    """SHA-256 over the canonical encoding of (seller tax id, buyer, normalised invoice number,
    currency, amount, issue date). The buyer is compared as given (upper-cased, trimmed)."""
    fields = [
        _FINGERPRINT_TAG,
        seller_tax_id.strip().upper(),
        buyer.strip().upper(),
        normalise_invoice_number(invoice_no),
        currency,
        amount_minor,
        issue_date,
    ]
    return sha256(msgpack.packb(fields, use_bin_type=True))
