"""The accounting export (issue 19, item 2): a month with a domestic, a reverse-charge (PLN) and an export
(CHF) invoice, a credit note, payments from bank statements and a write-off, handed to accounting as a
DATEV Buchungsstapel and as a Beancount ledger. The DATEV file is compared byte for byte with a
hand-checked fixture; the ledger is loaded with beancount's own loader and its receivables are the
invoices' open amounts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from beancount import loader
from beancount.core import data as bc
from typer.testing import CliRunner

from billing.accounting import Chart, DocumentFacts, entry
from billing.errors import Invalid, NotAllowed
from bot.cli import app
from bot.exports import writer
from bot.exports.datev import COLUMNS
from bot.workflows.accounting import export_accounting
from bot.workflows.billing_run import run_billing
from bot.workflows.fx import import_ecb_csv
from bot.workflows.invoices import credit_note, list_invoices
from bot.workflows.payments import import_statement, invoice_payments, write_off
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.loader import load_scenario
from storage.models import Advertiser
from tests.factories import OPERATOR, add_user, advertiser, campaign, entity, linear, load, scenario

TODAY = date(2026, 3, 1)
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
EXPORTED_AT = datetime(2026, 4, 2, 9, 30, 15, 123000, tzinfo=UTC)
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "datev_2026-03.csv"
ACCOUNTING = {"consultant_number": 29098, "client_number": 55003, "fiscal_year_start": 1, "account_length": 4}

runner = CliRunner()


@pytest.fixture
def month(db: Database, key: Any) -> dict[str, str]:
    """March 2026: three invoices (EUR domestic, PLN reverse charge, CHF export) and a credit note."""
    add_user(db, OPERATOR, ["operator"])
    elbe = {**advertiser("elbe", "Autohaus Elbe"), "debtor_account": "10001"}
    krakow = {**advertiser("krakow", "Krakow Media", country="PL", currency="PLN", vat_id="PL5260250995"),
              "debtor_account": "10002"}
    zurich = advertiser("zurich", "Zürich \"Alpen\" AG", country="CH", currency="CHF")  # the collective debtor
    load(db, scenario(
        entities=[{**entity(), "accounting": ACCOUNTING}], advertisers=[elbe, krakow, zurich],
        campaigns=[campaign(f"c-{a}", a, [linear(f"x-{a}", amount)], start="2026-02-01", end="2026-02-28")
                   for a, amount in (("elbe", "1200.00"), ("krakow", "1200.00"), ("zurich", "999.99"))]))
    import_ecb_csv(db, text="Date,PLN,CHF,\n2026-02-27,4.2975,0.9412,\n", actor="t", key=key, now=NOW)
    create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)
    assert len(run_billing(db, period="2026-02", actor=OPERATOR, key=key, today=TODAY).created) == 3
    numbers = {v.advertiser_id: v.number for v in list_invoices(db)}
    numbers["elbe-cn"] = credit_note(db, number=numbers["elbe"], line_ids=None, reason="campaign cancelled",
                                     actor=OPERATOR, key=key, today=TODAY).number
    return numbers


def _statement(path: Path, currency: str, day: str, amount: str, remittance: str, ref: str) -> Path:
    """A one-credit MT940 statement (``day`` YYMMDD, ``amount`` with a decimal comma)."""
    path.write_text(f""":20:STARTUMSE
