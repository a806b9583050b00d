"""PDF rendering: billbot's renderer (WeasyPrint, PDF/A-3b + Factur-X XML) against headless Chromium
printing the same HTML from one long-lived browser (the approach hosted billing engines use).

The same 200 invoices (1–8 lines, de/en, domestic / reverse charge / export in USD) are rendered, each
side given the same cores (``--processes``, default: all this machine has), best of ``--rounds``:

1. billbot: ``render_many`` over a long-lived pool of that many worker processes, started and warmed
   up before the clock starts (as a service keeps them) — the production path with its bookkeeping
   rows; each PDF's XML built and XSD-checked, PDF/A-3b with the XML embedded;
2. Chromium via Playwright: one long-lived browser, launched and warmed up before the clock starts,
   with a pool of as many pages as cores rendering concurrently (``page.set_content(html)`` +
   ``page.pdf()``, the stylesheet inlined; no XML, no PDF/A — Chromium cannot do either).

``billbot_cold_ms`` is billbot per core when ``render_many`` starts its own pool for the run (process
start-up, imports and warm-up included), once.

Per core = wall time × cores / PDFs for both: the machine time one PDF costs when each renderer has
the whole machine. ``ratio`` = billbot per core / Chromium per core (target ≤ 1). For reference the
single-stream figures are printed too — billbot with one worker process against Chromium with one
page (``ratio_single``) — and the CPU milliseconds per PDF of each side's processes.

Run: ``.venv/bin/python bench/pdf.py [--n 200] [--processes N] [--rounds 3]``. The last line is
``{"billbot_ms": …, "chromium_ms": …, "ratio": …, …}``.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def build(db, key, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    from storage.models import Advertiser
    from tests.factories import document_invoice as invoice
    from tests.factories import master_data

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


def chromium(htmls: list[str], pages: int, rounds: int) -> dict[str, float]:
    """Chromium: one browser, ``pages`` pages rendering concurrently; best wall time of ``rounds``,
    and the CPU time of the browser's whole process tree in that round."""
    import asyncio

    from playwright.async_api import async_playwright

    async def run() -> dict[str, float]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pool = [await browser.new_page() for _ in range(pages)]

            async def one(page, html: str) -> bytes:  # type: ignore[no-untyped-def]
                await page.set_content(html)
                return await page.pdf(format="A4", print_background=True, prefer_css_page_size=True)

            for page in pool:  # warm-up: fonts, the renderer process, the PDF backend
                for h in htmls[:3]:
                    await one(page, h)
            tree = _descendants(os.getpid())
            best = (float("inf"), 0.0)
            async def work(page, todo: list[str]) -> None:  # type: ignore[no-untyped-def]
                while todo:
                    await one(page, todo.pop())

            for _ in range(rounds):
                todo = list(htmls)
                c0, w0 = _cpu_ms(tree), time.perf_counter()
                await asyncio.gather(*(work(page, todo) for page in pool))
                wall, cpu = time.perf_counter() - w0, _cpu_ms(tree) - c0
                best = min(best, (wall, cpu))
            await browser.close()
            return {"wall_ms": best[0] * 1000 / len(htmls), "cpu_ms": best[1] / len(htmls)}

    return asyncio.run(run())


def billbot(db, ids: list[int], processes: int, rounds: int, out: Path, key) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """billbot's ``render_many`` over a long-lived pool of ``processes`` warmed-up workers (as the
    browser and its pages are for Chromium); the best of ``rounds``. Bookkeeping rows included."""
    from bot.documents import pdf
    from bot.documents.pdf import start_render_pool
    from bot.workflows.documents import render_many

    pool = start_render_pool(processes)
    best: dict[str, Any] | None = None
    try:
        for r in range(rounds):
            res = render_many(db, ids, renderer=pdf, processes=processes, out_dir=out / f"p{processes}-{r}", key=key,
                              pool=pool)
            if res["failed"]:
                raise SystemExit(f"render_many failures: {res['failed']}")
            if best is None or res["seconds"] < best["seconds"]:
                best = res
    finally:
        pool.shutdown()
    assert best is not None
    return {"wall_ms": best["per_pdf_ms"], "worker_cpu_ms": best["worker_cpu_ms"], "seconds": best["seconds"]}


