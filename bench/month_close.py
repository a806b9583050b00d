"""The whole month closed, end to end, in embedded mode (SQLite), from an empty database.

    python bench/month_close.py [--size 1124] [--processes 2] [--no-mail] [--keep DIR]

Stages, each timed (seconds), in the order a billing desk closes the month:

1. ``demo``: ``billbot demo --size N`` — master data loaded, October's delivery files written;
2. ``sync``: the demo tracker served over HTTP on 127.0.0.1, partial sync of its stats;
3. ``imports``: the display report, the client's click report and the booking log imported;
4. ``preinvoices``: pre-invoices with their variance checks (system approvals, exceptions);
5. ``run``: the billing run (chunked, numbered, audited);
6. ``pdfs``: every invoice's PDF/A-3 with its Factur-X XML rendered across ``--processes`` worker
   processes (``render_many``) in batches of 100; the rendering processes start (fonts, stylesheets,
   a warm-up document) while the billing run settles;
7. ``mail``: every invoice mailed (``dispatch_many``, as ``billbot invoices send --unsent``: a batch's
   claims in one transaction, its mails over one SMTP connection) to a local aiosmtpd SMTP server on
   127.0.0.1 in its own process (it counts what it receives); each rendered batch is mailed while the
   next renders, so ``mail`` is only what is left after the last PDF, and ``documents`` is both.

The demo tracker and the SMTP server run in processes of their own (as they are other machines), so
their work does not take this process's GIL.

The stages call the same workflow functions ``billbot demo``, ``billbot cycle``, ``billbot invoices
render`` and ``billbot invoices send`` call. The last line is JSON:
``{"branches": 1124, "invoices": …, "pdfs": …, "mails": …, "seconds": …, "stages": {…}}``.
Target (issue 22): under 45 s on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = "U05ADMIN"  # the demo's admin (the demo brings its users)
BATCH = 100  # invoices rendered per batch; a rendered batch is mailed while the next one renders


def _smtp_child(conn: Any, count: Any) -> None:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 in its own process, accepting everything and counting
    the messages (a mail server is not in billbot's process: it must not take billbot's GIL)."""
    import socket

    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
            with count.get_lock():
                count.value += 1
            return "250 Message accepted for delivery"

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port, data_size_limit=50 * 1024 * 1024)
    ctl.start()
    conn.send(port)
    conn.recv()  # until told to stop
    ctl.stop()


def _tracker_child(conn: Any, path: str, token: str) -> None:
    """The demo tracker (HasOffers API) in its own process, as the real tracker is another machine."""
    from bot.sandbox.tracker import DemoTracker

    tracker = DemoTracker.from_file(path, token=token).start()
    conn.send(tracker.url)
    conn.recv()
    tracker.stop()


@contextmanager
def child(target: Any, *args: Any) -> Iterator[Any]:
    """Run ``target(conn, *args)`` in a spawned process; yields what it sends first; stops it after."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, kid = ctx.Pipe()
    proc = ctx.Process(target=target, args=(kid, *args), daemon=True)
    proc.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()


class Stages:
    """Each stage's wall seconds, and the CPU seconds this process spent in it (all its threads): on a
    shared machine the CPU figure says what the stage costs, the wall figure what the neighbours left."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t, 2)
            self.cpu[name] = round(time.process_time() - c, 2)
            print(f"{name:>12}: {self.seconds[name]:7.2f} s  (CPU of this process {self.cpu[name]:6.2f} s)", flush=True)


