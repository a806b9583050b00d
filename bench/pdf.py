"""PDF rendering: billbot's renderer (WeasyPrint, PDF/A-3b + Factur-X XML) against headless Chromium
printing the same HTML from one long-lived browser (the approach hosted billing engines use).

The same 200 invoices (1–8 lines, de/en, domestic / reverse charge / export in USD) are rendered
1. by billbot in one process, interleaved invoice by invoice with Chromium (same ambient load) (``billing.documents.render_pdf``: XML built and XSD-checked, PDF/A-3b
   with the XML embedded),
2. by billbot's ``render_many`` over 2 worker processes (the production path: pool start-up, warm-up
   and the bookkeeping rows included), reported per PDF per core (wall × processes / PDFs),
3. by Chromium via Playwright: ``page.set_content(html)`` + ``page.pdf()`` on one page, HTML with the
   same stylesheet inlined (no XML, no PDF/A — Chromium cannot do either).

Run: ``.venv/bin/python bench/pdf.py [--n 200] [--processes 2]``. The last line is
``{"billbot_ms": …, "chromium_ms": …, "ratio": …}`` with ratio = billbot per core / Chromium.
CPU milliseconds per PDF (this process; Chromium's whole process tree) are printed too: on a busy
machine they are steadier than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def build(db, key, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    from storage.models import Advertiser
    from tests.documents.factories import invoice, master_data

    rng = random.Random(200)
    descriptions = ["Regional search ads", "Display impressions", "Booked test drives", "Video pre-roll flight",
                    "Newsletter placement", "Retargeting clicks", "Sponsored article", "Homepage takeover"]
    ids = []
    with db.transaction() as s:
        master_data(s)
        advertisers = {a: s.get(Advertiser, a) for a in ("elbe", "lyon", "austin")}
        for i in range(n):
            which = ("elbe", "lyon", "austin")[i % 3]
            lines = []
            for j in range(rng.randint(1, 8)):
                if rng.random() < 0.4:
                    qty = rng.randint(50_000, 900_000)
                    price = Decimal(rng.randint(150, 900)) / 100
                    amount = (qty * price / 1000).quantize(Decimal("0.01"))
                    lines.append({"description": descriptions[(i + j) % len(descriptions)], "quantity": str(qty),
                                  "unit": "impressions", "unit_price": str(price), "amount": str(amount),
                                  "campaign": f"Campaign {i % 17}", "computation": {"rate_type": "cpm", "per": 1000}})
                else:
                    amount = Decimal(rng.randint(10_000, 900_000)) / 100
                    lines.append({"description": descriptions[(i + j) % len(descriptions)], "quantity": "1",
                                  "unit": "amount", "unit_price": str(amount), "amount": str(amount),
                                  "campaign": f"Campaign {i % 17}"})
            kw: dict = {"vat_rate": Decimal(19), "vat_category": "S"}
            if which == "lyon":
                kw = {"vat_rate": Decimal(0), "vat_category": "AE",
                      "vat_note": "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Council "
                                  "Directive 2006/112/EC)"}
            elif which == "austin":
                kw = {"vat_rate": Decimal(0), "vat_category": "G", "currency": "USD",
                      "vat_note": "Export of services: not subject to VAT in Germany",
                      "fx": {"rate": "1.0812", "date": "2026-02-27", "source": "ECB", "base": "EUR", "quote": "USD"}}
            approvals = [{"actor": "U02APPROVER", "name": "Arne Approver", "at": "2026-02-28T09:12:00+00:00",
                          "decision": "approve", "signature_fingerprint": f"{rng.getrandbits(64):016x}"}]
            inv = invoice(s, key, number=f"INV-2026-{i + 1:06d}", advertiser=advertisers[which], lines=lines,
                          seq=i + 1, approvals=approvals, issue=date(2026, 3, 1) + timedelta(days=i % 5), **kw)
            ids.append(inv.id)
    return ids


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def _cpu_ms(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total * 1000 / tick


def bench_single_vs_chromium(docs) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """billbot in this process and Chromium, interleaved invoice by invoice so that both see the same
    load from whatever else runs on the machine. Wall and CPU milliseconds per PDF for each."""
    from playwright.sync_api import sync_playwright

    from billing.documents import get_renderer, render_html, render_pdf

    get_renderer().warm_up()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()

        def chromium(doc) -> bytes:  # type: ignore[no-untyped-def]
            page.set_content(render_html(doc, inline_css=True))
            return page.pdf(format="A4", print_background=True, prefer_css_page_size=True)

        for d in docs[:3]:
            chromium(d)
            render_pdf(d)
        tree = _descendants(os.getpid())
        b_wall = b_cpu = c_wall = c_cpu = 0.0
        for i, d in enumerate(docs, start=1):
            w, c = time.perf_counter(), time.process_time()
            render_pdf(d)
            b_wall += time.perf_counter() - w
            b_cpu += time.process_time() - c
            c0 = _cpu_ms(tree)
            w = time.perf_counter()
            chromium(d)
            c_wall += time.perf_counter() - w
            c_cpu += (_cpu_ms(tree) - c0) / 1000
            if i % 50 == 0:
                print(f"  interleaved billbot / chromium: {i}/{len(docs)}", flush=True)
        browser.close()
    n = len(docs)
    return {"billbot_wall": b_wall * 1000 / n, "billbot_cpu": b_cpu * 1000 / n,
            "chromium_wall": c_wall * 1000 / n, "chromium_cpu": c_cpu * 1000 / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bot.workflows.documents import document_for_invoice, render_many
    from storage.db import Database
    from storage.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="billbot-bench-pdf-") as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        upgrade(db)
        key = Ed25519PrivateKey.generate()
        t = time.perf_counter()
        ids = build(db, key, args.n)
        with db.read() as s:
            docs = [document_for_invoice(s, i) for i in ids]
        print(f"{len(docs)} invoices built in {time.perf_counter() - t:.1f}s "
              f"({sum(len(d.lines) for d in docs)} lines)", flush=True)

        res = render_many(db, ids, processes=args.processes, out_dir=Path(tmp) / "pdf", key=key)
        if res["failed"]:
            print(f"render_many failures: {res['failed']}", flush=True)
        per_core = res["per_core_ms"]
        print(f"billbot, render_many over {args.processes} processes ({res['start_method']}): {res['seconds']:.1f}s "
              f"for {len(res['rendered'])} PDFs = {res['per_pdf_ms']:.1f} ms/PDF wall, {per_core:.1f} ms/PDF per "
              f"core (pool start-up, warm-up and bookkeeping included); workers' CPU {res['worker_cpu_ms']:.1f} "
              "ms/PDF", flush=True)
        m = bench_single_vs_chromium(docs)
        print(f"billbot, 1 process: {m['billbot_wall']:.1f} ms/PDF wall, {m['billbot_cpu']:.1f} ms/PDF CPU", flush=True)
        print(f"chromium (one browser, one page): {m['chromium_wall']:.1f} ms/PDF wall, {m['chromium_cpu']:.1f} "
              "ms/PDF CPU (all its processes)", flush=True)
        chrome_ms = m["chromium_wall"]

    ratio = per_core / chrome_ms
    cpu_ratio = res["worker_cpu_ms"] / m["chromium_cpu"]
    print(f"ratio billbot per core / chromium: {ratio:.2f} (CPU per PDF, render_many workers / all of "
          f"Chromium: {cpu_ratio:.2f})", flush=True)
    print(json.dumps({
        "billbot_ms": round(per_core, 1),
        "chromium_ms": round(chrome_ms, 1),
        "ratio": round(ratio, 3),
        "billbot_parallel_wall_ms": round(res["per_pdf_ms"], 1),
        "billbot_single_process_ms": round(m["billbot_wall"], 1),
        "billbot_cpu_ms": round(res["worker_cpu_ms"], 1),
        "billbot_single_cpu_ms": round(m["billbot_cpu"], 1),
        "chromium_cpu_ms": round(m["chromium_cpu"], 1),
        "cpu_ratio": round(cpu_ratio, 3),
        "processes": args.processes,
        "pdfs": len(docs),
    }))


if __name__ == "__main__":
    main()