:25:37040044/05320130{ref[-2:]}
:28C:00001/001
:60F:C{day}{currency}0,00
:61:{day}{day[2:]}C{amount}NTRFNONREF//{ref}
:86:166?00SEPA-GUTSCHRIFT?109310?20SVWZ+{remittance}?32Payer
:62F:C{day}{currency}{amount}
-
""", encoding="latin-1")
    return path


@pytest.fixture
def paid(db: Database, key: Any, month: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """March's money in: Krakow pays 1,000.00 of its 1,200.00 PLN on 20 March (200.00 stay open); Zurich
    900.00 of its 999.99 CHF on 25 March, and a finance manager writes off the remaining 99.99 CHF on 30 March."""
    add_user(db, "UFIN", ["finance_manager"])
    for args in ((tmp_path / "pln.sta", "PLN", "260320", "1000,00", month["krakow"], "0320-01"),
                 (tmp_path / "chf.sta", "CHF", "260325", "900,00", month["zurich"], "0325-02")):
        import_statement(db, _statement(*args), actor="UOPS", key=key, now=datetime(2026, 3, 26, 7, tzinfo=UTC))
    write_off(db, invoice_number=month["zurich"], actor="UFIN", key=key, reason="bank charges of the client",
              now=datetime(2026, 3, 30, 10, tzinfo=UTC))
    return month


def _export(db: Database, key: Any, fmt: str, **kw: Any) -> Any:
    return export_accounting(db, fmt=fmt, period=kw.pop("period", "2026-03"), actor=kw.pop("actor", OPERATOR),
                             key=key, now=EXPORTED_AT, writer=writer(fmt), **kw)


def test_datev_batch_matches_the_hand_checked_fixture_byte_for_byte(db: Database, key: Any,
                                                                     paid: dict[str, str]) -> None:
    res = _export(db, key, "datev")
    assert res.documents == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003", "CN-2026-000001"]
    assert res.bookings == ["payment INV-2026-000002", "payment INV-2026-000003", "write-off INV-2026-000003"]
    assert res.data == FIXTURE.read_bytes()


def test_payment_and_write_off_bookings_field_by_field(db: Database, key: Any, paid: dict[str, str]) -> None:
    """Hand check of the fixture's last three lines (the fixture's other lines are unchanged): a payment debits the bank (1200) against the debtor on
    its booking day, a write-off the write-off account (2400); Belegfeld 1 names the invoice (OPOS); the
    amount in EUR is the paid share of the invoice's locked total, and the parts add up to it."""
    *_, krakow, zurich, written = _export(db, key, "datev").data.decode("cp1252").removesuffix("\r\n").split("\r\n")
    k, z, w = (line.split(";") for line in (krakow, zurich, written))
    # 1,000.00 of 1,200.00 PLN (279.23 EUR at issue): 232.6917 → 232.69
    assert k[:14] == ["1000,00", '"S"', '"PLN"', "4,297500", "232,69", '"EUR"', "1200", "10002", '""', "2003",
                      '"INV-2026-000002"', '""', "", '"Krakow Media payment INV-2026-000002"']
    # 900.00 of 999.99 CHF (1,062.46 EUR at issue): 956.2236 → 956.22; the 99.99 written off: 106.24
    assert z[:14] == ["900,00", '"S"', '"CHF"', "0,941200", "956,22", '"EUR"', "1200", "10000", '""', "2503",
                      '"INV-2026-000003"', '""', "", '"Zürich ""Alpen"" AG payment INV-2026-000003"']
    assert w[:14] == ["99,99", '"S"', '"CHF"', "0,941200", "106,24", '"EUR"', "2400", "10000", '""', "3003",
                      '"INV-2026-000003"', '""', "", '"Zürich ""Alpen"" AG write-off INV-2026-000003"']
    assert Decimal("956.22") + Decimal("106.24") == Decimal("1062.46")
    assert all(len(r) == 40 and r[39] == '""' for r in (k, z, w))


def test_payments_are_booked_once_and_late_ones_go_into_a_new_batch(db: Database, key: Any, month: dict[str, str],
                                                                    tmp_path: Path) -> None:
    first = _export(db, key, "datev")
    assert first.bookings == []
    import_statement(db, _statement(tmp_path / "pln.sta", "PLN", "260320", "1200,00", month["krakow"], "0320-01"),
                     actor="UOPS", key=key, now=datetime(2026, 4, 3, 7, tzinfo=UTC))
    late = _export(db, key, "datev")  # March's payment, applied after March was exported
    assert (late.documents, late.bookings) == ([], ["payment INV-2026-000002"]) and late.batch_id != first.batch_id
    assert _export(db, key, "datev").batch_id is None
    assert _export(db, key, "datev", period="2026-04").batch_id is None  # booked on 20 March, not in April
    assert _export(db, key, "datev", batch_id=late.batch_id).data == late.data


