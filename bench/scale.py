"""Scale: the demo at N × 1,124 advertisers on PostgreSQL, through pre-invoices and a billing run whose
chunks ``--workers`` real ``billbot worker`` processes settle in parallel (issue 22).

    python bench/scale.py --factor 10 [--workers 2] [--url postgresql+psycopg://billbot:billbot@127.0.0.1:5432/billbot]
                          [--nice 0] [--skip-1x] [--keep] [--reuse]

For 1× and then N× (each in a fresh database ``billbot_scale_<f>x`` made next to ``--url``'s):

- **load** (not counted per invoice): the demo is built and loaded one slice of 1,124 branches at a time
  (``build_demo`` with another seed per slice, every id prefixed), with its inline delivery (about 70
  delivery rows per branch: daily search clicks, display impressions, test-drive bookings), each slice
  loaded and dropped before the next is built — never the whole world in memory — by a loading process
  as ``billbot load`` would (a fresh one every ``LOAD_BATCH`` slices; its peak is reported as ``loader``);
- **preinvoices**: ``create_preinvoices`` for October (variance checks, system approvals) in this process,
  one transaction per 1,124 advertisers (one call for all of them holds every campaign and its delivery);
- **run**: the ``billing_run`` job submitted in distributed mode; the workers plan it, settle its chunks and
  finish it; timed until the run row says ``done``.

Slack is not configured (no ``SLACK_BOT_TOKEN``): the workers post nothing, so the figures are the billing
work itself and no request leaves the machine.

Prints per stage its seconds, per-invoice milliseconds at 1× and N× (pre-invoices + run, wall time ÷
invoices), the peak resident memory of every process (this one; each worker, read from /proc while it
runs) and the wall time; the last line is JSON: ``{"factor": N, "workers": W, "invoices": …, "seconds": …,
"ms_per_invoice": …, "ms_per_invoice_1x": …, "growth": …, "peak_mb": …, …}``. Targets at N = 100: growth
≤ 1.25, peak ≤ 1 GB for any process, and ``--workers 2`` ≤ 0.65 × the ``--workers 1`` wall time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SLICE = 1124
DEFAULT_URL = "postgresql+psycopg://billbot:billbot@127.0.0.1:5432/billbot"
ACTOR = "U01OPERATOR"


def demo_slice(k: int, seed: int = 1) -> dict[str, Any]:
    """Slice ``k`` of the demo at N × 1,124 branches. Slice 0 is the demo itself; slice k > 0 is the demo with
    seed ``seed + k``, its partners, branches, campaigns, items, external ids and delivery prefixed ``sK-``
    (legal entity, users and rates come with slice 0)."""
    from storage.demo import build_demo

    data = build_demo(size=SLICE, seed=seed + k)
    return _prefixed(data, f"s{k:03d}-") if k else data


def _prefixed(data: dict[str, Any], p: str) -> dict[str, Any]:
    def px(v: Any) -> Any:
        return f"{p}{v}" if isinstance(v, str) and v else v

    out: dict[str, Any] = {"partners": [], "advertisers": [], "campaigns": [], "delivery": []}
    for partner in data.get("partners", []):
        q = dict(partner, id=px(partner["id"]))
        if q.get("head_office"):
            q["head_office"] = px(q["head_office"])
        out["partners"].append(q)
    for a in data["advertisers"]:
        q = dict(a, id=px(a["id"]))
        for k in ("partner", "customer_number"):
            if q.get(k):
                q[k] = px(q[k])
        if q.get("email"):
            q["email"] = str(q["email"]).replace("@", f"+{p[:-1]}@", 1)
        out["advertisers"].append(q)
    for c in data["campaigns"]:
        q = copy.deepcopy(c)
        q["id"], q["advertiser"] = px(c["id"]), px(c["advertiser"])
        for item in q.get("items", []):
            item["id"] = px(item["id"])
            if item.get("external_ids"):
                item["external_ids"] = {src: px(v) for src, v in item["external_ids"].items()}
        out["campaigns"].append(q)
    out["delivery"] = [dict(r, item=px(r["item"])) for r in data.get("delivery", [])]
    return out


LOAD_BATCH = 10  # slices one loading process loads before a fresh one takes over


def _loader_pool() -> Any:
    import multiprocessing

    return multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=LOAD_BATCH)


def _load_slice(k: int, seed: int = 1) -> float:
    """Load slice ``k`` into ``DATABASE_URL`` (in a loading process); returns that process's peak MB."""
    from bot import context
    from bot.workflows.load import load as load_wf

    data = demo_slice(k, seed)
    load_wf(context.get_db(), data, actor="bootstrap" if k == 0 else ACTOR, signing_key=context.get_key(),
            what=f"scale slice {k}")
    del data
    return _self_peak_mb()


