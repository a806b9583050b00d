"""Invoice numbers: a template per legal entity and series, a gapless sequence per year.

The template may use ``{year}`` and ``{seq}`` (with a format spec such as ``{seq:06d}``) and nothing
else. The sequence itself lives in the database (``NumberSequence``) and is advanced in the
finalizing transaction, so a rolled-back finalization gives its number back: no gaps, no reuse.

>>> format_number("INV-{year}-{seq:06d}", year=2026, seq=123)
'INV-2026-000123'
"""

from __future__ import annotations

import string

from billing.errors import Invalid

ALLOWED_FIELDS = frozenset({"year", "seq"})


def check_template(template: str) -> str:
    """Return ``template`` if it is a usable number template, else raise :class:`Invalid`."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise Invalid(f"number template {template!r}: {e}", code="series") from None
    if "seq" not in fields:
        raise Invalid(f"number template {template!r} must contain {{seq}}", code="series")
    if fields - ALLOWED_FIELDS:
        raise Invalid(f"number template {template!r} may only use {{year}} and {{seq}}", code="series")
    return template


def format_number(template: str, *, year: int, seq: int) -> str:
    if seq < 1:
        raise Invalid(f"sequence numbers start at 1, got {seq}", code="series")
    return check_template(template).format(year=year, seq=seq)
