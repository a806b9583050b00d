"""Ack latency of button clicks: billbot under gunicorn vs a bare Bolt app that only acks.

Both run in the same way in the same run: gunicorn (gthread workers) on 127.0.0.1, Slack's Web API
faked locally (tests/fakes/slack_api.py), SQLite in a temp dir. 500 signed ``block_actions`` clicks
(Approve on 500 different exceptions, so every click starts a real decision after its ack) are sent
20 at a time; the latency is the HTTP round trip up to the ack. Both apps run side by side; each gets
``--rounds`` bursts (default 3, fresh exceptions each time), one app after the other with the order
swapped every round, and each figure is the median over its rounds (a 2-core VM drifts between runs).
Last line: ``{"p50_ms": …, "p99_ms": …, "baseline_p50_ms": …, "baseline_p99_ms": …, "ratio": …}``
(ratio = p99 / baseline p99; target p99 < 100 ms and ratio ≤ 2).

    .venv/bin/python bench/ack_latency.py [--clicks 500] [--concurrency 20] [--workers 2] [--threads 8] [--rounds 3]

``--during-run`` (issue 22): the clicks are sent while a scaled-out billing run is in progress on the same
machine — ``bench/scale.py --factor F --workers W --nice N --skip-1x`` runs in the background (PostgreSQL,
``--url``); the rounds start once its run is submitted, and the scale bench is stopped afterwards. The last
line then also says ``"during_run": {"factor": …, "run_workers": …, "nice": …, "in_progress_throughout": …}``
(target: p99 < 150 ms with the run's workers at lower priority).

    .venv/bin/python bench/ack_latency.py --during-run [--factor 100] [--run-workers 2] [--nice 10] [--url …]

``--attach LOG`` instead clicks during the run of a scale bench already running (its output going to LOG,
e.g. ``bench/scale.py --factor 100 --workers 2 > LOG``: a 100x load takes a while, and its run can serve
both measurements): the rounds start once LOG says the run was submitted, that bench's ``billbot worker``
processes are reniced to ``--nice``, and ``in_progress_throughout`` says whether LOG still had not reported
the run's end when the last round finished. That bench is left running.

    .venv/bin/python bench/ack_latency.py --attach LOG [--factor 100] [--nice 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-signing-secret"
APPROVER = "U02APPROVER"

# --------------------------------------------------------------------------- the baseline app

_bare_wsgi: Any = None
_bare_lock = threading.Lock()


def bare_application(environ: dict[str, Any], start_response: Any) -> Any:
    """gunicorn ``ack_latency:bare_application``: Bolt with the same client, signature check and
    WSGI adapter as billbot, and one listener that only acks."""
    global _bare_wsgi  # noqa: PLW0603 - one app per gunicorn worker
    if _bare_wsgi is None:
        with _bare_lock:
            if _bare_wsgi is None:
                from slack_bolt import App
                from slack_bolt.adapter.wsgi import SlackRequestHandler

                from bot.slack.client import make_client

                app = App(client=make_client(os.environ["SLACK_BOT_TOKEN"], os.environ["SLACK_API_URL"]),
                          signing_secret=os.environ["SLACK_SIGNING_SECRET"], token_verification_enabled=False,
                          process_before_response=False)

                @app.action(re.compile(".*"))
                def only_ack(ack: Any) -> None:
                    ack()

                handler = SlackRequestHandler(app)

                def wsgi(env: dict[str, Any], sr: Any) -> Any:
                    if env.get("PATH_INFO") == "/healthz":
                        sr("200 OK", [("content-type", "application/json")])
                        return [b'{"ok": true}']
                    return handler(env, sr)

                _bare_wsgi = wsgi
    return _bare_wsgi(environ, start_response)


# --------------------------------------------------------------------------- setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(env: dict[str, str], n: int) -> list[str]:
    """Master data, an approver, and ``n`` pending variance exceptions; returns the Approve values."""
    os.environ.update(env)
    from bot import context
    from bot.blocks.exceptions import button_value
    from bot.workflows.decisions import subject_hash_of
    from storage.models import BillingException
    from tests import factories as f

    context.reset()
    db, key = context.get_db(), context.get_key()
    f.seed(db)
    f.add_user(db, APPROVER, ["approver"], cached=True)
    values = []
    for i in range(n):
        pid = f.preinvoice(db, campaign=f.add_campaign(db, f"bench-{i}"))
        eid = f.open_exception(db, key, preinvoice_id=pid, name=f"bench-{i}")
        with db.read() as s:
            values.append(button_value(eid, subject_hash_of(s.get(BillingException, eid))))
    return values


def start_gunicorn(target: str, port: int, env: dict[str, str], args: argparse.Namespace,
                   pythonpath: str | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gunicorn", target, "-b", f"127.0.0.1:{port}", "-k", "gthread",
           "-w", str(args.workers), "--threads", str(args.threads), "--log-level", "warning",
           "--backlog", "256", "--keep-alive", "5"]
    if pythonpath:
        cmd += ["--pythonpath", pythonpath]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"gunicorn {target} did not start")


def stop(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- load


def _click_body(i: int, value: str) -> str:
    from urllib.parse import urlencode

    payload = {
        "type": "block_actions", "team": {"id": "T0BILLBOT"}, "api_app_id": "A0BILLBOT",
        "user": {"id": APPROVER, "username": "arne", "team_id": "T0BILLBOT"},
        "trigger_id": f"{i}.trigger", "response_url": "http://127.0.0.1:9/response",
        "container": {"type": "message", "message_ts": "1700000001.000001", "channel_id": "CEXCEPTIONS"},
        "channel": {"id": "CEXCEPTIONS"}, "message": {"ts": "1700000001.000001"},
        "actions": [{"type": "button", "action_id": "decide_approve", "value": value, "block_id": "b",
                     "action_ts": f"{time.time():.6f}"}],
    }
    return urlencode({"payload": json.dumps(payload)})


def _client_process(port: int, chunk: list[tuple[int, str]], start_at: float) -> list[float]:
    """One of ``concurrency`` client processes: its clicks one after another on a keep-alive
    connection (separate processes, so the load generator's own GIL does not skew the figures)."""
    import http.client

    from tests.harness import sign

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    time.sleep(max(0.0, start_at - time.time()))
    for i, value in chunk:
        body = _click_body(i, value)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(SECRET, body)}
        t0 = time.perf_counter()
        conn.request("POST", "/slack/events", body=body.encode(), headers=headers)
        resp = conn.getresponse()
        resp.read()
        out.append((time.perf_counter() - t0) * 1000)
        if resp.status != 200:
            raise SystemExit(f"click {i}: HTTP {resp.status}")
        if resp.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    return out


