"""VAT treatment of an invoice: domestic, EU B2B reverse charge, or export (DESIGN.md "Invoices").

- domestic (buyer country = seller country): the seller country's standard rate, category ``S``;
- EU seller, EU buyer in another member state with a valid VAT id: reverse charge, 0 %, category
  ``AE``, with the note required by Art. 226 (11a) of Council Directive 2006/112/EC;
- buyer outside the EU (GB, CH, US, …) or a non-EU seller billing abroad: services are not subject
  to VAT there, 0 %, category ``O`` (the XML then carries no VAT ids, EN 16931 BR-O-02); goods
  (an item's ``supply: goods``) are an export, category ``G``. BR-O-11 keeps ``O`` off any invoice
  with another category: the billing run splits them (``bot.workflows.billing_run.invoice_parts``);
- EU B2B abroad without a valid VAT id is a problem, never silently domestic.

VAT ids are validated with python-stdnum (``stdnum.eu.vat``: check digits per member state).
VAT is computed once on the invoice net, half-up; gross = net + VAT exactly.

>>> vat_treatment(seller_country="DE", buyer_country="FR", buyer_vat_id="FR40303265045").category
'AE'
>>> vat_amount(Decimal("100.05"), Decimal("19"), "EUR")
Decimal('19.01')
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from babel import Locale
from stdnum.eu import vat as eu_vat

from billing.money import quantum

EU_COUNTRIES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
})

# Standard VAT rates in percent (2026). GB and CH bill their own VAT domestically; to the EU they are
# third countries. Countries not listed have no domestic rate here: billing them domestically is a problem.
STANDARD_RATES: dict[str, Decimal] = {
    "AT": Decimal("20"), "BE": Decimal("21"), "BG": Decimal("20"), "CY": Decimal("19"), "CZ": Decimal("21"),
    "DE": Decimal("19"), "DK": Decimal("25"), "EE": Decimal("24"), "ES": Decimal("21"), "FI": Decimal("25.5"),
    "FR": Decimal("20"), "GR": Decimal("24"), "HR": Decimal("25"), "HU": Decimal("27"), "IE": Decimal("23"),
    "IT": Decimal("22"), "LT": Decimal("21"), "LU": Decimal("17"), "LV": Decimal("21"), "MT": Decimal("18"),
    "NL": Decimal("21"), "PL": Decimal("23"), "PT": Decimal("23"), "RO": Decimal("21"), "SE": Decimal("25"),
    "SI": Decimal("22"), "SK": Decimal("23"), "GB": Decimal("20"), "CH": Decimal("8.1"),
}

REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Council Directive 2006/112/EC)"
)


def country_name(code: str) -> str:
    return str(Locale("en").territories.get(code.upper(), code.upper()))


def export_note(seller_country: str) -> str:
    return f"Export of services: not subject to VAT in {country_name(seller_country)}"


@dataclass(frozen=True)
class VatTreatment:
    rate: Decimal  # percent
    category: str  # UNCL5305: S, AE, O (services outside the EU), G (goods exported)
    note: str | None
    kind: str  # domestic | reverse_charge | export


@dataclass(frozen=True)
class VatProblem:
    message: str


def valid_vat_id(vat_id: str | None, country: str) -> bool:
    """A syntactically valid EU VAT id (check digits) whose prefix is the buyer's country."""
    if not vat_id:
        return False
    try:
        compact = eu_vat.compact(vat_id)
    except Exception:  # noqa: BLE001 - stdnum raises its own ValidationError family
        return False
    prefix = "EL" if country.upper() == "GR" else country.upper()
    return compact[:2] == prefix and bool(eu_vat.is_valid(compact))


def vat_treatment(
    *, seller_country: str, buyer_country: str, buyer_vat_id: str | None, supply: str = "services"
) -> VatTreatment | VatProblem:
    """Decide the VAT treatment of a B2B sale (advertising is a service; ``supply="goods"`` for goods).

    Outside the EU a service is not subject to VAT where the seller is (place of supply at the
    buyer, § 3a Abs. 2 UStG / Art. 44 Directive 2006/112/EC): UNCL5305 category ``O``. Only an export
    of *goods* is ``G`` (tax-exempt export, § 4 Nr. 1a UStG).

    >>> vat_treatment(seller_country="DE", buyer_country="CH", buyer_vat_id=None).category
    'O'
    >>> vat_treatment(seller_country="DE", buyer_country="CH", buyer_vat_id=None, supply="goods").category
    'G'
    """
    seller, buyer = seller_country.upper(), buyer_country.upper()
    if seller == buyer:
        rate = STANDARD_RATES.get(seller)
        if rate is None:
            return VatProblem(f"no VAT rate known for domestic sales in {seller}")
        return VatTreatment(rate, "S", None, "domestic")
    if seller in EU_COUNTRIES and buyer in EU_COUNTRIES:
        if not buyer_vat_id:
            return VatProblem(
                f"missing VAT data: the advertiser has no VAT id (needed for reverse charge to {buyer})")
        if not valid_vat_id(buyer_vat_id, buyer):
            return VatProblem(f"invalid VAT id {buyer_vat_id!r} for {buyer}: reverse charge needs a valid one")
        return VatTreatment(Decimal(0), "AE", REVERSE_CHARGE_NOTE, "reverse_charge")
    if supply == "goods":
        return VatTreatment(Decimal(0), "G", f"Export of goods: VAT exempt in {country_name(seller)}", "export")
    return VatTreatment(Decimal(0), "O", export_note(seller), "export")


def vat_amount(net: Decimal, rate: Decimal, currency: str) -> Decimal:
    """VAT on the invoice net, half-up to the minor unit (negative nets — credit notes — mirror it)."""
    return (net * rate / 100).quantize(quantum(currency), rounding=ROUND_HALF_UP)