def test_datev_header_and_lines_field_by_field_and_sums_reconcile(db: Database, key: Any,
                                                                   month: dict[str, str]) -> None:
    text = _export(db, key, "datev").data.decode("cp1252")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    header, columns, *lines = text.removesuffix("\r\n").split("\r\n")
    h = header.split(";")
    assert len(h) == 31
    assert h[:6] == ['"EXTF"', "700", "21", '"Buchungsstapel"', "13", "20260402093015123"]
    assert (h[7], h[8]) == ('"RE"', f'"{OPERATOR}"')
    assert h[10:16] == ["29098", "55003", "20260101", "4", "20260301", "20260331"]  # consultant … date range
    assert (h[18], h[20], h[21], h[26]) == ("1", "0", '"EUR"', '"03"')
    assert columns.split(";") == [f'"{c}"' for c in COLUMNS] and len(COLUMNS) == 40

    rows = {r[10].strip('"'): r for r in (line.split(";") for line in lines)}
    assert all(len(r) == 40 for r in rows.values())
    domestic = rows[month["elbe"]]  # 1,200.00 over February: 1,200.00 + 19 % = 1,428.00
    assert domestic[:14] == ["1428,00", '"S"', '"EUR"', "", "", '""', "10001", "8400", '""', "0103",
                             '"INV-2026-000001"', '"150326"', "", '"Autohaus Elbe"']
    assert domestic[39] == '""'
    credit = rows[month["elbe-cn"]]
    assert credit[:3] == ["1428,00", '"H"', '"EUR"'] and credit[6:8] == ["10001", "8400"]
    assert credit[11] == '""' and credit[13] == '"Autohaus Elbe credit note for INV-2026-000001"'
    reverse = rows[month["krakow"]]  # 1,200.00 PLN at 4.2975 PLN/EUR = 279.23 EUR, no VAT, buyer's VAT id
    assert reverse[:10] == ["1200,00", '"S"', '"PLN"', "4,297500", "279,23", '"EUR"', "10002", "8336", '""',
                            "0103"]
    assert reverse[39] == '"PL5260250995"'
    export = rows[month["zurich"]]  # the collective debtor; the quote in the name doubled
    assert export[:10] == ["999,99", '"S"', '"CHF"', "0,941200", "1062,46", '"EUR"', "10000", "8338", '""', "0103"]
    assert export[13] == '"Zürich ""Alpen"" AG"'

    # the bookings sum to the invoices' totals in EUR, to the cent
    def eur(r: list[str]) -> Decimal:
        value = Decimal((r[4] or r[0]).replace(",", "."))
        return value if r[1] == '"S"' else -value

    expected = Decimal(0)
    for v in list_invoices(db):
        expected += Decimal(v.fx["gross"]) if v.fx else v.gross
    assert sum((eur(r) for r in rows.values()), Decimal(0)) == expected == Decimal("1341.69")


def test_beancount_ledger_loads_without_errors_and_balances_to_the_invoices(db: Database, key: Any,
                                                                            month: dict[str, str]) -> None:
    res = _export(db, key, "beancount")
    entries, errors, options = loader.load_string(res.data.decode("utf-8"))
    assert errors == []
    assert options["operating_currency"] == ["EUR"]
    txns = [e for e in entries if isinstance(e, bc.Transaction)]
    assert sorted(t.meta["document"] for t in txns) == sorted(month.values())
    balances = _balances(txns)
    invoices = list_invoices(db)
    for currency in ("EUR", "PLN", "CHF"):  # receivables: the documents' gross, per currency
        assert sum((v for (a, c), v in balances.items() if a.startswith("Assets:Receivables") and c == currency),
                   Decimal(0)) == sum((v.gross for v in invoices if v.currency == currency), Decimal(0))
    assert balances[("Assets:Receivables:Debtor-10001", "EUR")] == Decimal(0)  # invoice and credit note
    assert balances[("Liabilities:VAT:Output-1776", "EUR")] == Decimal(0)
    assert balances[("Income:Revenue:ReverseCharge-8336", "EUR")] == Decimal("-279.23")
    assert balances[("Income:Revenue:Export-8338", "EUR")] == Decimal("-1062.46")
    assert balances[("Income:Revenue:Domestic-8400", "EUR")] == Decimal(0)


