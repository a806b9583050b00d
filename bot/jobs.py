"""The jobs facade: ``submit``, ``schedule_at`` and per-key ``lock`` — one API, three modes.

- **inline** (``BILLBOT_JOBS=inline``, tests): the task runs synchronously inside ``submit``; its
  result or error is kept in the returned handle.
- **embedded** (default; ``DATABASE_URL`` unset or SQLite): a thread pool runs tasks in this
  process; ``own_process`` tasks (PDF rendering, the decision after a Slack ack) go to their queue's
  process pool, at a lower priority, so they neither hold the GIL against the web threads nor take
  the CPU from them.
- **distributed** (``DATABASE_URL=postgresql…`` and ``BILLBOT_MODE=distributed``): tasks are deferred
  to Procrastinate's queue on PostgreSQL; ``billbot worker`` processes (any number, any machine) run
  them. Jobs survive restarts; a job of a worker that died (SIGKILL, lost machine) is put back to
  ``todo`` by :func:`retry_stalled_jobs` once its worker stopped heartbeating.

Per-key locks (:func:`lock`) live in the database (``kv`` rows named ``lock:<key>``), so "one sync
per source" and "one billing run per period" hold across threads, processes and machines in every
mode. A lock carries an expiry, so a process that died while holding one does not block the key
forever.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from billing.errors import BillingError, Conflict, NotFound
from bot import context
from bot.tasks.registry import TASKS, TaskSpec, UnknownTask
from bot.tasks.registry import get_task as _lookup
from storage.db import dispose_all
from storage.heartbeat import Heartbeat, holder_gone, holder_id
from storage.models import Setting
from storage.settings import get_settings

T = TypeVar("T")

log = logging.getLogger(__name__)

# Locks are leases: held for DEFAULT_LOCK_TTL and renewed every LOCK_RENEW_EVERY seconds by the holder
# (``lock()``), so a lock dies with its holder — a worker killed mid-run frees it within a minute, and
# the job Procrastinate re-queues can take it.
DEFAULT_LOCK_TTL = timedelta(seconds=60)
LOCK_RENEW_EVERY = 5.0


# --------------------------------------------------------------------------- modes


def mode() -> str:
    """``inline`` | ``embedded`` | ``distributed`` (read on every call; tests switch it)."""
    if os.environ.get("BILLBOT_JOBS", "").lower() == "inline":
        return "inline"

    url = get_settings().db_url
    if url.startswith("postgresql") and os.environ.get("BILLBOT_MODE", "").lower() == "distributed":
        return "distributed"
    return "embedded"


@dataclass
class JobHandle:
    """What ``submit`` returns. ``result()`` waits (inline/embedded); distributed jobs are only
    identified (their result stays with the worker; look at the workflow's rows instead)."""

    id: str
    task: str
    mode: str
    args: dict[str, Any] = field(default_factory=dict)
    future: Future[Any] | None = None

    def done(self) -> bool:
        return self.future.done() if self.future is not None else False

    def result(self, timeout: float | None = None) -> Any:
        if self.future is None:
            raise RuntimeError(f"job {self.id} runs on a Procrastinate worker; its result is not returned here")
        return self.future.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self.future is None:
            return None
        return self.future.exception(timeout)


# --------------------------------------------------------------------------- running one task


def get_task(name: str) -> TaskSpec:
    """The registered task ``name``, or :class:`NotFound` naming the known ones."""
    try:
        return _lookup(name)
    except UnknownTask as e:
        raise NotFound(str(e)) from None


#: Called in an embedded pool process before each task (:func:`bot.runtime.wire` sets it): the
#: process wires itself as a worker the first time. A module-level function, so it pickles by name.
_process_init: Callable[[], None] | None = None


def configure(*, process_init: Callable[[], None] | None) -> None:
    """Set what an embedded pool process runs before each task (the composition root's call)."""
    global _process_init  # noqa: PLW0603 - one per process
    _process_init = process_init


def run_task(name: str, kwargs: Mapping[str, Any]) -> Any:
    """Run task ``name`` here and now, holding its per-key lock if it has one."""
    spec = get_task(name)
    key = spec.lock(kwargs) if spec.lock is not None else None
    if key is None:
        return spec.fn(**kwargs)
    with lock(key, holder=f"{name}:{os.getpid()}"):
        return spec.fn(**kwargs)


def _run_in_child(fn: Callable[..., Any], name: str, kwargs: dict[str, Any], env: dict[str, str],
                  init: Callable[[], None] | None) -> Any:
    """Process-pool entry point: adopt the submitting process's environment (a fork server's
    environment is frozen at its own start; tests change it between cases), forgetting cached
    settings and database only when it changed; wire the process (``init``); run the task ``fn``
    (pickled by reference, so its module is imported here) under the task's lock."""
    global _child_env  # noqa: PLW0603 - one per pool process
    if env != _child_env:

        os.environ.clear()
        os.environ.update(env)
        context.reset()
        _child_env = env
    if init is not None:
        init()
    spec = TASKS.get(name) or TaskSpec(name=name, fn=fn)
    try:
        key = spec.lock(kwargs) if spec.lock is not None else None
        if key is None:
            return fn(**kwargs)
        with lock(key, holder=f"{name}:{os.getpid()}"):
            return fn(**kwargs)
    finally:

        dispose_all()  # no connection kept between tasks (tests truncate and copy databases)


def _child_init(niceness: int) -> None:
    """Pool processes run below the web server's priority: on a small machine the OS then gives the
    CPU to the threads that ack Slack (3-second deadline) before decisions and PDFs."""
    global _in_pool_child  # noqa: PLW0603 - one per pool process
    _in_pool_child = True
    if niceness:
        try:
            os.nice(niceness)
        except OSError:  # not allowed here: run at normal priority
            log.warning("could not lower the priority of job process %s", os.getpid())


#: Niceness of each embedded pool's processes (``queue`` → pool); decisions come before documents.
_POOL_NICENESS = {"decisions": 10, "documents": 15}

_pool_lock = threading.Lock()
_threads: ThreadPoolExecutor | None = None
_procs: dict[str, ProcessPoolExecutor] = {}
_inline_pending: list[tuple[datetime, str, dict[str, Any]]] = []
_child_env: dict[str, str] | None = None
_in_pool_child = False  # this process is an embedded pool's worker: it runs nested tasks on threads
_inflight = 0
_idle = threading.Condition()


def _thread_pool() -> ThreadPoolExecutor:
    global _threads  # noqa: PLW0603 - one pool per process
    with _pool_lock:
        if _threads is None:

            _threads = ThreadPoolExecutor(max_workers=max(2, get_settings().workers * 2),
                                          thread_name_prefix="billbot-job")
        return _threads


def _process_pool(queue: str) -> ProcessPoolExecutor:
    """One pool per queue, so a run's hundreds of PDFs never queue ahead of a person's decision."""
    with _pool_lock:
        pool = _procs.get(queue)
        if pool is None:

            # forkserver: forking a process that runs threads (web server, scheduler) can copy a held lock
            ctx = multiprocessing.get_context("forkserver")
            pool = ProcessPoolExecutor(max_workers=get_settings().workers, mp_context=ctx,
                                       initializer=_child_init, initargs=(_POOL_NICENESS.get(queue, 10),))
            _procs[queue] = pool
        return pool


def shutdown(wait: bool = True) -> None:
    """Stop the embedded pools (process exit, tests)."""
    global _threads  # noqa: PLW0603
    with _pool_lock:
        threads, procs, _threads = _threads, list(_procs.values()), None
        _procs.clear()
    if threads is not None:
        threads.shutdown(wait=wait)
    for pool in procs:
        pool.shutdown(wait=wait)
    _inline_pending.clear()


def _track(fut: Future[Any]) -> None:
    global _inflight  # noqa: PLW0603 - this process's count of embedded jobs
    with _idle:
        _inflight += 1

    def done(_f: Future[Any]) -> None:
        global _inflight  # noqa: PLW0603
        with _idle:
            _inflight -= 1
            _idle.notify_all()

    fut.add_done_callback(done)


def inflight() -> int:
    """Embedded jobs submitted by this process that have not finished yet."""
    return _inflight


def wait_idle(timeout: float = 30.0) -> bool:
    """Wait until every embedded job this process submitted has finished (tests, shutdown)."""
    import time

    deadline = time.monotonic() + timeout
    with _idle:
        while _inflight:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _idle.wait(left)
    return True


def _logged(name: str, fut: Future[Any]) -> None:
    exc = fut.exception()
    if isinstance(exc, BillingError):  # a named failure says what is wrong: one line, no traceback
        log.error("job %s failed: %s", name, exc)
    elif exc is not None:
        log.error("job %s failed: %s", name, exc, exc_info=exc)


# --------------------------------------------------------------------------- the facade


def submit(task_name: str, **kwargs: Any) -> JobHandle:
    """Run ``task_name(**kwargs)`` in the background (or now, inline). Arguments must be JSON-able."""
    spec = get_task(task_name)
    args = json.loads(json.dumps(kwargs, default=str))  # what a queue would store: fail early, not in a worker
    m = mode()
    if m == "distributed":
        job_id = _defer(spec, args)
        return JobHandle(id=str(job_id), task=task_name, mode=m, args=args)
    handle_id = uuid.uuid4().hex[:12]
    if m == "inline":
        fut: Future[Any] = Future()
        try:
            fut.set_result(run_task(task_name, args))
        except Exception as e:  # kept in the handle, like a pool would; the caller decides
            log.exception("job %s failed", task_name)
            fut.set_exception(e)
        return JobHandle(id=handle_id, task=task_name, mode=m, args=args, future=fut)
    if spec.own_process and not _in_pool_child:
        fut = _process_pool(spec.queue).submit(_run_in_child, spec.fn, task_name, args, dict(os.environ),
                                               _process_init)
    else:
        fut = _thread_pool().submit(run_task, task_name, args)
    _track(fut)
    fut.add_done_callback(lambda f: _logged(task_name, f))
    return JobHandle(id=handle_id, task=task_name, mode=m, args=args, future=fut)


def schedule_at(when: datetime, task_name: str, **kwargs: Any) -> JobHandle:
    """Run ``task_name(**kwargs)`` at ``when`` (aware datetime).

    Distributed: a Procrastinate job with ``schedule_at`` — durable. Embedded: a timer in this
    process — NOT durable across restarts; anything that must survive a restart is data (SLA timers
    are columns swept every minute, cron schedules are ``schedules`` rows). Inline: due jobs run
    now, later ones wait for :func:`run_due`.
    """
    if when.tzinfo is None:
        raise ValueError("schedule_at needs an aware datetime")
    spec = get_task(task_name)
    args = json.loads(json.dumps(kwargs, default=str))
    m = mode()
    now = datetime.now(UTC)
    if m == "distributed":
        job_id = _defer(spec, args, schedule_at=when)
        return JobHandle(id=str(job_id), task=task_name, mode=m, args=args)
    if m == "inline":
        if when <= now:
            return submit(task_name, **args)
        _inline_pending.append((when, task_name, args))
        return JobHandle(id=uuid.uuid4().hex[:12], task=task_name, mode=m, args=args)
    delay = max(0.0, (when - now).total_seconds())
    fut: Future[Any] = Future()

    def fire() -> None:
        h = submit(task_name, **args)
        if h.future is not None:
            h.future.add_done_callback(lambda f: _chain(f, fut))

    timer = threading.Timer(delay, fire)
    timer.daemon = True
    timer.start()
    return JobHandle(id=uuid.uuid4().hex[:12], task=task_name, mode=m, args=args, future=fut)


def _chain(src: Future[Any], dst: Future[Any]) -> None:
    exc = src.exception()
    if exc is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())