def billbot_cold(db, ids: list[int], processes: int, out: Path, key) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """``render_many`` starting its own pool (start-up and warm-up of every worker included), once."""
    from bot.documents import pdf
    from bot.workflows.documents import render_many

    res = render_many(db, ids, renderer=pdf, processes=processes, out_dir=out / "cold", key=key)
    return {"wall_ms": res["per_pdf_ms"], "start_method": res["start_method"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cores = args.processes

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from billing.documents.view import render_html
    from storage.db import Database
    from storage.mapping import document_for_invoice
    from storage.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="billbot-bench-pdf-") as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        upgrade(db)
        key = Ed25519PrivateKey.generate()
        t = time.perf_counter()
        ids = build(db, key, args.n)
        with db.read() as s:
            docs = [document_for_invoice(s, i) for i in ids]
        htmls = [render_html(d, inline_css=True) for d in docs]
        print(f"{len(docs)} invoices built in {time.perf_counter() - t:.1f}s "
              f"({sum(len(d.lines) for d in docs)} lines)", flush=True)

        b = billbot(db, ids, cores, args.rounds, Path(tmp) / "pdf", key)
        print(f"billbot  render_many, {cores} long-lived processes: {b['wall_ms']:.1f} ms/PDF wall = "
              f"{b['wall_ms'] * cores:.1f} ms/PDF per core; workers' CPU {b['worker_cpu_ms']:.1f} ms/PDF", flush=True)
        cold = billbot_cold(db, ids, cores, Path(tmp) / "pdf", key)
        print(f"billbot  render_many, {cores} processes started for the run ({cold['start_method']}, start-up "
              f"and warm-up included): {cold['wall_ms']:.1f} ms/PDF wall = {cold['wall_ms'] * cores:.1f} ms/PDF "
              "per core", flush=True)
        c = chromium(htmls, cores, args.rounds)
        print(f"chromium one browser, {cores} pages: {c['wall_ms']:.1f} ms/PDF wall = {c['wall_ms'] * cores:.1f} "
              f"ms/PDF per core; CPU of all its processes {c['cpu_ms']:.1f} ms/PDF", flush=True)
        b1 = billbot(db, ids, 1, args.rounds, Path(tmp) / "pdf1", key)
        print(f"billbot  render_many, 1 process: {b1['wall_ms']:.1f} ms/PDF wall; worker's CPU "
              f"{b1['worker_cpu_ms']:.1f} ms/PDF", flush=True)
        c1 = chromium(htmls, 1, args.rounds)
        print(f"chromium one browser, 1 page: {c1['wall_ms']:.1f} ms/PDF wall; CPU {c1['cpu_ms']:.1f} ms/PDF",
              flush=True)

    per_core, chrome_per_core = b["wall_ms"] * cores, c["wall_ms"] * cores
    print(json.dumps({
        "billbot_ms": round(per_core, 1),
        "chromium_ms": round(chrome_per_core, 1),
        "ratio": round(per_core / chrome_per_core, 3),
        "cores": cores,
        "billbot_cold_ms": round(cold["wall_ms"] * cores, 1),
        "billbot_single_ms": round(b1["wall_ms"], 1),
        "chromium_single_ms": round(c1["wall_ms"], 1),
        "ratio_single": round(b1["wall_ms"] / c1["wall_ms"], 3),
        "billbot_cpu_ms": round(b["worker_cpu_ms"], 1),
        "chromium_cpu_ms": round(c["cpu_ms"], 1),
        "pdfs": len(docs),
        "rounds": args.rounds,
    }))


if __name__ == "__main__":
    main()