def _rss_peak_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a running process, in MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _self_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _database(url: str, name: str) -> str:
    from sqlalchemy import create_engine, text

    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def _drop(url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def _loaded(url: str, name: str, factor: int) -> bool:
    """Whether database ``name`` exists and holds the demo at ``factor`` × (``--reuse``)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            if not c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                return False
        db = create_engine(url.rsplit("/", 1)[0] + "/" + name)
        try:
            with db.connect() as c:
                return bool(c.execute(text("SELECT count(*) FROM advertisers")).scalar_one() == factor * SLICE)
        finally:
            db.dispose()
    finally:
        eng.dispose()


def _clear_after_load(db_url: str) -> None:
    """Back to the state right after the load: no pre-invoices, exceptions, runs, invoices or jobs."""
    from sqlalchemy import create_engine, text

    eng = create_engine(db_url)
    with eng.begin() as c:
        c.execute(text("TRUNCATE preinvoices, preinvoice_lines, exceptions, billing_runs, invoices CASCADE"))
        c.execute(text("TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers CASCADE"))
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE"))
    eng.dispose()


def _load(factor: int, *, slices: int) -> tuple[float, float]:
    """Load ``slices`` slices; ``(seconds, the loading processes' peak MB)``. Each slice is loaded as
    `billbot load FILE` would: by a process of its own (one per LOAD_BATCH slices), so no one process's heap
    creeps from slice to slice over a 100x load."""
    t = time.perf_counter()
    loader_peak = 0.0
    with _loader_pool() as pool:
        for i, peak in enumerate(pool.imap(_load_slice, range(slices))):
            loader_peak = max(loader_peak, peak)
            if factor > 1 and (i + 1) % max(1, factor // 10) == 0:
                print(f"  {factor}x: loaded {(i + 1) * SLICE} branches ({time.perf_counter() - t:.0f} s, "
                      f"loader peak {loader_peak:.0f} MB)", flush=True)
    return round(time.perf_counter() - t, 2), loader_peak


def measure(factor: int, *, workers: int, url: str, nice: int, tmp: Path, keep: bool,
            reuse: bool = False) -> dict[str, Any]:
    """Load, pre-invoice and bill the demo at ``factor`` ×; the figures of one scale. ``reuse``: a database
    that a ``--keep`` run loaded at this scale is used again, cleared back to right after its load."""
    from sqlalchemy import func, select, text

    import bot.tasks.scheduled  # noqa: F401 - registers billing_run (submitted by name)
    from bot import context, jobs
    from bot.signing import load_key
    from bot.workflows.preinvoices import create_preinvoices
    from storage.db import Database, dispose_all
    from storage.demo import DEMO_PERIOD
    from storage.migrate import upgrade
    from storage.models import Advertiser, BillingRun, Invoice

    name = f"billbot_scale_{factor}x"
    reused = reuse and _loaded(url, name, factor)
    if reused:
        db_url = url.rsplit("/", 1)[0] + "/" + name
        _clear_after_load(db_url)
        print(f"  {factor}x: reusing the database loaded before ({name})", flush=True)
    else:
        db_url = _database(url, name)
    key_path = tmp / f"key-{factor}.pem"
    load_key(str(key_path), generate=True)
    os.environ.update({"DATABASE_URL": db_url, "BILLBOT_MODE": "distributed", "SIGNING_KEY_PATH": str(key_path),
                       "BILLBOT_VAR_DIR": str(tmp / f"var-{factor}")})
    os.environ.pop("BILLBOT_JOBS", None)
    context.reset()
    db = Database(db_url)
    upgrade(db)
    jobs.apply_schema(db_url)
    key = context.get_key()
    stages: dict[str, float] = {}

    stages["load"], loader_peak = _load(factor, slices=0 if reused else factor)

    t = time.perf_counter()
    with db.read() as s:
        ids = list(s.execute(select(Advertiser.id).order_by(Advertiser.id)).scalars())
    created = 0
    for i in range(0, len(ids), SLICE):  # one transaction per 1,124 advertisers: memory stays flat
        pre = create_preinvoices(db, period=DEMO_PERIOD, advertisers=ids[i:i + SLICE], actor=ACTOR, key=key,
                                 now=datetime.now(UTC))
        created += len(pre.created)
    stages["preinvoices"] = round(time.perf_counter() - t, 2)
    print(f"  {factor}x: {created} pre-invoices in {stages['preinvoices']} s (peak {_self_peak_mb():.0f} MB)",
          flush=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")} | {"PYTHONPATH": str(ROOT)}
    billbot = str(Path(sys.executable).with_name("billbot"))
    cmd = [billbot, "worker", "--queue", "billing", "--heartbeat", "2", "--stalled-after", "30"]
    procs = [subprocess.Popen(["nice", "-n", str(nice), *cmd, "--name", f"scale-{i}"] if nice else
                              [*cmd, "--name", f"scale-{i}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for i in range(workers)]
    peaks = [0.0] * workers
    try:
        # timed from the moment every worker is up (registered with Procrastinate), not from their start-up
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with db.engine.connect() as c:
                up = c.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar_one()
            if up >= workers:
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker exited at start-up")
            time.sleep(0.2)
        t = time.perf_counter()
        jobs.submit("billing_run", period=DEMO_PERIOD, actor=ACTOR, today=datetime.now(UTC).date().isoformat())
        print(f"  {factor}x: billing run submitted to {workers} worker(s)", flush=True)
        state = None
        while state != "done":
            time.sleep(0.25)
            peaks = [max(pk, _rss_peak_mb(p.pid)) for pk, p in zip(peaks, procs, strict=True)]
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker exited during the run")
            with db.read() as s:
                state = s.execute(select(BillingRun.state).order_by(BillingRun.id.desc()).limit(1)).scalar()
                failed = s.execute(text("SELECT task_name FROM procrastinate_jobs WHERE status = 'failed' "
                                        "AND task_name IN ('billing_run', 'billing_chunk') LIMIT 1")).scalar()
            if state == "failed" or failed:  # a job that failed before the run row existed, too
                raise RuntimeError(f"the billing run failed ({failed or 'run state failed'})")
        stages["run"] = round(time.perf_counter() - t, 2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    with db.read() as s:
        invoices = int(s.execute(select(func.count()).select_from(Invoice)).scalar_one())
    jobs.close_apps()
    db.engine.dispose()
    dispose_all()
    context.reset()
    if not keep:
        _drop(url, name)
    seconds = stages["preinvoices"] + stages["run"]
    out = {"factor": factor, "branches": factor * SLICE, "invoices": invoices, "stages": stages,
           "ms_per_invoice": round(seconds * 1000 / max(1, invoices), 3),
           "run_ms_per_invoice": round(stages["run"] * 1000 / max(1, invoices), 3),
           "peak_mb": {"bench": round(_self_peak_mb()), "loader": round(loader_peak),
                       **{f"worker{i}": round(pk) for i, pk in enumerate(peaks)}}}
    print(f"  {factor}x: {invoices} invoices; load {stages['load']} s, pre-invoices {stages['preinvoices']} s, "
          f"run {stages['run']} s on {workers} worker(s): {out['ms_per_invoice']} ms/invoice; "
          f"peak MB {out['peak_mb']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--factor", type=int, required=True, help="N: the demo's 1,124 branches times N")
    ap.add_argument("--workers", type=int, default=1, help="billbot worker processes settling the run's chunks")
    ap.add_argument("--url", default=os.environ.get("BILLBOT_TEST_PG_URL", DEFAULT_URL),
                    help="PostgreSQL URL of a role that may create databases")
    ap.add_argument("--nice", type=int, default=0, help="run the workers at this niceness (e.g. 10)")
    ap.add_argument("--skip-1x", action="store_true", help="do not measure the 1x baseline (growth not computed)")
    ap.add_argument("--keep", action="store_true", help="keep the databases billbot_scale_<f>x")
    ap.add_argument("--reuse", action="store_true", help="use the N x database a --keep run loaded (skips the "
                    "load; its pre-invoices, exceptions, runs, invoices and jobs are removed first)")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: stop the workers, drop the database
    if not a.url.startswith("postgresql"):
        ap.error("--url: PostgreSQL only (the scaled-out run is a distributed-mode feature)")
    started = time.perf_counter()
    load = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="billbot-scale-") as tmp:
            base = None if a.skip_1x or a.factor == 1 else measure(1, workers=a.workers, url=a.url, nice=a.nice,
                                                                      tmp=Path(tmp), keep=a.keep)
            big = measure(a.factor, workers=a.workers, url=a.url, nice=a.nice, tmp=Path(tmp), keep=a.keep or a.reuse,
                          reuse=a.reuse)
    except BaseException:
        if not (a.keep or a.reuse):  # stopped or failed midway: leave no database behind
            from storage.db import dispose_all

            dispose_all()
            for f in {1, a.factor}:
                _drop(a.url, f"billbot_scale_{f}x")
        raise
    base = base or (big if a.factor == 1 else None)
    seconds = round(time.perf_counter() - started, 2)
    peak = max(v for r in (base, big) if r for v in r["peak_mb"].values())
    res = {"factor": a.factor, "workers": a.workers, "invoices": big["invoices"],
           "seconds": round(big["stages"]["preinvoices"] + big["stages"]["run"], 2), "wall_seconds": seconds,
           "ms_per_invoice": big["ms_per_invoice"], "ms_per_invoice_1x": base["ms_per_invoice"] if base else None,
           "growth": round(big["ms_per_invoice"] / base["ms_per_invoice"], 3) if base else None,
           "run_ms_per_invoice": big["run_ms_per_invoice"],
           "run_ms_per_invoice_1x": base["run_ms_per_invoice"] if base else None,
           "peak_mb": peak, "peak_mb_by_process": big["peak_mb"], "stages": big["stages"],
           "load_average": round(max(load, os.getloadavg()[0]), 1)}
    print(f"factor {a.factor} × {SLICE} on {a.workers} worker(s): {res['invoices']} invoices, "
          f"{res['ms_per_invoice']} ms/invoice (1x: {res['ms_per_invoice_1x']}), growth {res['growth']}, "
          f"peak {peak} MB, wall {seconds} s (load average {res['load_average']})")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
