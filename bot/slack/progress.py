"""A Slack message that a long job keeps up to date: queued → running (progress, throttled to one
``chat.update`` a second) → done with the job log summary, or failed with the reason."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.blocks.progress import progress_fallback, run_progress

log = logging.getLogger(__name__)

UPDATE_EVERY_S = 1.0


class ProgressMessage:
    """The Slack message a job keeps updating."""

    def __init__(self, client: WebClient, channel: str, ts: str, title: str, actor: str) -> None:
        self.client, self.channel, self.ts, self.title, self.actor = client, channel, ts, title, actor
        self.lines: list[str] = []
        self.progress: str | None = None
        self._last = 0.0
        self._lock = threading.Lock()

    def update(self, state: str, *, force: bool = True) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < UPDATE_EVERY_S:
                return
            self._last = now
            blocks = run_progress(self.title, state=state, started_by=self.actor, lines=self.lines,
                                  progress=self.progress)
        try:
            self.client.chat_update(channel=self.channel, ts=self.ts, blocks=blocks,
                                    text=progress_fallback(self.title, state))
        except SlackClientError:  # progress is best effort; the job itself goes on
            log.warning("could not update progress message %s/%s", self.channel, self.ts, exc_info=True)

    def finish(self, blocks: Sequence[Any], text: str) -> None:
        """The final state: the given blocks (e.g. the run report) replace the progress."""
        try:
            self.client.chat_update(channel=self.channel, ts=self.ts, blocks=list(blocks), text=text)
        except SlackClientError:
            log.warning("could not update message %s/%s with the final report", self.channel, self.ts,
                        exc_info=True)

    def on_progress(self, *args: Any, **kwargs: Any) -> None:
        """Accepts what the workflows report: ``(done, total)`` from billing runs, ``(label, done,
        total)`` from syncs, or keyword ``message=`` log lines."""
        label = next((a for a in args if isinstance(a, str)), None)
        numbers = [a for a in args if not isinstance(a, str | bool)]
        done = kwargs.get("done", numbers[0] if numbers else None)
        total = kwargs.get("total", numbers[1] if len(numbers) > 1 else None)
        if done is not None:
            figure = f"{done}/{total}" if total else f"{done}"
            self.progress = f"{label}: {figure}" if label else figure
        elif label:
            self.progress = label
        message = kwargs.get("message") or kwargs.get("line")
        if isinstance(message, str):
            self.lines.append(message)
        self.update("running", force=False)


def result_field(result: Any, name: str) -> Any:
    if isinstance(result, Mapping):
        return result.get(name)
    return getattr(result, name, None)


def summary_lines(kind: str, result: Any) -> list[str]:
    """The job log, or a summary built from the result's figures when it has no log."""
    log_lines = result_field(result, "log")
    if isinstance(log_lines, Sequence) and not isinstance(log_lines, str) and log_lines:
        return [str(x) for x in log_lines]
    if kind == "run":
        created = result_field(result, "created") or []
        skipped = result_field(result, "skipped") or []
        held = result_field(result, "held") or []
        return [f"{len(created)} invoice(s) created, {len(skipped)} advertiser(s) skipped, {len(held)} held"]
    counts = result_field(result, "counts")
    if isinstance(counts, Mapping):
        return [", ".join(f"{k}: {v}" for k, v in counts.items()) or "nothing to sync"]
    return [str(result)[:500]]
