"""The sandbox tests never render PDFs (``no_pdf_rendering`` in tests/conftest.py); the headless Chromium
fixtures (Debian's /usr/bin/chromium driven by Playwright) are in tests/conftest.py too."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_pdf_rendering(no_pdf_rendering: None) -> None:
    pass