def fire(port: int, values: list[str], concurrency: int) -> list[float]:
    """Send one signed click per value, ``concurrency`` at a time; return latencies in ms."""
    import multiprocessing

    chunks: list[list[tuple[int, str]]] = [[] for _ in range(concurrency)]
    for i, v in enumerate(values):
        chunks[i % concurrency].append((i, v))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(concurrency) as pool:
        start_at = time.time() + 2.0  # every client starts together, after the pool is up
        parts = pool.starmap(_client_process, [(port, c, start_at) for c in chunks if c])
    return [ms for part in parts for ms in part]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clicks", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="rounds per app, alternating which goes first")
    ap.add_argument("--during-run", action="store_true", help="click while a scaled-out billing run runs")
    ap.add_argument("--factor", type=int, default=100, help="--during-run: the run's scale (x 1,124 branches)")
    ap.add_argument("--run-workers", type=int, default=2, help="--during-run: billbot workers settling the run")
    ap.add_argument("--nice", type=int, default=10, help="--during-run: the run's workers' niceness")
    ap.add_argument("--url", default=None, help="--during-run: PostgreSQL URL (default: bench/scale.py's)")
    ap.add_argument("--attach", type=Path, help="click during the run of the scale bench writing to this log")
    args = ap.parse_args()
    if args.attach:
        measure(args, Attached(args.attach, args.factor, args.nice))
        return
    background = start_run(args) if args.during_run else None
    try:
        measure(args, background)
    finally:
        if background is not None:
            stop_run(background)


class Attached:
    """A scale bench started by someone else, followed through its log (``--attach``)."""

    def __init__(self, log: Path, factor: int, nice: int) -> None:
        self.log, self.factor = log, factor
        print(f"waiting for {log} to say the {factor}x billing run was submitted…", flush=True)
        while f"{factor}x: billing run submitted" not in log.read_text():
            time.sleep(2)
        self.reniced = renice_workers(nice)
        print(f"{factor}x run in progress; {self.reniced} worker process(es) reniced to {nice}", flush=True)

    def poll(self) -> int | None:
        """None while the run is in progress (the log has no line with the run's figures yet), like Popen's."""
        log = self.log.read_text()
        done = re.search(rf"{self.factor}x: \d+ invoices;", log) or "Traceback" in log  # finished or failed
        return 0 if done else None


def renice_workers(nice: int) -> int:
    """Set the niceness of every ``billbot worker`` started by bench/scale.py (``--name scale-…``)."""
    n = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in cmd and any(c.startswith(b"scale-") for c in cmd):
            try:
                os.setpriority(os.PRIO_PROCESS, int(proc.name), nice)
                n += 1
            except OSError:
                pass
    return n


