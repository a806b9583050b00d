"""Invoice numbers: a template per legal entity and series, a gapless sequence per year.

The template may use ``{year}`` and ``{seq}`` (with a format spec such as ``{seq:06d}``) and nothing
else. The sequence itself lives in the database (``NumberSequence``) and is advanced in the
finalizing transaction, so a rolled-back finalization gives its number back: no gaps, no reuse.

>>> format_number("INV-{year}-{seq:06d}", year=2026, seq=123)
'INV-2026-000123'
"""

from __future__ import annotations

import re
import string

from billing.errors import Invalid

ALLOWED_FIELDS = frozenset({"year", "seq"})
MAX_WIDTH = 12  # a sequence wider than this is a typo (``{seq:0999999999d}`` would allocate a gigabyte)
MAX_TEMPLATE = 64
_SPEC = re.compile(r"^0?(\d{0,3})d?$")


def check_template(template: str) -> str:
    """Return ``template`` if it is a usable number template, else raise :class:`Invalid`.

    ``{seq}`` and ``{year}`` take an integer format spec of at most :data:`MAX_WIDTH` digits
    (``06d``, ``d`` or none); nothing else, so no template can make a huge or surprising number."""
    if len(template) > MAX_TEMPLATE:
        raise Invalid(f"number template {template[:20]!r}…: longer than {MAX_TEMPLATE} characters", code="series")
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise Invalid(f"number template {template!r}: {e}", code="series") from None
    fields = {f for f, _, _ in parsed}
    for f, spec, conv in parsed:
        m = _SPEC.match(spec or "")
        if conv or m is None or (m.group(1) and int(m.group(1)) > MAX_WIDTH):
            raise Invalid(f"number template {template!r}: {{{f}:{spec}}} — use a width of at most {MAX_WIDTH} "
                          f"digits, e.g. {{seq:06d}}", code="series")
    if "seq" not in fields:
        raise Invalid(f"number template {template!r} must contain {{seq}}", code="series")
    if fields - ALLOWED_FIELDS:
        raise Invalid(f"number template {template!r} may only use {{year}} and {{seq}}", code="series")
    return template


def format_number(template: str, *, year: int, seq: int) -> str:
    if seq < 1:
        raise Invalid(f"sequence numbers start at 1, got {seq}", code="series")
    return check_template(template).format(year=year, seq=seq)
