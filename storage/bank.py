"""Bank statements in: ISO 20022 camt.053 / camt.054 and SWIFT MT940 → :class:`BankEntry` values.

- **camt.053** (bank-to-customer statement, ``BkToCstmrStmt/Stmt``) and **camt.054** (debit/credit
  notification, ``BkToCstmrDbtCdtNtfctn/Ntfctn``), versions 001.02 to 001.08: elements are read by
  their local names under the document's own namespace, so every version of the schema reads the
  same; where versions differ (``Sts`` text in 02–03 vs ``Sts/Cd`` from 04, ``Dbtr/Nm`` vs
  ``Dbtr/Pty/Nm`` from 08) both spellings are read. lxml parses with entity resolution, DTD loading
  and network access off and huge-tree protection on (XXE, billion laughs).
- **MT940** through the ``mt-940`` library; the ``:86:`` information of German banks (``?20``–``?29``
  remittance, ``?32``/``?33`` payer name, ``?31`` payer IBAN, ``?30`` BIC) is split by the library's
  ``transaction_details`` processor.

Every entry keeps its direction: ``credit`` (a payment in), ``debit``, ``return`` (a returned
direct debit or credit transfer: camt ``RtrInf``, MT940 GV codes 109/159/…) and ``reversal``
(``RvslInd``, MT940 ``RC``/``RD``). Entries a file cannot deliver (no amount, a bad IBAN, an unknown
currency) become :class:`storage.sources.base.BadRow` s with ``file:entry`` location and a reason.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

import mt940
from lxml import etree
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from billing.errors import Invalid
from billing.money import is_currency
from storage.sources.base import BadRow

CAMT_VERSIONS = tuple(f"camt.05{k}.001.{v:02d}" for k in (3, 4) for v in range(2, 14))
# MT940 GV codes (German "Geschäftsvorfallcode") that mean a return of an earlier transaction.
RETURN_GV_CODES = frozenset({"109", "111", "159", "160", "185", "808"})


class BankEntry(NamedTuple):
    """One entry of a statement (immutable; a named tuple because a statement makes 100,000 of them and a
    frozen dataclass took about 2.5 times as long to build)."""

    account: str  # the statement account's IBAN (or account id)
    entry_ref: str  # the bank's reference for the entry (AcctSvcrRef / NtryRef / MT940 bank reference)
    booking_date: date
    value_date: date | None
    amount: Decimal  # signed: + money in, − money out
    currency: str
    kind: str  # credit | debit | return | reversal
    payer_name: str | None
    payer_iban: str | None
    payer_bic: str | None
    remittance: str | None
    end_to_end_id: str | None
    location: str
    raw: str


@dataclass
class Statement:
    format: str  # e.g. camt.053.001.08 or mt940
    entries: list[BankEntry]
    bad: list[BadRow]


def read_statement(path: Path) -> Statement:
    """Parse a bank file by its content (XML → camt, else MT940)."""
    data = path.read_bytes()
    head = data.lstrip()[:200]
    if head.startswith(b"<") or head.startswith(b"\xef\xbb\xbf<"):
        return parse_camt(data, name=path.name)
    return parse_mt940(data.decode("utf-8", errors="replace") if _utf8(data) else data.decode("latin-1"),
                       name=path.name)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------- camt.053 / camt.054


_PARSER_OPTS: dict[str, Any] = {"resolve_entities": False, "no_network": True, "load_dtd": False,
                                "dtd_validation": False, "huge_tree": False, "remove_comments": True}


# The entries are flattened by one XSLT pass (libxslt, in C) into records of fields: a statement of
# 100,000 entries is read in about a second, where per-field lookups from Python took tens of seconds.
# Fields are separated by U+E01F and records by U+E01E (private-use characters no bank file carries).
# Each statement (``Stmt`` / ``Ntfctn``) starts with a record of its account's two fields, read once
# rather than for every entry; the entry's first transaction and its parties are bound to variables,
# so their paths are walked once per entry.
_STATEMENT_PATHS: tuple[tuple[str, str], ...] = (
    ("account", "c:Acct/c:Id/c:IBAN|c:Acct/c:Id/c:Othr/c:Id"), ("acct_ccy", "c:Acct/c:Ccy"),
)
_ENTRY_VARIABLES = (("tx", "c:NtryDtls/c:TxDtls[1]"),  # the first transaction's details
                    ("rp", "$tx/c:RltdPties"), ("ra", "$tx/c:RltdAgts"))
_ENTRY_PATHS: tuple[tuple[str, str], ...] = (
    ("amount", "c:Amt"), ("ccy", "c:Amt/@Ccy"), ("cd", "c:CdtDbtInd"),
    ("sts_cd", "c:Sts/c:Cd"), ("sts", "c:Sts"),  # 001.04+: Sts/Cd; 001.02-03: Sts text
    ("booking", "c:BookgDt/c:Dt|c:BookgDt/c:DtTm"), ("value", "c:ValDt/c:Dt|c:ValDt/c:DtTm"),
    ("reversal", "c:RvslInd"), ("returned", "count($tx/c:RtrInf)"),
    ("dbtr", "$rp/c:Dbtr/c:Pty/c:Nm|$rp/c:Dbtr/c:Nm"),  # 001.08: Pty/Nm
    ("dbtr_iban", "$rp/c:DbtrAcct/c:Id/c:IBAN"),
    ("dbtr_bic", "$ra/c:DbtrAgt/c:FinInstnId/c:BICFI|$ra/c:DbtrAgt/c:FinInstnId/c:BIC"),
    ("cdtr", "$rp/c:Cdtr/c:Pty/c:Nm|$rp/c:Cdtr/c:Nm"),
    ("cdtr_iban", "$rp/c:CdtrAcct/c:Id/c:IBAN"),
    ("cdtr_bic", "$ra/c:CdtrAgt/c:FinInstnId/c:BICFI|$ra/c:CdtrAgt/c:FinInstnId/c:BIC"),
    ("ustrd", "$tx/c:RmtInf/c:Ustrd"), ("strd", "$tx/c:RmtInf/c:Strd/c:CdtrRefInf/c:Ref"),  # every one, joined
    ("e2e", "$tx/c:Refs/c:EndToEndId"),
    ("svcr_ref", "c:AcctSvcrRef"), ("ntry_ref", "c:NtryRef"), ("tx_ref", "$tx/c:Refs/c:AcctSvcrRef"),
    ("entry", "position()"),
)
_ENTRY_FIELDS = len(_ENTRY_PATHS)
_JOINED = frozenset({"ustrd", "strd"})
_SEP, _END = "<xsl:text>&#xE01F;</xsl:text>", "<xsl:text>&#xE01E;</xsl:text>"


def _field_xslt(name: str, path: str) -> str:
    if name in _JOINED:
        return (f'<xsl:for-each select="{path}"><xsl:if test="position() &gt; 1"><xsl:text> </xsl:text></xsl:if>'
                '<xsl:value-of select="normalize-space(.)"/></xsl:for-each>')
    if path.startswith(("count(", "position(")):
        return f'<xsl:value-of select="{path}"/>'
    return f'<xsl:value-of select="normalize-space({path})"/>'


_XSLT = (
    '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:c="{ns}">'
    '<xsl:output method="text" encoding="UTF-8"/><xsl:template match="/">'
    '<xsl:for-each select="/*/*/c:Stmt|/*/*/c:Ntfctn">'
    + _SEP.join(_field_xslt(n, p) for n, p in _STATEMENT_PATHS) + _END
    + '<xsl:for-each select="c:Ntry">'
    + "".join(f'<xsl:variable name="{n}" select="{p}"/>' for n, p in _ENTRY_VARIABLES)
    + _SEP.join(_field_xslt(n, p) for n, p in _ENTRY_PATHS) + _END
    + "</xsl:for-each></xsl:for-each></xsl:template></xsl:stylesheet>"
)


@functools.lru_cache(maxsize=32)
def _flattener(ns: str) -> etree.XSLT:
    # ``ns`` is a checked camt URN (CAMT_VERSIONS), so it is safe to place into the stylesheet
    return etree.XSLT(etree.fromstring(_XSLT.replace("{ns}", ns).encode()),
                      access_control=etree.XSLTAccessControl.DENY_ALL)


def parse_camt(data: bytes, *, name: str = "statement.xml") -> Statement:
    try:
        root = etree.fromstring(data, etree.XMLParser(**_PARSER_OPTS))
    except etree.XMLSyntaxError as e:
        raise Invalid(f"{name}: not well-formed XML ({e})") from None
    ns = etree.QName(root).namespace or ""
    version = ns.rsplit(":", 1)[-1]
    if not version.startswith(("camt.053.", "camt.054.")):
        raise Invalid(f"{name}: not a camt.053 or camt.054 document (namespace {ns or 'none'})")
    if version not in CAMT_VERSIONS:
        raise Invalid(f"{name}: {version} is not supported (camt.053/054 001.02 to 001.13)")
    text = str(_flattener(ns)(root))
    entries: list[BankEntry] = []
    bad: list[BadRow] = []
    statement, account, acct_ccy = 0, "", ""
    for record in text.split("\ue01e"):
        values = record.split("\ue01f")  # whitespace-normalised already (normalize-space)
        if len(values) == len(_STATEMENT_PATHS):  # a statement's account: its entries follow
            statement += 1
            account, acct_ccy = values
            continue
        if len(values) != _ENTRY_FIELDS:
            continue  # the text after the last record
        loc = f"{name}:statement {statement}:entry {values[-1]}"
        try:
            entries.append(_camt_entry(values, account, acct_ccy, statement, loc=loc))
        except ValueError as e:
            bad.append(BadRow(loc, _raw_entry(root, ns, statement, int(values[-1])), str(e)))
    return Statement(version, entries, bad)


def _raw_entry(root: Any, ns: str, statement: int, entry: int) -> str:
    """The XML of one entry, for the quarantine (only bad entries pay for it)."""
    stmts = [*root.iterfind(f"*/{{{ns}}}Stmt"), *root.iterfind(f"*/{{{ns}}}Ntfctn")]
    ntry = stmts[statement - 1].findall(f"{{{ns}}}Ntry")[entry - 1]
    return str(etree.tostring(ntry, encoding="unicode"))[:4000]


def _camt_entry(values: list[str], account: str, acct_ccy: str, statement: int, *, loc: str) -> BankEntry:
    (amount_text, ccy, cd, sts_cd, sts, booking_text, value_text, reversal, returned, dbtr, dbtr_iban, dbtr_bic,
     cdtr, cdtr_iban, cdtr_bic, ustrd, strd, e2e, svcr_ref, ntry_ref, tx_ref, entry) = values
    if not amount_text:
        raise ValueError("the entry has no amount (Amt)")
    amount = _decimal(amount_text, "Amt")
    currency = (ccy or acct_ccy).upper()
    if not is_currency(currency):
        raise ValueError(f"unknown currency {currency!r} in Amt/@Ccy")
    if cd not in ("CRDT", "DBIT"):
        raise ValueError(f"CdtDbtInd must be CRDT or DBIT, not {cd!r}")
    status = sts_cd or sts
    if status not in ("", "BOOK"):
        raise ValueError(f"the entry is not booked (Sts {status}); only booked entries are payments")
    booking = _date(booking_text[:10], "BookgDt")
    value = _date(value_text[:10], "ValDt") if value_text else None
    credit = cd == "CRDT"
    # the counterparty: the debtor of a credit, the creditor of a debit
    party, party_iban, party_bic = (dbtr, dbtr_iban, dbtr_bic) if credit else (cdtr, cdtr_iban, cdtr_bic)
    remit = (f"{ustrd} {strd}" if strd else ustrd) if ustrd else strd or None
    ref = svcr_ref or ntry_ref or tx_ref
    if not ref:  # no reference from the bank: the entry's own content identifies it (every field, as read
        # since the first version: the account's two, the entry's, and the statement's place before the entry's)
        fields = [account, acct_ccy, *values[:-1], str(statement), entry]
        ref = "sha256:" + hashlib.sha256("\x1f".join(fields).encode()).hexdigest()[:32]
    kind = ("reversal" if reversal.lower() == "true" else "return" if returned not in ("", "0")
            else "credit" if credit else "debit")
    return BankEntry(account=account, entry_ref=ref, booking_date=booking, value_date=value,
                     amount=amount if credit else -amount, currency=currency, kind=kind,
                     payer_name=party or None, payer_iban=_iban(party_iban or None), payer_bic=_bic(party_bic or None),
                     remittance=remit, end_to_end_id=e2e if e2e and e2e != "NOTPROVIDED" else None,
                     location=loc, raw="")


def _decimal(text: str | None, what: str) -> Decimal:
    try:
        d = Decimal((text or "").strip())
    except InvalidOperation:
        raise ValueError(f"{what}: not an amount: {text!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{what}: not a positive amount: {text!r}")
    return d


@functools.lru_cache(maxsize=4096)  # a statement's entries share a few dates (and so the same date objects)
def _date(text: str | None, what: str) -> date:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        raise ValueError(f"{what}: not a date: {text!r}") from None


@functools.lru_cache(maxsize=65536)  # payers repeat across a statement
def _iban(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return str(IBAN(text).compact)
    except SchwiftyException as e:
        raise ValueError(f"payer IBAN {text!r} is not valid ({e})") from None


@functools.lru_cache(maxsize=4096)
def _bic(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return str(BIC(text).compact)
    except SchwiftyException as e:
        raise ValueError(f"payer BIC {text!r} is not valid ({e})") from None


# --------------------------------------------------------------------------- MT940


def parse_mt940(text: str, *, name: str = "statement.sta") -> Statement:
    try:
        transactions = mt940.models.Transactions(processors={
            "post_transaction": [mt940.processors.transaction_details_post_processor],
        }, options=mt940.Options.all())
        transactions.parse(text)
    except Exception as e:  # noqa: BLE001 - the library raises bare exceptions on broken files
        raise Invalid(f"{name}: not an MT940 statement ({type(e).__name__}: {e})") from None
    if not transactions.transactions and ":61:" not in text:
        if ":20:" not in text:
            raise Invalid(f"{name}: not an MT940 statement (no :20: and no :61: field)")
    account = _mt940_account(str(transactions.data.get("account_identification") or ""))
    entries: list[BankEntry] = []
    bad: list[BadRow] = []
    for i, t in enumerate(transactions, start=1):
        loc = f"{name}:transaction {i}"
        d = t.data
        raw = str(d.get("transaction_details") or "")[:4000]
        try:
            entries.append(_mt940_entry(d, account, loc, raw))
        except ValueError as e:
            bad.append(BadRow(loc, raw, str(e)))
    return Statement("mt940", entries, bad)


def _mt940_account(text: str) -> str:
    """``:25:`` is an IBAN, or German ``BLZ/Kontonummer`` — made an IBAN so camt and MT940 files of
    one account name the same account."""
    text = text.strip()
    if "/" in text:
        bank, acct = (p.strip() for p in text.split("/", 1))
        if bank.isdigit() and len(bank) == 8 and acct[:10].isdigit():
            try:
                return str(IBAN.generate("DE", bank_code=bank, account_code=acct[:10]).compact)
            except SchwiftyException:
                return text
    try:
        return str(IBAN(text).compact)
    except SchwiftyException:
        return text


def _mt940_entry(d: dict[str, Any], account: str, loc: str, raw: str) -> BankEntry:
    amt = d.get("amount")
    if amt is None:
        raise ValueError("the :61: line has no amount")
    amount = Decimal(str(amt.amount))
    currency = str(amt.currency or "").upper()
    if not is_currency(currency):
        raise ValueError(f"unknown currency {currency!r}")
    status = str(d.get("status") or "")  # C, D, RC (reversal of credit), RD (reversal of debit)
    booking = d.get("entry_date") or d.get("date")
    if booking is None:
        raise ValueError("the :61: line has no date")
    gv = str(d.get("transaction_code") or "")
    remit = " ".join(str(d.get(k) or "") for k in ("purpose",)).strip() or None
    if remit is None:
        remit = "".join(str(d.get(f"?{n}") or "") for n in range(20, 30)).strip() or None
    name = " ".join(str(d.get(k) or "") for k in ("applicant_name",)).strip() or None
    ref = str(d.get("bank_reference") or "").strip() or str(d.get("customer_reference") or "").strip()
    if not ref or ref == "NONREF":
        ref = "sha256:" + hashlib.sha256(f"{d.get('date')}|{amount}|{raw}".encode()).hexdigest()[:32]
    kind = ("reversal" if status.startswith("R") else "return" if gv in RETURN_GV_CODES
            else "credit" if amount > 0 else "debit")
    return BankEntry(account=account, entry_ref=ref, booking_date=date(booking.year, booking.month, booking.day),
                     value_date=date(d["date"].year, d["date"].month, d["date"].day) if d.get("date") else None,
                     amount=amount, currency=currency, kind=kind, payer_name=name,
                     payer_iban=_iban(d.get("applicant_iban")), payer_bic=_bic(d.get("applicant_bin")),
                     remittance=remit, end_to_end_id=_e2e(d.get("end_to_end_reference")), location=loc, raw=raw)


def _e2e(value: Any) -> str | None:
    text = str(value or "").strip()
    return text if text and text != "NOTPROVIDED" else None
