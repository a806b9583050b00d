"""Benchmark: the demo (1,124 dealer branches, one advertiser each) through pre-invoices and a billing run.

Loads ``storage.demo.build_demo(size, seed)`` into a fresh database (not timed), then times
``create_preinvoices`` (distribution, delivery, checks, variance checks, system approvals) and
``run_billing`` (collect → check → threshold → finalize, one transaction per advertiser; no PDFs).
Prints progress, then as the last line ``{"invoices": …, "seconds": …, "invoices_per_s": …, "peak_mb": …}``
where ``seconds`` covers both stages and ``peak_mb`` is the process's peak resident memory.

    .venv/bin/python bench/billing_run.py [--size 1124] [--seed 1] [--url postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.signing import load_key  # noqa: E402
from bot.workflows.billing_run import run_billing  # noqa: E402
from bot.workflows.preinvoices import create_preinvoices  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.demo import DEMO_PERIOD, PERIOD_END, build_demo  # noqa: E402
from storage.loader import load_scenario  # noqa: E402
from storage.migrate import upgrade  # noqa: E402


def approve_waiting(db: Database, key: object, now: datetime) -> int:
    """Approve every pending pre-invoice and close its exceptions, standing in for the approvers."""
    from collections import Counter

    from sqlalchemy import select

    from bot.workflows.exceptions import close_exception
    from bot.workflows.preinvoices import approve_preinvoice
    from storage.models import BillingException, PreInvoice

    with db.transaction() as s:
        causes = Counter(s.execute(select(BillingException.cause).where(BillingException.state == "pending")).scalars())
        print(f"open exceptions by cause: {dict(causes)}", flush=True)
        for exc in list(s.execute(select(BillingException).where(BillingException.kind == "variance",
                                                                 BillingException.state == "pending")).scalars()):
            close_exception(s, exc.id, reason="bench: approved", actor="bench:approver", signing_key=key, now=now)
        ids = list(s.execute(select(PreInvoice.id).where(PreInvoice.state == "pending")).scalars())
        for pid in ids:
            approve_preinvoice(s, pid, actor="bench:approver", signing_key=key, now=now)  # type: ignore[arg-type]
    return len(ids)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1124)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--url", default=None, help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--no-decide", action="store_true",
                    help="leave variance exceptions open (their pre-invoices are then held, not billed)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-billing-")
    db = Database(args.url or f"sqlite:///{tmp}/bench.db")
    upgrade(db)
    key = load_key(f"{tmp}/key.pem", generate=True)

    t = time.perf_counter()
    data = build_demo(size=args.size, seed=args.seed)
    load_scenario(db, data, actor="bench")
    print(f"loaded demo: {len(data['advertisers'])} advertisers, {len(data['campaigns'])} campaigns, "
          f"{len(data.get('delivery', []))} delivery rows in {time.perf_counter() - t:.2f}s", flush=True)

    now = datetime.combine(PERIOD_END, datetime.min.time(), tzinfo=UTC).replace(hour=23)
    t0 = time.perf_counter()
    pre = create_preinvoices(db, period=DEMO_PERIOD, actor="bench", key=key, now=now)
    t1 = time.perf_counter()
    print(f"pre-invoices: {len(pre.created)} created, {len(pre.approved)} approved by the system, "
          f"{len(pre.pending)} pending, {len(pre.problems)} with problems in {t1 - t0:.2f}s", flush=True)

    if not args.no_decide:
        decided = approve_waiting(db, key, now)
        print(f"approved {decided} pending pre-invoices, as approvers would (not timed)", flush=True)
    pre_seconds = t1 - t0
    t1 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 250 == 0 or done == total:
            print(f"  billing: {done}/{total} advertisers", flush=True)

    run = run_billing(db, period=DEMO_PERIOD, actor="bench", key=key, today=date(2026, 11, 2), now=now,
                      on_progress=progress)
    t2 = time.perf_counter()
    print(f"billing run: {len(run.created)} invoices, {len(run.skipped)} skipped, {len(run.held)} held "
          f"in {t2 - t1:.2f}s", flush=True)
    seconds = pre_seconds + (t2 - t1)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"invoices": len(run.created), "seconds": round(seconds, 2),
                      "invoices_per_s": round(len(run.created) / (t2 - t1), 1) if run.created else 0.0,
                      "peak_mb": round(peak_mb, 1), "preinvoice_seconds": round(pre_seconds, 2),
                      "run_seconds": round(t2 - t1, 2), "preinvoices": len(pre.created),
                      "skipped": len(run.skipped), "held": len(run.held), "branches": args.size}))


if __name__ == "__main__":
    main()