def run_due(now: datetime | None = None) -> list[JobHandle]:
    """Inline mode: run the ``schedule_at`` jobs whose time has come (tests move the clock)."""
    now = now or datetime.now(UTC)
    due = [p for p in _inline_pending if p[0] <= now]
    for p in due:
        _inline_pending.remove(p)
    return [submit(name, **args) for _when, name, args in sorted(due, key=lambda p: p[0])]


# --------------------------------------------------------------------------- per-key locks


def _lock_row_key(key: str) -> str:
    k = f"lock:{key}"
    if len(k) > 100:
        raise ValueError(f"lock key too long: {key!r}")
    return k


def acquire_lock(key: str, *, holder: str = "", ttl: timedelta = DEFAULT_LOCK_TTL, db: Any = None,
                 now: datetime | None = None, reclaim: bool = False) -> str:
    """Take lock ``key`` or raise :class:`Conflict` naming who holds it. Returns the token for
    :func:`release_lock`.

    One transaction: read the row ``FOR UPDATE`` (PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
    serializes writers); free or expired → write our token. Two first-time takers racing on
    PostgreSQL collide on the primary key: the loser's ``IntegrityError`` means "held".

    ``reclaim=True``: a lock held under the same ``holder`` is an earlier attempt of this very job, which
    a queue hands out again only after its worker died — taken over at once (holders must then be
    unique per job, e.g. the Slack message the command reports into).
    """

    db = db or context.get_db()
    now = now or datetime.now(UTC)
    token = uuid.uuid4().hex
    value = json.dumps({"token": token, "holder": holder, "since": now.isoformat(),
                        "expires": (now + ttl).isoformat(), "process": holder_id()})
    k = _lock_row_key(key)
    try:
        with db.transaction() as s:
            row = s.execute(select(Setting).where(Setting.key == k).with_for_update()).scalar_one_or_none()
            if row is None:
                s.add(Setting(key=k, value=value))
            else:
                held = json.loads(row.value)
                dead = holder_gone(held.get("process")) or (reclaim and bool(holder) and held.get("holder") == holder)
                if datetime.fromisoformat(held["expires"]) > now and not dead:
                    raise Conflict(f"{key} is busy (held by {held.get('holder') or 'another job'} since "
                                   f"{held['since'][:19].replace('T', ' ')} UTC)", code="locked")
                log.warning("lock %s of %s expired; taking it over", key, held.get("holder"))
                row.value = value
    except IntegrityError:
        raise Conflict(f"{key} is busy (taken by another job just now)", code="locked") from None
    return token