def start_run(args: argparse.Namespace) -> subprocess.Popen[str]:
    """``bench/scale.py`` in the background; returns once its billing run has been submitted."""
    cmd = [sys.executable, str(ROOT / "bench" / "scale.py"), "--factor", str(args.factor), "--workers",
           str(args.run_workers), "--nice", str(args.nice), "--skip-1x"] + (["--url", args.url] if args.url else [])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"[scale] {line.rstrip()}", flush=True)
        if "billing run submitted" in line:
            threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()  # keep draining
            return proc
    raise SystemExit(f"bench/scale.py ended before its run started (exit {proc.wait()})")


def stop_run(proc: subprocess.Popen[str]) -> None:
    """Stop the scale bench (it stops its workers and drops its database on SIGTERM)."""
    if proc.poll() is None:
        stop(proc, timeout=60)


def measure(args: argparse.Namespace, background: subprocess.Popen[str] | Attached | None) -> None:

    from tests.fakes.slack_api import FakeSlackAPI

    tmp = Path(tempfile.mkdtemp(prefix="billbot-ack-"))
    with FakeSlackAPI(users={APPROVER: {"name": "arne", "real_name": "Arne Approver",
                                        "email": "arne@example.com"}}) as api:
        env = {"DATABASE_URL": f"sqlite:///{tmp / 'billbot.db'}", "BILLBOT_VAR_DIR": str(tmp / "var"),
               "SIGNING_KEY_PATH": str(tmp / "signing_key.pem"), "SLACK_BOT_TOKEN": "xoxb-bench",
               "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": api.url, "EXCEPTIONS_CHANNEL": "CEXCEPTIONS",
               "BILLBOT_JOBS": "embedded"}
        t0 = time.perf_counter()
        values = seed(env, args.clicks * args.rounds)
        print(f"seeded {len(values)} pending exceptions in {time.perf_counter() - t0:.1f} s", flush=True)

        apps = {"baseline": ("ack_latency:bare_application", str(ROOT / "bench")),
                "billbot": ("bot.app:application", None)}
        ports = {name: free_port() for name in apps}
        procs = {name: start_gunicorn(target, ports[name], env, args, pythonpath=pypath)
                 for name, (target, pypath) in apps.items()}
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in apps}
        try:
            for name in apps:
                fire(ports[name], ["0:" + "0" * 64] * (args.concurrency * 3), args.concurrency)  # warm-up
            for r in range(args.rounds):
                # the same machine for both: one after the other, the order swapped every round
                for name in (("baseline", "billbot") if r % 2 == 0 else ("billbot", "baseline")):
                    batch = values[r * args.clicks:(r + 1) * args.clicks]
                    t0 = time.perf_counter()
                    lat = fire(ports[name], batch, args.concurrency)
                    wall = time.perf_counter() - t0 - 2.0
                    rounds[name].append({"p50": pct(lat, 50), "p99": pct(lat, 99), "n": len(lat)})
                    print(f"round {r + 1} {name:8s}: {len(lat)} clicks in {wall:.2f} s, p50 {pct(lat, 50):.1f} ms, "
                          f"p90 {pct(lat, 90):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms, "
                          f"mean {statistics.fmean(lat):.1f} ms", flush=True)
                    if name == "billbot":  # its decisions run after the acks: let them finish first
                        decided = wait_for_decisions(env, (r + 1) * args.clicks)
                        print(f"round {r + 1} billbot : {decided} of {(r + 1) * args.clicks} decisions recorded "
                              "after the acks", flush=True)
        finally:
            for proc in procs.values():
                stop(proc)

    def med(name: str, key: str) -> float:
        return float(statistics.median(x[key] for x in rounds[name]))

    out = {"p50_ms": round(med("billbot", "p50"), 1), "p99_ms": round(med("billbot", "p99"), 1),
           "baseline_p50_ms": round(med("baseline", "p50"), 1), "baseline_p99_ms": round(med("baseline", "p99"), 1),
           "ratio": round(med("billbot", "p99") / med("baseline", "p99"), 2), "clicks": args.clicks,
           "concurrency": args.concurrency, "rounds": args.rounds}
    if background is not None:
        out["during_run"] = {"factor": args.factor, "run_workers": args.run_workers, "nice": args.nice,
                             "in_progress_throughout": background.poll() is None,
                             "attached": isinstance(background, Attached)}
    print(json.dumps(out))


def wait_for_decisions(env: dict[str, str], n: int, timeout: float = 120) -> int:
    from sqlalchemy import func, select

    from bot import context
    from storage.models import Decision

    os.environ.update(env)
    db = context.get_db()
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        with db.read() as s:
            count = int(s.execute(select(func.count()).select_from(Decision)).scalar_one())
        if count >= n:
            break
        time.sleep(0.2)
    return count


if __name__ == "__main__":
    main()