def _balances(txns: list[Any]) -> dict[tuple[str, str], Decimal]:
    balances: dict[tuple[str, str], Decimal] = {}
    for t in txns:
        for p in t.postings:
            k = (p.account, p.units.currency)
            balances[k] = balances.get(k, Decimal(0)) + p.units.number
    return balances


def test_beancount_books_payments_and_write_offs_and_receivables_equal_the_open_amounts(
        db: Database, key: Any, paid: dict[str, str], tmp_path: Path) -> None:
    res = _export(db, key, "beancount")
    entries, errors, _ = loader.load_string(res.data.decode("utf-8"))
    assert errors == []
    txns = [e for e in entries if isinstance(e, bc.Transaction)]
    kinds = sorted((t.meta["document"], t.meta.get("kind", "document")) for t in txns)
    assert kinds == sorted([*((n, "document") for n in paid.values()), (paid["krakow"], "payment"),
                            (paid["zurich"], "payment"), (paid["zurich"], "write_off")])
    balances = _balances(txns)
    figures = invoice_payments(db, today=date(2026, 3, 31))
    invoices = list_invoices(db)
    for currency in ("EUR", "PLN", "CHF"):  # receivables: what is still open on the invoices, per currency
        open_ = sum((figures[v.id].open_amount for v in invoices if v.currency == currency and v.kind == "invoice"),
                    Decimal(0))
        assert sum((v for (a, c), v in balances.items() if a.startswith("Assets:Receivables") and c == currency),
                   Decimal(0)) == open_
    assert balances[("Assets:Receivables:Debtor-10002", "PLN")] == Decimal("200.00")  # Krakow's rest
    assert balances[("Assets:Receivables:Debtor-10000", "CHF")] == Decimal(0)  # paid and written off
    assert balances[("Assets:Bank:Account-1200", "PLN")] == Decimal("1000.00")
    assert balances[("Assets:Bank:Account-1200", "CHF")] == Decimal("900.00")
    assert balances[("Expenses:WriteOffs:Account-2400", "EUR")] == Decimal("106.24")


def test_a_rerun_exports_nothing_new_and_a_batch_rewrites_byte_identically(db: Database, key: Any,
                                                                          month: dict[str, str]) -> None:
    first = _export(db, key, "datev")
    again = _export(db, key, "datev")
    assert (again.batch_id, again.data, again.documents) == (None, None, [])
    with db.transaction() as s:  # master data changes after the export do not change the batch's file
        adv = s.get(Advertiser, "elbe")
        assert adv is not None
        adv.debtor_account = "10099"
    rewritten = _export(db, key, "datev", period=None, batch_id=first.batch_id)
    assert rewritten.rewritten and rewritten.data == first.data and rewritten.sha256 == first.sha256
    # the other format exports the same documents once, in its own batch
    ledger = _export(db, key, "beancount")
    assert ledger.batch_id != first.batch_id and len(ledger.documents) == 4
    with pytest.raises(Invalid, match="is a beancount export"):
        _export(db, key, "datev", period=None, batch_id=ledger.batch_id)


def test_export_needs_a_role_and_a_valid_chart(db: Database, key: Any, month: dict[str, str]) -> None:
    add_user(db, "U09VIEWER", ["approver"])
    with pytest.raises(NotAllowed, match="finance_manager or operator"):
        _export(db, key, "datev", actor="U09VIEWER")
    bad = scenario(entities=[{**entity(), "accounting": {"account_length": 4, "revenue": {"domestic": "840"},
                                                          "consultant_number": 12}}],
                   advertisers=[{**advertiser("elbe"), "debtor_account": "abc"}], campaigns=[])
    with pytest.raises(Invalid) as e:
        load_scenario(db, bad, actor="t")
    text = "\n".join(e.value.problems)
    assert "legal_entities[0].accounting" in text and "revenue.domestic: '840'" in text
    assert "consultant_number: 12" in text and "advertisers[0].debtor_account" in text