def renew_lock(key: str, token: str, *, ttl: timedelta = DEFAULT_LOCK_TTL, db: Any = None) -> bool:
    """Extend lock ``key`` by ``ttl`` from now if ``token`` still owns it (the holder's heartbeat)."""

    db = db or context.get_db()
    k = _lock_row_key(key)
    with db.transaction() as s:
        row = s.execute(select(Setting).where(Setting.key == k).with_for_update()).scalar_one_or_none()
        if row is None:
            return False
        held = json.loads(row.value)
        if held.get("token") != token:
            return False
        row.value = json.dumps({**held, "expires": (datetime.now(UTC) + ttl).isoformat()})
    return True


def release_lock(key: str, token: str, *, db: Any = None) -> bool:
    """Release lock ``key`` if ``token`` still owns it (an expired, taken-over lock is left alone)."""

    db = db or context.get_db()
    k = _lock_row_key(key)
    with db.transaction() as s:
        row = s.execute(select(Setting).where(Setting.key == k).with_for_update()).scalar_one_or_none()
        if row is None or json.loads(row.value).get("token") != token:
            return False
        s.execute(delete(Setting).where(Setting.key == k))
    return True


@contextmanager
def lock(key: str, *, holder: str = "", ttl: timedelta = DEFAULT_LOCK_TTL, db: Any = None,
         reclaim: bool = False) -> Iterator[str]:
    """``with lock("sync:tracker"): …`` — exclusive across processes; raises :class:`Conflict` if held.
    Renewed every :data:`LOCK_RENEW_EVERY` seconds while the block runs, so it outlives no holder."""
    token = acquire_lock(key, holder=holder, ttl=ttl, db=db, reclaim=reclaim)
    try:
        every = min(LOCK_RENEW_EVERY, ttl.total_seconds() / 4)
        with Heartbeat(lambda: renew_lock(key, token, ttl=ttl, db=db), every=every, name=f"billbot-lock-{key}"):
            yield token
    finally:
        release_lock(key, token, db=db)