def close_month(size: int, processes: int, mail: bool, var_dir: Path, smtp_port: int | None) -> dict[str, Any]:
    os.environ.update({"BILLBOT_VAR_DIR": str(var_dir), "BILLBOT_USER": ADMIN, "BILLBOT_JOBS": "inline"})
    os.environ.pop("DATABASE_URL", None)
    if smtp_port is not None:
        os.environ.update({"SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "MAIL_FROM": "billing@bench.example"})
    from sqlalchemy import select

    from billing.periods import parse_period
    from bot import context
    from bot.cli.cycle_cmds import _AsOf, source_env
    from bot.context import documents_dir, get_db, get_key, pdf_renderer, settings
    from bot.documents import pdf
    from bot.workflows.billing_run import run_billing
    from bot.workflows.documents import render_many
    from bot.workflows.load import load as load_wf
    from bot.workflows.preinvoices import create_preinvoices
    from bot.workflows.sync import import_logs, import_report, run_sync
    from storage.demo import DemoFiles, build_demo, demo_files, master_data
    from storage.models import Invoice
    from storage.sources.base import get_source_config, make_source

    context.reset()
    st = Stages()
    db, key = get_db(), get_key()
    folder = var_dir / "demo"
    with st.stage("demo"):
        data = build_demo(size=size, seed=1)
        load_wf(db, master_data(data), actor="bootstrap", signing_key=key, what=f"demo size={size} seed=1")
        demo_files(data, folder, seed=1)
        del data
    files = DemoFiles.read(folder)
    period = files.period
    sources = files.manifest()["sources"]
    actor = ADMIN
    with st.stage("sync"):
        name = str(sources["tracker"])
        with child(_tracker_child, str(files.tracker), files.tracker_token) as tracker_url:
            p = parse_period(period)
            tz = get_source_config(name).tz
            at = datetime.combine(p.end + timedelta(days=1), dtime(6), tz)
            as_of = max(datetime.now(UTC).astimezone(tz).date(), at.date())
            env = {"URL": tracker_url, "TOKEN": files.tracker_token, "KIND": "hasoffers",
                   "LOOKBACK_DAYS": str(min(3650, max(1, (as_of - p.start).days + 1)))}
            with source_env(name, env):
                conn = None if datetime.now(UTC) >= at else _AsOf(make_source(get_source_config(name, require=True)),
                                                                  at)
                run_sync(db, source=name, mode="partial", actor=actor, signing_key=key, connector=conn)
    with st.stage("imports"):
        import_report(db, path=files.gam_report, source=str(sources["gam_report"]), actor=actor, signing_key=key)
        import_report(db, path=files.third_party_report, source=str(sources["third_party_report"]), third_party=True,
                      actor=actor, signing_key=key)
        import_logs(db, path=files.dealer_log, source=str(sources["dealer_log"]), actor=actor, signing_key=key)
    with st.stage("preinvoices"):
        pre = create_preinvoices(db, period=period, actor=actor, key=key, now=datetime.now(UTC),
                                 default_tolerance=settings().default_tolerance)

    # the renderers start (fork, fonts, stylesheets, a warm-up document) while the run settles
    pool_box: dict[str, Any] = {}
    warm = threading.Thread(target=lambda: pool_box.update(pool=pdf.start_render_pool(processes)), daemon=True)
    with st.stage("run"):
        warm.start()
        run = run_billing(db, period=period, actor=actor, key=key, today=datetime.now(UTC).date())
    # PDFs in batches; each rendered batch is mailed (one thread) while the next batch renders
    mailed: list[str] = []
    mailer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-mail")
    failed = 0
    worker_cpu = 0.0  # CPU seconds the rendering processes spent on the PDFs

    def mail_batch(ids: list[int]) -> None:
        from bot.mail import sender_from_settings
        from bot.workflows.dispatch import dispatch_many

        sender = sender_from_settings()
        assert sender is not None
        for out in dispatch_many(db, ids, sender=sender, renderer=pdf_renderer(), out_dir=documents_dir(),
                                 mail_from=settings().mail_from, key=key, actor="system", attempts=1,
                                 retry_delay=0):
            mailed.append(out.state)

    t_docs = time.perf_counter()
    with st.stage("pdfs"):
        warm.join()
        pool = pool_box.get("pool")
        pending: list[Any] = []
        ids = list(run.invoice_ids)
        for i in range(0, len(ids), BATCH):
            batch = ids[i:i + BATCH]
            rendered = render_many(db, batch, renderer=pdf_renderer(), processes=processes, out_dir=documents_dir(),
                                   key=key, pool=pool)
            failed += len(rendered["failed"])
            worker_cpu += rendered["worker_cpu_ms"] * len(rendered["rendered"]) / 1000
            if mail:
                pending.append(mailer.submit(mail_batch, [b for b in batch if b in rendered["rendered"]]))
        if pool is not None:
            pool.shutdown()
    if mail:
        with st.stage("mail"):  # what is left to mail after the last PDF (the rest overlapped the rendering)
            for f in pending:
                f.result()
        st.seconds["documents"] = round(time.perf_counter() - t_docs, 2)
    mailer.shutdown()
    mails = mailed.count("sent")
    with db.read() as s:
        pdfs = len(list(s.execute(select(Invoice.id).where(Invoice.pdf_state == "done")).scalars()))
    return {"branches": size, "preinvoices": len(pre.created), "invoices": len(run.created), "pdfs": pdfs,
            "failed_pdfs": failed, "mails": mails, "stages": st.seconds, "cpu": st.cpu,
            "render_cpu": round(worker_cpu, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1124, help="dealer branches (advertisers)")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="PDF rendering processes")
    ap.add_argument("--no-mail", action="store_true", help="skip the mail stage")
    ap.add_argument("--keep", type=Path, help="use (and keep) this var directory instead of a temporary one")
    ap.add_argument("--profile", type=Path, help="write a cProfile of this process to this file")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="billbot-close-") as tmp:
        var_dir = a.keep or Path(tmp) / "var"
        if a.keep and any(a.keep.glob("*")):
            ap.error(f"--keep {a.keep}: the directory is not empty (the close starts from an empty database)")
        var_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        import cProfile

        prof = cProfile.Profile()

        def run(port: int | None) -> dict[str, Any]:
            args = (a.size, a.processes, not a.no_mail, var_dir, port)
            return prof.runcall(close_month, *args) if a.profile else close_month(*args)

        if a.no_mail:
            res = run(None)
        else:
            import multiprocessing

            count = multiprocessing.get_context("spawn").Value("i", 0)
            with child(_smtp_child, count) as port:
                res = run(port)
            res["smtp_received"] = count.value
        if a.profile:
            prof.dump_stats(str(a.profile))
        seconds = round(time.perf_counter() - started, 2)
    print(f"{'total':>12}: {seconds:7.2f} s  ({res['invoices']} invoices, {res['pdfs']} PDFs, "
          f"{res['mails']} mails, load average {os.getloadavg()[0]:.1f}); CPU: this process "
          f"{sum(res['cpu'].values()):.1f} s, the rendering processes {res['render_cpu']:.1f} s "
          f"({1000 * res['render_cpu'] / max(1, res['pdfs']):.1f} ms per PDF)")
    print(json.dumps({"branches": res["branches"], "invoices": res["invoices"], "pdfs": res["pdfs"],
                      "mails": res["mails"], "seconds": seconds, "stages": res["stages"], "cpu": res["cpu"],
                      "render_cpu": res["render_cpu"],
                      "load": round(os.getloadavg()[0], 1)}))
    return 0 if res["failed_pdfs"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
