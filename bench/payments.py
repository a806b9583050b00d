"""Payments: import + cash application of one camt.053 file with N entries against N open invoices.

SQLite in a temp dir. N invoices (1,000 advertisers, each with a known payer IBAN) are inserted in bulk;
the statement's credits name their invoice by number (70 %), by RF creditor reference (10 %), come from
a known payer IBAN without text (10 %), or match nothing (10 %). Timed: parse + idempotency check +
insert + matching + allocations + audit, i.e. ``import_statement`` as the CLI runs it.
Last line: ``{"entries": …, "seconds": …, "matched": …, "entries_per_s": …}`` (target < 10 s for 100,000).

    .venv/bin/python bench/payments.py [--n 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schwifty import IBAN  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from billing.payments import creditor_reference  # noqa: E402
from bot.workflows.payments import import_statement  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Advertiser, Invoice, LegalEntity, PayerAccount  # noqa: E402

NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


def payer_iban(a: int) -> str:
    return str(IBAN.generate("DE", bank_code="37040044", account_code=f"{a + 1:010d}").compact)


def seed(db: Database, n: int, advertisers: int) -> list[tuple[str, str, Decimal]]:
    now = datetime.now(UTC)
    rows = []
    invoices = []
    for i in range(n):
        gross = Decimal(100 + (i * 37) % 9000) + Decimal(i % 100) / 100
        adv = f"adv-{i % advertisers}"
        number = f"INV-2026-{i + 1:06d}"
        invoices.append((number, adv, gross))
        net = (gross / Decimal("1.19")).quantize(Decimal("0.01"))
        rows.append({"number": number, "kind": "invoice", "legal_entity_id": "le", "advertiser_id": adv,
                     "series": "INV-{year}-{seq:06d}", "year": 2026, "seq": i + 1,
                     "issue_date": date(2026, 1, 1) + timedelta(days=i % 60),
                     "due_date": date(2026, 1, 31) + timedelta(days=i % 60), "currency": "EUR", "net": net,
                     "vat": gross - net, "gross": gross, "vat_rate": Decimal("19"), "vat_category": "S",
                     "content_hash": "0" * 64, "created_at": now, "parties": {}, "approvals": []})
    with db.transaction() as s:
        s.add(LegalEntity(id="le", name="Bench Media GmbH", country="DE", currency="EUR"))
        s.flush()
        s.execute(insert(Advertiser), [{"id": f"adv-{a}", "name": f"Advertiser {a}", "legal_entity_id": "le",
                                        "currency": "EUR", "country": "DE"} for a in range(advertisers)])
        s.execute(insert(PayerAccount), [{"iban": payer_iban(a), "advertiser_id": f"adv-{a}"}
                                         for a in range(advertisers)])
        for k in range(0, n, 5000):
            s.execute(insert(Invoice), rows[k:k + 5000])
    return invoices


def statement(path: Path, invoices: list[tuple[str, str, Decimal]], advertisers: int) -> None:
    parts = [f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{NS}"><BkToCstmrStmt><GrpHdr><MsgId>B</MsgId>'
             '<CreDtTm>2026-04-10T08:00:00</CreDtTm></GrpHdr><Stmt><Id>1</Id>'
             '<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>']
    for i, (number, adv, amount) in enumerate(invoices):
        gross = amount
        a = int(adv.split("-")[1])
        kind = i % 10
        if kind < 7:
            text, iban = f"Rechnung {number}", payer_iban(a)
        elif kind == 7:
            text, iban = creditor_reference(number), payer_iban(a)
        elif kind == 8:
            text, iban = "Zahlung", payer_iban(a)
        else:
            text, iban, gross = "Spende", payer_iban((a + 1) % advertisers + advertisers), Decimal("1.23")
        parts.append(
            f"<Ntry><Amt Ccy=\"EUR\">{gross}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            f"<BookgDt><Dt>2026-04-09</Dt></BookgDt><ValDt><Dt>2026-04-09</Dt></ValDt>"
            f"<AcctSvcrRef>B{i:08d}</AcctSvcrRef><NtryDtls><TxDtls><RltdPties><Dbtr><Pty><Nm>Payer {a}</Nm></Pty>"
            f"</Dbtr><DbtrAcct><Id><IBAN>{iban}</IBAN></Id></DbtrAcct></RltdPties>"
            f"<RmtInf><Ustrd>{text}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>")
    parts.append("</Stmt></BkToCstmrStmt></Document>")
    path.write_text("".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--advertisers", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(db)
        t = time.perf_counter()
        invoices = seed(db, args.n, args.advertisers)
        print(f"seeded {args.n} open invoices in {time.perf_counter() - t:.1f} s", flush=True)
        path = Path(tmp) / "statement.xml"
        statement(path, invoices, args.advertisers)
        print(f"statement: {path.stat().st_size / 1e6:.1f} MB", flush=True)
        t, cpu = time.perf_counter(), time.process_time()
        res = import_statement(db, path, actor="bench", key=None)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        # CPU seconds too: on a shared machine the wall time says more about the neighbours than the import
        print(f"imported {res.inserted} entries, outcomes {res.outcomes} ({cpu:.2f} s CPU)", flush=True)
        matched = sum(n for k, n in res.outcomes.items() if k != "unmatched")
        t = time.perf_counter()
        again = import_statement(db, path, actor="bench", key=None)
        print(f"re-import: {again.inserted} new, {again.unchanged} unchanged in {time.perf_counter() - t:.1f} s",
              flush=True)
        db.engine.dispose()
    print(json.dumps({"entries": res.entries, "seconds": round(seconds, 2), "matched": matched,
                      "entries_per_s": round(res.entries / seconds)}))


if __name__ == "__main__":
    main()