def is_locked(key: str, *, db: Any = None, now: datetime | None = None) -> bool:

    db = db or context.get_db()
    with db.read() as s:
        row = s.get(Setting, _lock_row_key(key))
        if row is None:
            return False
        return bool(datetime.fromisoformat(json.loads(row.value)["expires"]) > (now or datetime.now(UTC)))


# --------------------------------------------------------------------------- distributed (Procrastinate)

_app_lock = threading.RLock()
_apps: dict[str, Any] = {}


def conninfo(url: str | None = None) -> str:
    """SQLAlchemy's ``postgresql+psycopg://`` URL as a libpq conninfo for Procrastinate."""
    if url is None:

        url = get_settings().db_url
    if not url.startswith("postgresql"):
        raise ValueError("distributed mode needs DATABASE_URL=postgresql+psycopg://…")
    return "postgresql://" + url.split("://", 1)[1]


def _runner(name: str) -> Any:
    def run(**kwargs: Any) -> Any:
        return run_task(name, kwargs)

    run.__name__ = f"billbot_{name}"
    run.__qualname__ = run.__name__
    return run


def _register_tasks(app: Any) -> None:
    """Mirror our registry into the Procrastinate app (idempotent; picks up tasks registered late)."""
    for spec in list(TASKS.values()):
        if spec.name not in app.tasks:
            app.task(name=spec.name, queue=spec.queue, retry=spec.retry, pass_context=False)(_runner(spec.name))


