"""gunicorn's configuration file (read from the working directory): the web role refuses to start
without what it needs to verify Slack's requests (``SLACK_SIGNING_SECRET``)."""

import sys
from typing import Any


def on_starting(server: Any) -> None:  # noqa: ARG001 - gunicorn's hook signature
    from bot.app import check_http_settings
    from storage.settings import SettingsError

    try:
        check_http_settings()
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)  # noqa: T201 - gunicorn has not set up logging yet
        raise SystemExit(2) from None
