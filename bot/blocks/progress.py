"""The message a slash command keeps updating while its work runs in the background."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.blocks.common import clip, esc, mention

STATE_ICON = {"queued": ":hourglass:", "running": ":arrows_counterclockwise:", "done": ":white_check_mark:",
              "failed": ":x:"}
MAX_LOG_LINES = 40


def run_progress(
    title: str, *, state: str, started_by: str, lines: Sequence[str] = (), progress: str | None = None,
) -> list[Block]:
    """Header line, optional progress figure, then the job log (last lines, fenced)."""
    head = f"{STATE_ICON.get(state, '')} *{clip(esc(title), 200)}* — {state}"
    if progress:
        head += f"\n{clip(esc(progress), 500)}"
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=head))]
    shown = list(lines)[-MAX_LOG_LINES:]
    if shown:
        omitted = len(lines) - len(shown)
        body = ("…\n" if omitted else "") + "\n".join(esc(line) for line in shown)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(f"```{body}```", 3000))))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"started by {mention(started_by)}")]))
    return blocks


def progress_fallback(title: str, state: str) -> str:
    return clip(f"{esc(title)} — {state}", 300)
