"""The invoice fingerprint: one receivable, however it was keyed in, gives one SHA-256.

A re-keyed copy of an invoice ("inv-0042" for "INV 42") must collide with the original, so the
invoice number is normalised first: upper case, every character that is not an ASCII letter or
digit removed, leading zeros of each run of digits removed ("A-007/B0" -> "A7B0").
"""

from __future__ import annotations

import msgpack

from pbft.crypto import sha256

_FINGERPRINT_TAG = "tradeapp/invoice-fingerprint/1"


def normalise_invoice_number(invoice_no: str) -> str:
    """Upper case, ASCII alphanumerics only, leading zeros of every digit run dropped (a run of
    zeros alone becomes "0")."""
    kept = [ch for ch in invoice_no.upper() if ch.isascii() and ch.isalnum()]
    out: list[str] = []
    index = 0
    while index < len(kept):
        if not kept[index].isdigit():
            out.append(kept[index])
            index += 1
            continue
        end = index
        while end < len(kept) and kept[end].isdigit():
            end += 1
        out.append("".join(kept[index:end]).lstrip("0") or "0")
        index = end
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