def get_app(url: str | None = None, *, fresh: bool = False) -> Any:
    """The Procrastinate app for ``url`` (default: the configured database), tasks registered.
    ``fresh`` makes a new, uncached app (one per worker thread: an app's connector opens once)."""
    import procrastinate

    info = conninfo(url)
    with _app_lock:
        app = None if fresh else _apps.get(info)
        if app is None:
            # no import_paths: the tasks are registered by the process's wiring and mirrored here
            app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=info))
            if not fresh:
                _apps[info] = app
        _register_tasks(app)
        return app


def _opened_app() -> Any:
    app = get_app()
    with _app_lock:
        if not getattr(app, "_billbot_open", False):
            app.open()
            app._billbot_open = True
    return app


def _defer(spec: TaskSpec, args: dict[str, Any], schedule_at: datetime | None = None) -> int:
    app = _opened_app()
    options: dict[str, Any] = {}
    if spec.lock is not None:
        # Procrastinate's own lock runs same-key jobs one after another; our DB lock still guards
        # against the same work started elsewhere (CLI, embedded process).
        key = spec.lock(args)
        if key:
            options["lock"] = key
    if schedule_at is not None:
        options["schedule_at"] = schedule_at
    t = app.tasks[spec.name]
    job_id: int = t.configure(**options).defer(**args) if options else t.defer(**args)
    return job_id


def close_apps() -> None:
    with _app_lock:
        for app in _apps.values():
            if getattr(app, "_billbot_open", False):
                app.close()
                app._billbot_open = False
        _apps.clear()


def apply_schema(url: str | None = None) -> bool:
    """Install Procrastinate's tables/functions in the database if missing. Returns True if applied."""
    app = get_app(url)
    with app.open():
        if app.check_connection():
            return False
        app.schema_manager.apply_schema()
    return True


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also when this thread already has a running
    event loop (a host that embeds us, such as a notebook or Playwright's sync API): then the
    coroutine runs on a fresh loop in a short-lived thread."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1) as ex:
        return ex.submit(lambda: asyncio.run(make())).result()


def retry_stalled_jobs(*, seconds_since_heartbeat: float = 60.0, url: str | None = None) -> list[int]:
    """Put ``doing`` jobs whose worker stopped heartbeating back to ``todo`` (Procrastinate's
    documented stalled-jobs recipe). Returns the job ids retried."""

    app = get_app(url, fresh=True)

    async def go() -> list[int]:
        async with app.open_async():
            stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
            ids = []
            for job in stalled:
                await app.job_manager.retry_job(job)
                ids.append(job.id)
            return ids

    ids = run_async(go)
    if ids:
        log.warning("retried stalled jobs %s", ids)
    return ids


def run_worker(*, queues: list[str] | None = None, concurrency: int = 1, name: str | None = None,
               wait: bool = True, heartbeat: float = 10.0, stalled_after: float = 30.0,
               url: str | None = None) -> None:
    """Run a Procrastinate worker in the foreground (``billbot worker``). At start-up it retries
    the jobs of workers that died (no heartbeat for ``stalled_after`` seconds)."""
    retry_stalled_jobs(seconds_since_heartbeat=stalled_after, url=url)
    app = get_app(url, fresh=True)
    app.run_worker(queues=queues, concurrency=concurrency, name=name, wait=wait,
                   update_heartbeat_interval=heartbeat, stalled_worker_timeout=stalled_after,
                   install_signal_handlers=threading.current_thread() is threading.main_thread())