def test_a_bu_key_from_the_chart_and_a_fiscal_year_starting_in_july() -> None:
    chart = Chart.from_settings({"fiscal_year_start": 7, "bu_keys": {"reverse_charge": "19"},
                                 "revenue": {"reverse_charge": "8337"}})
    e = entry(DocumentFacts(number="INV-1", kind="invoice", issue_date=date(2026, 3, 31), due_date=date(2026, 4, 30),
                            buyer="B", buyer_vat_id="FR40303265045", debtor_account="10005", vat_category="AE",
                            currency="EUR", net=Decimal("10.00"), vat=Decimal("0.00"), gross=Decimal("10.00"),
                            fx=None, references=None), chart=chart, base_currency="EUR")
    header = {"created_at": EXPORTED_AT.isoformat(), "consultant_number": 1001, "client_number": 1,
              "fiscal_year_begin": chart.fiscal_year_begin(e.issue_date).isoformat(), "account_length": 4,
              "date_from": "2026-03-01", "date_to": "2026-03-31", "currency": "EUR"}
    out = writer("datev")(header, [e]).decode("cp1252").split("\r\n")
    assert out[0].split(";")[12] == "20250701"
    assert out[2].split(";")[6:9] == ["10005", "8337", '"19"']
    assert out[2].split(";")[39] == '"FR40303265045"'


def test_cli_export_writes_the_file_and_says_when_nothing_is_new(db: Database, key: Any, month: dict[str, str],
                                                                tmp_path: Path) -> None:
    out = tmp_path / "march.beancount"
    r = runner.invoke(app, ["export", "beancount", "--period", "2026-03", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["file"] == str(out) and len(got["documents"]) == 4 and got["batch"]
    assert loader.load_string(out.read_text())[1] == []
    r = runner.invoke(app, ["export", "beancount", "--period", "2026-03", "-o", str(tmp_path / "again")])
    assert r.exit_code == 0 and "nothing new to export" in r.stdout and not (tmp_path / "again").exists()
    r = runner.invoke(app, ["export", "beancount", "--batch", str(got["batch"]), "-o", str(tmp_path / "b")])
    assert r.exit_code == 0 and (tmp_path / "b").read_bytes() == out.read_bytes()
    r = runner.invoke(app, ["export", "datev", "--period", "2026-13"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["export", "batches", "--json"])
    assert [b["format"] for b in json.loads(r.stdout)] == ["beancount"]


def test_the_exported_file_is_posted_to_the_managers_channel(db: Database, key: Any, month: dict[str, str],
                                                             slack: Any, client: Any) -> None:
    from bot import runtime

    runtime.wire("cli", client=client)
    res = _export(db, key, "datev")
    (get_url,) = slack.calls_to("files.getUploadURLExternal")
    assert get_url["filename"] == f"EXTF_Buchungsstapel_northwind_2026-03_batch{res.batch_id}.csv"
    (post,) = slack.calls_to("chat.postMessage")
    assert post["channel"] == "billing-managers"
    assert post["text"] == (f":ledger: DATEV Buchungsstapel for northwind 2026-03 (batch {res.batch_id}): "
                            "4 document(s), INV-2026-000001 … CN-2026-000001")
    (done,) = slack.calls_to("files.completeUploadExternal")
    assert done["channel_id"] == "CBILLINGMAN" and done["thread_ts"]
    assert list(slack.uploads.values()) == [res.data]
    slack.reset()
    assert _export(db, key, "datev").batch_id is None  # nothing new: nothing posted
    assert slack.calls_to("files.getUploadURLExternal") == []


def test_a_schedule_exports_the_previous_month(db: Database, key: Any, month: dict[str, str]) -> None:
    from bot.tasks.scheduled import accounting_export

    got = accounting_export(format="beancount", actor=OPERATOR, today="2026-04-01")
    assert got["period"] == "2026-03" and len(got["documents"]) == 4
    assert accounting_export(format="beancount", actor=OPERATOR, today="2026-04-01")["batch"] is None
    r = runner.invoke(app, ["schedule", "add", "--task", "accounting_export", "--cron", "0 6 2 * *",
                            "--arg", "format=datev", "--arg", f"actor={OPERATOR}"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["schedule", "add", "--task", "accounting_export", "--cron", "0 6 2 * *"])
    assert r.exit_code == 2 and "format=datev|beancount" in r.output and "actor=U" in r.output
