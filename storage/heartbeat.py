"""A background beat: ``with Heartbeat(fn, every=5):`` calls ``fn()`` every few seconds until the block
ends, so a lease or a run's heartbeat stays fresh while its holder lives and goes stale within a
minute of a ``kill -9``. A failing beat is logged and tried again at the next tick (SQLite may be busy
with the holder's own write transaction)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)

HOST = socket.gethostname()


def holder_id() -> dict[str, object]:
    """Who holds something: this host and process."""
    return {"host": HOST, "pid": os.getpid()}


def holder_gone(holder: object) -> bool:
    """True if ``holder`` (:func:`holder_id`) names a process of this host that no longer exists.
    Another host's process cannot be checked: False."""
    if not isinstance(holder, dict) or holder.get("host") != HOST:
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


class Heartbeat:
    def __init__(self, beat: Callable[[], object], *, every: float, name: str = "billbot-heartbeat") -> None:
        self._beat = beat
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._beat()
            except Exception as e:  # the next tick tries again; a stale beat is the holder's risk, not a crash
                log.warning("heartbeat failed: %s", e)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=self._every + 5)
