"""Postal addresses of sellers and buyers: structured (street, postcode, city, ISO 3166 country) as
EN 16931 BG-5/BG-8 wants them, parsed from the one-line ``address`` of older scenario files, and
checked against what an invoice must state.

Rules (:func:`address_problems`):

- EN 16931 BR-8/BR-9 and BR-10/BR-11: the seller's and the buyer's postal address carry an ISO 3166-1
  alpha-2 country code;
- § 14 Abs. 4 Satz 1 Nr. 1 UStG (Art. 226 Nr. 5 MwStSystRL): the invoice states the *full* address of
  the supplier and of the recipient — street, postcode and city (no postcode where the country has
  none, e.g. Hong Kong).

>>> parse_address("Hafenstrasse 1, 20457 Hamburg, Germany", "DE")
PostalAddress(street='Hafenstrasse 1', postcode='20457', city='Hamburg', country='DE')
>>> address_problems("buyer", parse_address("Hauptstrasse 106, Frankfurt", "DE"))
['buyer address: postcode missing (§ 14 Abs. 4 Nr. 1 UStG)']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

_POSTCODE = re.compile(r"^(?:[A-Z]{1,2}-)?(\d{4,5}|\d{2}-\d{3}|\d{3} ?\d{2}|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})\s+(.+)$")
_STATE_ZIP = re.compile(r"^([A-Z]{2})\s+(\d{5}(?:-\d{4})?)$")

#: countries without postcodes (a full address there is street and city)
NO_POSTCODE = frozenset({"AE", "AG", "AO", "BS", "BZ", "HK", "QA", "SY", "TT", "UG", "YE", "ZW"})
#: Babel/CLDR territory codes of two letters that are not ISO 3166-1 countries
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"})


@dataclass(frozen=True)
class PostalAddress:
    """A postal address as EN 16931 BG-5 (seller) / BG-8 (buyer) holds it."""

    street: str | None
    postcode: str | None
    city: str | None
    country: str

    def lines(self) -> tuple[str, ...]:
        """The address as printed under the name (the country is added by the document when it differs)."""
        town = " ".join(x for x in (self.postcode, self.city) if x)
        return tuple(x for x in (self.street, town) if x)


def split_address(address: Sequence[str], country: str) -> dict[str, str]:
    """Postal address fields for EN 16931 (BG-5/BG-8) from free-text address lines.

    >>> split_address(("Hafenstrasse 1", "20457 Hamburg", "Germany"), "DE")
    {'country_code': 'DE', 'postcode': '20457', 'city': 'Hamburg', 'addr_l1': 'Hafenstrasse 1'}
    >>> split_address(("ul. Marszałkowska 10", "00-590 Warszawa"), "PL")["postcode"]
    '00-590'
    """
    parts = [p.strip() for p in address if p.strip()]
    out: dict[str, str] = {"country_code": country.upper()}
    street: list[str] = []
    for i, p in enumerate(parts):
        m = _POSTCODE.match(p)
        if m and "city" not in out:
            out["postcode"], out["city"] = m.group(1), m.group(2)
            continue
        m2 = _STATE_ZIP.match(p)
        if m2 and "postcode" not in out:
            out["postcode"], out["country_subdivision"] = m2.group(2), m2.group(1)
            if street and "city" not in out and i > 0:
                out["city"] = street.pop()
            continue
        if i == len(parts) - 1 and len(parts) > 1 and "city" in out:
            continue  # the country name
        street.append(p)
    if "city" not in out and len(street) > 1:
        out["city"] = street.pop()
    for n, s in enumerate(street[:3], start=1):
        out[f"addr_l{n}"] = s
    return out


def address_lines(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """The lines of a one-line address (``"Hafenstrasse 1, 20457 Hamburg"``) or of a list of lines."""
    if not text:
        return ()
    parts = re.split(r"[,\n]", text) if isinstance(text, str) else [str(x) for x in text]
    return tuple(p.strip() for p in parts if p.strip())


def parse_address(text: str | Sequence[str] | None, country: str) -> PostalAddress:
    """A structured address from the one-line ``address`` of an older scenario file; what cannot be
    read stays ``None`` (and :func:`address_problems` names it)."""
    f = split_address(address_lines(text), country)
    street = ", ".join(f[k] for k in ("addr_l1", "addr_l2", "addr_l3") if k in f) or None
    return PostalAddress(street=street, postcode=f.get("postcode"), city=f.get("city"), country=country.upper())


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    from babel import Locale

    codes = {str(c) for c in Locale("en").territories}
    return frozenset(c for c in codes if len(c) == 2 and c.isalpha()) - _NOT_COUNTRIES


def is_country(code: str | None) -> bool:
    """An ISO 3166-1 alpha-2 country code (as CLDR lists them).

    >>> is_country("DE"), is_country("EU"), is_country("de")
    (True, False, False)
    """
    return bool(code) and code in _countries()


def address_problems(role: str, a: PostalAddress) -> list[str]:
    """What the ``role`` (``seller`` or ``buyer``) address lacks for EN 16931 and § 14 UStG."""
    problems = []
    if not is_country(a.country):
        problems.append(f"{role} address: country {a.country!r} is not an ISO 3166-1 code (EN 16931 BR-9/BR-11)")
    if not (a.street or "").strip():
        problems.append(f"{role} address: street missing (§ 14 Abs. 4 Nr. 1 UStG)")
    if not (a.postcode or "").strip() and a.country not in NO_POSTCODE:
        problems.append(f"{role} address: postcode missing (§ 14 Abs. 4 Nr. 1 UStG)")
    if not (a.city or "").strip():
        problems.append(f"{role} address: city missing (§ 14 Abs. 4 Nr. 1 UStG)")
    return problems
