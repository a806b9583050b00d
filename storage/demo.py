"""A deterministic demo scenario like the one billing desks face every month — and the files it arrives in.

A car maker runs a regional search campaign for its sales partners' branches (by default 546
partners with 1,124 branches, one advertiser per branch): CPC search clicks counted by the ad
tracker, CPM display impressions from the ad server for some branches, plus a per-test-drive CPL fee
counted from the dealer booking service's server logs. Thresholds and currencies are mixed (EUR at
home, reverse-charge EUR/PLN in the EU, CHF exports), a few branches show tracking gaps or
third-party discrepancies, and small branches fall below their billing threshold. ``seed`` changes
the data reproducibly; ``size`` scales the branch count.

Two ways to get the delivery in:

- :func:`build_demo` returns the scenario dict with the October delivery **inline** (``delivery``;
  ``billbot demo --inline-delivery``, the billing benchmark);
- :func:`demo_files` splits that delivery into what a billing desk really receives, so that the
  real connectors import it (``billbot demo`` + ``billbot cycle``):

  ======================== ============================================ =============================
  file                     holds                                        read by (source)
  ======================== ============================================ =============================
  ``tracker.json``         search clicks/impressions per day × affiliate  the demo tracker
                           (HasOffers ``Report::getStats`` rows)        (:mod:`bot.sandbox.tracker`),
                                                                        partial sync (``tracker``)
  ``gam-display.csv``      display impressions/clicks per day (Google   ``import report`` (``gam``)
                           Ad Manager API dump)
  ``client-analytics.csv`` the client's own click counts (GAM UI export) ``import report
                                                                        --third-party``
                                                                        (``client-analytics``)
  ``bookings.jsonl``       the booking service's JSON request log: one   ``import logs``
                           successful ``POST /test-drive/bookings`` per  (``dealer-logs``)
                           approved test drive, plus page views, failed
                           (4xx) posts and client retries (duplicates)
  ======================== ============================================ =============================

  Importing them yields the same first- and third-party figures and approved conversions per
  item and day as the inline delivery. **Pending** test drives are left out: a booking is logged
  when it is made, and a partial sync only re-checks conversions it already knows. Each file also
  carries a deliberately bad row or two (an unparseable date, an unknown offer / line item /
  campaign, a truncated log line) so that ``billbot quarantine list`` shows what quarantine is for.

Guarantees (any size ≥ 2, any seed): at least one branch with a tracking gap or a third-party
discrepancy (a ``variance`` exception) and at least one small, clean EUR branch whose month stays
below its threshold (a ``below_threshold`` skip). Where the random draw already has them, the data
is exactly what it always was; otherwise the last branches are made so.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

DEMO_PERIOD = "2026-10"
PERIOD_START = date(2026, 10, 1)
PERIOD_END = date(2026, 10, 31)

# Source names the demo's files are imported under (BILLBOT_SOURCE_<NAME>_*; file imports need no config).
TRACKER_SOURCE = "tracker"
GAM_SOURCE = "gam"
THIRD_PARTY_SOURCE = "client-analytics"
LOGS_SOURCE = "dealer-logs"
TRACKER_TOKEN = "demo-network-token"  # noqa: S105 - the local demo tracker's token, not a secret
MANIFEST = "manifest.json"

# Deliberately bad rows (see the module docstring); ids no demo size reaches.
UNKNOWN_OFFER = "999999"
UNKNOWN_LINE_ITEM = "4999999"
UNKNOWN_CLIENT_LINE_ITEM = "7699999"
UNKNOWN_CAMPAIGN = "branch-0000"
BAD_DATE = "2026-10-32"

CITIES_DE = ["Hamburg", "Berlin", "München", "Köln", "Frankfurt", "Stuttgart", "Düsseldorf", "Leipzig", "Dortmund",
             "Essen", "Bremen", "Dresden", "Hannover", "Nürnberg", "Duisburg", "Bochum", "Wuppertal", "Bielefeld",
             "Bonn", "Münster", "Kiel", "Lübeck", "Rostock", "Magdeburg", "Erfurt", "Mainz", "Kassel", "Freiburg"]
CITIES = {"DE": CITIES_DE, "AT": ["Wien", "Graz", "Linz", "Salzburg", "Innsbruck"],
          "CH": ["Zürich", "Basel", "Bern", "Luzern"], "PL": ["Warszawa", "Kraków", "Poznań", "Wrocław"]}
# a postcode per demo city (the street number varies per branch; CITIES_DE and CITIES in the same order)
POSTCODES = {
    "Hamburg": "20095", "Berlin": "10115", "München": "80331", "Köln": "50667", "Frankfurt": "60311",
    "Stuttgart": "70173", "Düsseldorf": "40213", "Leipzig": "04109", "Dortmund": "44135", "Essen": "45127",
    "Bremen": "28195", "Dresden": "01067", "Hannover": "30159", "Nürnberg": "90403", "Duisburg": "47051",
    "Bochum": "44787", "Wuppertal": "42103", "Bielefeld": "33602", "Bonn": "53111", "Münster": "48143",
    "Kiel": "24103", "Lübeck": "23552", "Rostock": "18055", "Magdeburg": "39104", "Erfurt": "99084",
    "Mainz": "55116", "Kassel": "34117", "Freiburg": "79098",
    "Wien": "1010", "Graz": "8010", "Linz": "4020", "Salzburg": "5020", "Innsbruck": "6020",
    "Zürich": "8001", "Basel": "4051", "Bern": "3011", "Luzern": "6003",
    "Warszawa": "00-001", "Kraków": "31-001", "Poznań": "61-001", "Wrocław": "50-001",
}
STREETS = {"DE": "Hauptstrasse", "AT": "Hauptstrasse", "CH": "Bahnhofstrasse", "PL": "ul. Główna"}
#: the seller's legal details its documents state (§ 35a GmbHG) and its bank (the IBAN's BIC)
SELLER = {
    "street": "Hafenstrasse 1", "postcode": "20457", "city": "Hamburg",
    "register_court": "Amtsgericht Hamburg", "register_number": "HRB 123456",
    "managing_directors": ["Nora Nordmann", "Jonas Weber"],
    "bank_name": "Commerzbank", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX",
}
NAMES = ["Nord", "Süd", "West", "Ost", "Elbe", "Rhein", "Main", "Weser", "Alster", "Isar", "Spree", "Havel",
         "Donau", "Neckar", "Mosel", "Saale", "Ems", "Ruhr", "Lahn", "Fulda"]
FORMS = {"DE": "GmbH & Co. KG", "AT": "GmbH", "CH": "AG", "PL": "Sp. z o.o."}
CURRENCY = {"DE": "EUR", "AT": "EUR", "CH": "CHF", "PL": "PLN"}
LOCALE = {"DE": "de", "AT": "de", "CH": "de", "PL": "pl"}

USERS = [
    {"slack_id": "U01OPERATOR", "name": "Olivia Operator", "email": "olivia@northwind.example", "roles": ["operator"]},
    {"slack_id": "U02APPROVER", "name": "Arne Approver", "email": "arne@northwind.example", "roles": ["approver"]},
    {"slack_id": "U03FINANCE", "name": "Fiona Finance", "email": "fiona@northwind.example",
     "roles": ["approver", "finance_manager"]},
    {"slack_id": "U04APPROVER", "name": "Bea Berger", "email": "bea@northwind.example", "roles": ["approver"]},
    {"slack_id": "U05ADMIN", "name": "Adam Admin", "email": "adam@northwind.example", "roles": ["admin", "operator"]},
]


def _vat_id(country: str, rng: random.Random) -> str:
    """A syntactically valid VAT id (correct check digits) for the demo's countries."""
    if country == "DE":
        from stdnum.iso7064 import mod_11_10

        body = str(rng.randint(10_000_000, 99_999_999))
        return "DE" + body + mod_11_10.calc_check_digit(body)
    if country == "AT":
        from stdnum.at import uid

        body = "U" + str(rng.randint(1_000_000, 9_999_999))
        return "AT" + body + uid.calc_check_digit(body)
    if country == "PL":
        from stdnum.pl import nip

        while True:  # the last digit makes the weighted sum 0 mod 11; bodies needing "10" are redrawn
            body = str(rng.randint(100_000_000, 999_999_999))
            for last in "0123456789":
                if nip.is_valid(body + last):
                    return "PL" + body + last
    from stdnum.ch import uid as ch_uid

    while True:
        body = str(rng.randint(10_000_000, 99_999_999))
        check = ch_uid.calc_check_digit(body)
        if check != "10":
            return f"CHE{body}{check} MWST"


def _money(d: Decimal) -> str:
    return str(d.quantize(Decimal("0.01")))


def partner_id(p: int) -> str:
    """The id of demo partner ``p`` (0-based)."""
    return f"partner-{p + 1:03d}"


def offer_id(i: int) -> str:
    """The tracker's offer id of branch ``i``'s search item (0-based)."""
    return str(1001 + i)


def gam_line_item(i: int) -> str:
    """The ad server's line item id of branch ``i``'s display item."""
    return str(5_550_001 + i * 3)


def client_line_item(i: int) -> str:
    """The client's analytics id of branch ``i``'s search item (third-party clicks)."""
    return str(7_700_001 + i)


# The branch made small and clean when the random draw has none (see _small_branch_is_clean).
_FORCED_CPC = Decimal("0.60")
_FORCED_DAILY_CLICKS = 4
_FORCED_DRIVE_DAYS = (4, 13, 22)


def _forced_clicks(d: int) -> int:
    """3/5 clicks on alternating days, 4 on the 31st: exactly 4 a day over October (no variance)."""
    if d == 30:
        return _FORCED_DAILY_CLICKS
    return _FORCED_DAILY_CLICKS + (1 if d % 2 else -1)


def _small_branch_is_clean(*, small: bool, display: bool, currency: str, gap: bool, third_party: bool,
                           clicks: int, daily_clicks: int, cpc: Decimal, drives: int, threshold: Decimal) -> bool:
    """A small branch that surely ends below its threshold in a billing run: only search and test
    drives, in EUR, no gap, no third-party figures, clicks within 8 % of the plan (tolerance 10 %),
    2–4 test drives (plan 3.05, tolerance 50 %) and a total well under the threshold."""
    share = daily_clicks * 31
    return (small and not display and currency == "EUR" and not gap and not third_party
            and abs(clicks - share) <= Decimal("0.08") * share and 2 <= drives <= 4
            and clicks * cpc + drives * 25 < threshold * Decimal("0.95"))


def build_demo(size: int = 1124, seed: int = 1, partners: int | None = None) -> dict[str, Any]:  # noqa: C901, PLR0915 - the demo world, built in the order its README describes
    """Return the demo as a scenario dict (the ``billbot load`` format, with ``delivery``).

    Items carry the external ids the demo's files use: search ``tracker`` (offer) and
    ``client-analytics`` (the client's id), display ``gam`` (line item), test drives ``dealer-logs``
    (the branch id the booking service logs as ``campaign``).
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not cryptography
    n_partners = partners or max(1, round(size * 546 / 1124))
    scenario: dict[str, Any] = {
        "legal_entities": [{
            "id": "northwind-media", "name": "Northwind Media GmbH", "country": "DE", "currency": "EUR",
            "vat_id": "DE811907980", "start_of_week": "monday", "invoice_series": "INV-{year}-{seq:06d}",
            "credit_note_series": "CN-{year}-{seq:06d}", **SELLER,
        }],
        # the sales partners the branch names have always implied ("Autohaus Nord 001 … – Hamburg 2" is
        # branch 2 of partner 001), each invoiced per branch (``invoicing: consolidated`` bills a partner once)
        "partners": [{"id": partner_id(p), "name": f"Autohaus {NAMES[p % len(NAMES)]} {p + 1:03d}",
                      "invoicing": "per_branch"} for p in range(n_partners)],
        "advertisers": [], "campaigns": [], "users": USERS, "delivery": [], "exchange_rates": [],
    }
    day = PERIOD_START - timedelta(days=40)
    chf, pln = Decimal("0.9400"), Decimal("4.3000")
    while day <= PERIOD_END + timedelta(days=40):
        if day.weekday() < 5:
            chf += Decimal(rng.randint(-20, 20)) / 10000
            pln += Decimal(rng.randint(-60, 60)) / 10000
            for quote, rate in (("CHF", chf), ("PLN", pln)):
                scenario["exchange_rates"].append({"date": day, "base": "EUR", "quote": quote,
                                                   "rate": str(rate), "source": "ECB"})
        day += timedelta(days=1)

    # Branches per partner: every partner has at least one branch, the rest are spread at random.
    branch_partner = list(range(n_partners)) + [rng.randrange(n_partners) for _ in range(max(0, size - n_partners))]
    branch_partner = sorted(branch_partner[:size])
    branch_no: dict[int, int] = {}
    have_variance = have_skip = False  # the guarantees of the module docstring, so far
    for i, p in enumerate(branch_partner):
        # Forced only where the draw so far lacks them, on the last two branches: other sizes keep their data.
        force_gap = size >= 2 and i == size - 2 and not have_variance
        force_small = i == size - 1 and not have_skip
        branch_no[p] = branch_no.get(p, 0) + 1
        country = rng.choices(["DE", "AT", "CH", "PL"], weights=[86, 6, 4, 4])[0]
        if force_small:
            country = "DE"
        city = rng.choice(CITIES[country])
        name = f"Autohaus {NAMES[p % len(NAMES)]} {p + 1:03d} {FORMS[country]} – {city} {branch_no[p]}"
        adv_id = f"branch-{i + 1:04d}"
        small = rng.random() < 0.08 or force_small
        threshold = Decimal(rng.choice([0, 100, 250, 500])) if not small else Decimal(250)
        currency = CURRENCY[country]
        scenario["advertisers"].append({
            "id": adv_id, "name": name, "legal_entity": "northwind-media", "currency": currency, "country": country,
            "vat_id": _vat_id(country, rng), "billing_threshold": _money(threshold), "payment_terms_days": 14,
            "locale": LOCALE[country], "street": f"{STREETS[country]} {rng.randint(1, 200)}",
            "postcode": POSTCODES[city], "city": city, "customer_number": f"K-{20001 + i}",
            "email": f"billing@{adv_id}.example", "partner": partner_id(p),
        })
        fx = {"EUR": Decimal(1), "CHF": Decimal("0.94"), "PLN": Decimal("4.3")}[currency]
        cpc = (Decimal(rng.randint(35, 120)) / 100 * fx).quantize(Decimal("0.01"))
        if force_small:
            cpc = _FORCED_CPC
        items: list[dict[str, Any]] = [{
            "id": f"{adv_id}-search", "description": f"Regional search ads – {city}", "billing": "delivery",
            "rate_type": "cpc", "rate": _money(cpc), "booked_quantity": 0,
            "external_ids": {TRACKER_SOURCE: offer_id(i), THIRD_PARTY_SOURCE: client_line_item(i)},
        }]
        has_display = rng.random() < 0.3 and not force_small
        if has_display:
            items.append({
                "id": f"{adv_id}-display", "description": "Display retargeting", "billing": "delivery",
                "rate_type": "cpm", "rate": _money(Decimal(rng.randint(350, 600)) / 100 * fx),
                "booked_quantity": 0, "external_ids": {GAM_SOURCE: gam_line_item(i)},
            })
        items.append({
            "id": f"{adv_id}-testdrives", "description": "Booked test drives", "billing": "delivery",
            "rate_type": "cpl", "rate": _money(Decimal(25) * fx), "booked_quantity": 0,
            # a few bookings a month swing a lot; the desk tolerates half of the plan either way
            "tolerance": "0.50",
            "external_ids": {LOGS_SOURCE: adv_id},
        })
        scenario["campaigns"].append({
            "id": f"{adv_id}-2026", "advertiser": adv_id, "name": f"Regional search 2026 – {city}",
            "bill_me": True, "payment_interval": "monthly", "start": date(2026, 9, 1), "end": date(2026, 12, 31),
            "items": items,
        })
        # October delivery: clicks per day, impressions where display runs, test drives (approved/pending).
        daily_clicks = rng.randint(2, 6) if small else rng.randint(12, 90)
        daily_impr = rng.randint(4_000, 30_000)
        gap = (rng.random() < 0.02 or force_gap) and not force_small  # tracking outage: a few days without data
        third_party = rng.random() < 0.3 and not force_small  # the client's analytics reports clicks too
        discrepancy = third_party and rng.random() < 0.1  # … and sometimes far from ours
        gap_days = set(rng.sample(range(31), 5)) if gap else set()
        if force_small:
            daily_clicks = _FORCED_DAILY_CLICKS
        search_total = display_total = drives_total = 0
        for d in range(31):
            day = PERIOD_START + timedelta(days=d)
            if d in gap_days:
                continue
            if force_small:  # exact figures, no draws: clean and below the threshold
                clicks = _forced_clicks(d)
                search_total += clicks
                scenario["delivery"].append({"item": f"{adv_id}-search", "date": day, "clicks": clicks,
                                             "impressions": clicks * 25})
                if d in _FORCED_DRIVE_DAYS:
                    drives_total += 1
                    scenario["delivery"].append({"item": f"{adv_id}-testdrives", "date": day, "conversions": 1,
                                                 "status": "approved"})
                continue
            clicks = max(0, int(daily_clicks * rng.uniform(0.7, 1.3)))
            search_total += clicks
            scenario["delivery"].append({"item": f"{adv_id}-search", "date": day, "clicks": clicks,
                                         "impressions": clicks * rng.randint(15, 40)})
            if third_party:
                factor = rng.uniform(0.6, 0.75) if discrepancy else rng.uniform(0.97, 1.03)
                scenario["delivery"].append({"item": f"{adv_id}-search", "date": day, "source": "third_party",
                                             "clicks": round(clicks * factor)})
            if has_display:
                impr = int(daily_impr * rng.uniform(0.8, 1.2))
                display_total += impr
                scenario["delivery"].append({"item": f"{adv_id}-display", "date": day, "impressions": impr,
                                             "clicks": impr // 400})
            drives = rng.choice([0] * 9 + [1]) if small else rng.choice([0, 0, 0, 1, 1, 2])
            if drives:
                drives_total += drives
                scenario["delivery"].append({"item": f"{adv_id}-testdrives", "date": day, "conversions": drives,
                                             "status": "approved"})
            if not small and rng.random() < 0.05:
                scenario["delivery"].append({"item": f"{adv_id}-testdrives", "date": day, "conversions": 1,
                                             "status": "pending"})
        have_variance = have_variance or gap or discrepancy
        have_skip = have_skip or _small_branch_is_clean(
            small=small, display=has_display, currency=currency, gap=gap, third_party=third_party,
            clicks=search_total, daily_clicks=daily_clicks, cpc=cpc, drives=drives_total, threshold=threshold)
        # booked quantity over the campaign's 122 days, so October's pro-rata share matches the plan
        for it in items:
            if it["rate_type"] == "cpc":
                it["booked_quantity"] = daily_clicks * 122
            elif it["rate_type"] == "cpm":
                it["booked_quantity"] = daily_impr * 122
            else:
                it["booked_quantity"] = 12 if small else 81
    return scenario


def master_data(scenario: dict[str, Any]) -> dict[str, Any]:
    """The scenario without its inline ``delivery``: what ``billbot demo`` loads before the files."""
    return {k: v for k, v in scenario.items() if k != "delivery"}

# --------------------------------------------------------------------------- the files a desk receives


@dataclass(frozen=True)
class DemoFiles:
    """Where :func:`demo_files` wrote the demo's delivery, and what is in it."""

    directory: Path
    tracker: Path  # the demo tracker's data (served by bot.sandbox.tracker)
    gam_report: Path  # display delivery, GAM API dump (source "gam")
    third_party_report: Path  # the client's clicks, GAM UI export (source "client-analytics", --third-party)
    dealer_log: Path  # booking service request log, JSON lines (source "dealer-logs")
    period: str = DEMO_PERIOD
    tracker_token: str = TRACKER_TOKEN
    size: int | None = None  # branches
    seed: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("directory")
        for k in ("tracker", "gam_report", "third_party_report", "dealer_log"):
            d[k] = getattr(self, k).name
        d["sources"] = {"tracker": TRACKER_SOURCE, "gam_report": GAM_SOURCE,
                        "third_party_report": THIRD_PARTY_SOURCE, "dealer_log": LOGS_SOURCE}
        return d

    @classmethod
    def read(cls, directory: Path | str) -> DemoFiles:
        """The demo files in ``directory`` (its ``manifest.json``); ``FileNotFoundError`` when there are none."""
        d = Path(directory)
        m = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
        return cls(directory=d, tracker=d / m["tracker"], gam_report=d / m["gam_report"],
                   third_party_report=d / m["third_party_report"], dealer_log=d / m["dealer_log"],
                   period=m.get("period", DEMO_PERIOD), tracker_token=m.get("tracker_token", TRACKER_TOKEN),
                   counts=dict(m.get("counts") or {}), size=m.get("size"), seed=m.get("seed"))


def _iso(d: Any) -> date:
    return d if isinstance(d, date) else date.fromisoformat(str(d))


def demo_files(scenario: dict[str, Any], out_dir: Path | str, *, seed: int | None = None) -> DemoFiles:
    """Split the scenario's inline ``delivery`` into the files a billing desk really receives
    (see the module docstring) and write them, with ``manifest.json``, into ``out_dir``.

    Deterministic: the same scenario writes the same bytes. Importing the files (the tracker's stats
    through a partial sync) gives per item and day the same first-party impressions and clicks,
    third-party clicks and approved conversions as loading ``delivery`` inline.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"demo-files:{len(scenario.get('advertisers', []))}")  # noqa: S311 - demo noise only
    ext: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for c in scenario["campaigns"]:
        for it in c["items"]:
            ext[it["id"]] = dict(it.get("external_ids") or {})
            names[it["id"]] = f"{c['name']} | {str(it.get('rate_type') or 'flat').upper()}"
    counts: dict[str, int] = {}

    stats: list[dict[str, Any]] = []
    display: list[tuple[date, str, str, int, int]] = []
    third: list[tuple[date, str, str, int]] = []
    bookings: list[tuple[date, str, int]] = []  # (day, campaign, n-th booking of the day)
    pending = 0
    for row in scenario["delivery"]:
        item, day = row["item"], _iso(row["date"])
        ids = ext.get(item, {})
        party = row.get("source", "first_party")
        if party == "third_party":
            third.append((day, ids[THIRD_PARTY_SOURCE], names[item], int(row.get("clicks", 0))))
        elif TRACKER_SOURCE in ids:
            stats.extend(_tracker_rows(day, ids[TRACKER_SOURCE], int(row.get("impressions", 0)),
                                       int(row.get("clicks", 0)), rng))
        elif GAM_SOURCE in ids:
            display.append((day, ids[GAM_SOURCE], names[item], int(row.get("impressions", 0)),
                            int(row.get("clicks", 0))))
        elif row.get("status", "approved") == "approved":
            bookings.extend((day, ids[LOGS_SOURCE], n) for n in range(1, int(row.get("conversions", 0)) + 1))
        else:
            pending += int(row.get("conversions", 0))

    files = DemoFiles(directory=out, tracker=out / "tracker.json", gam_report=out / "gam-display.csv",
                      third_party_report=out / "client-analytics.csv", dealer_log=out / "bookings.jsonl",
                      size=len(scenario["advertisers"]), seed=seed)
    counts["stats_rows"] = _write_tracker(files.tracker, stats)
    counts["display_rows"] = _write_gam_api_dump(files.gam_report, display)
    counts["third_party_rows"] = _write_gam_ui_export(files.third_party_report, third)
    counts.update(_write_booking_log(files.dealer_log, bookings, rng))
    counts["pending_test_drives_left_out"] = pending
    files = replace(files, counts=counts)
    (out / MANIFEST).write_text(json.dumps(files.manifest(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return files


def _tracker_rows(day: date, offer: str, impressions: int, clicks: int, rng: random.Random) -> list[dict[str, Any]]:
    """One day of an offer as ``Report::getStats`` rows grouped by affiliate: the search clicks come
    through two affiliates (1: Google Ads, 2: Microsoft Advertising); the tracker's rows sum to the day."""
    share = rng.uniform(0.1, 0.3)
    c2, i2 = int(clicks * share), int(impressions * share)
    rows = [(1, impressions - i2, clicks - c2)] + ([(2, i2, c2)] if c2 or i2 else [])
    return [{"date": day.isoformat(), "offer_id": offer, "affiliate_id": str(aff), "impressions": str(imps),
             "clicks": str(cl), "conversions": "0", "payout": "0.00", "revenue": "0.00"}
            for aff, imps, cl in rows]


def _write_tracker(path: Path, stats: list[dict[str, Any]]) -> int:
    stats = sorted(stats, key=lambda r: (r["date"], int(r["offer_id"]), int(r["affiliate_id"])))
    # an offer of a dealer that left the programme: the crosswalk does not know it (quarantined)
    stats.append({"date": "2026-10-15", "offer_id": UNKNOWN_OFFER, "affiliate_id": "1", "impressions": "512",
                  "clicks": "17", "conversions": "0", "payout": "0.00", "revenue": "0.00"})
    data = {
        "about": "Demo data of billbot's local HasOffers Network API v3 (bot/sandbox/tracker.py); written by "
                 "`billbot demo`, not a real network.",
        "network": "Northwind demo network",
        "token": TRACKER_TOKEN,
        "timezone": "Europe/Berlin",
        "affiliates": {"1": {"company": "Google Ads", "status": "active", "country": "US"},
                       "2": {"company": "Microsoft Advertising", "status": "active", "country": "US"}},
        "advertisers": {}, "employees": {},
        "stats": stats,
        "conversions": [],
    }
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    return len(stats)


def _write_gam_api_dump(path: Path, rows: list[tuple[date, str, str, int, int]]) -> int:
    """Google Ad Manager's API CSV dump (``Dimension.*``/``Column.*`` headers), one row per line item
    and day, plus a row with an impossible date and one of a line item we never booked."""
    rows = sorted(rows, key=lambda r: (r[0], int(r[1])))
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["Dimension.DATE", "Dimension.LINE_ITEM_ID", "Dimension.LINE_ITEM_NAME",
                    "Column.AD_SERVER_IMPRESSIONS", "Column.AD_SERVER_CLICKS"])
        for n, (day, li, name, imps, clicks) in enumerate(rows):
            w.writerow([day.isoformat(), li, name, imps, clicks])
            if n == len(rows) // 2:
                w.writerow([BAD_DATE, li, name, imps, clicks])
        if not rows:
            w.writerow([BAD_DATE, UNKNOWN_LINE_ITEM, "Display retargeting", 1000, 2])
        w.writerow(["2026-10-15", UNKNOWN_LINE_ITEM, "Display – Autohaus (campaign ended)", 18_250, 45])
    return len(rows) + 2


def _write_gam_ui_export(path: Path, rows: list[tuple[date, str, str, int]]) -> int:
    """The client's click counts as a Google Ad Manager UI export: a title block, US-style dates,
    thousands separators, a ``Total`` row — and one line item of another agency's campaign."""
    rows = sorted(rows, key=lambda r: (r[0], int(r[1])))
    total = sum(r[3] for r in rows)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["Client analytics – search clicks by day"])
        w.writerow([f"Date range: {PERIOD_START:%b} {PERIOD_START.day}, {PERIOD_START.year} - "
                    f"{PERIOD_END:%b} {PERIOD_END.day}, {PERIOD_END.year}"])
        w.writerow([])
        w.writerow(["Date", "Line item ID", "Line item", "Ad server impressions", "Ad server clicks"])
        for day, li, name, clicks in rows:
            w.writerow([f"{day:%b} {day.day}, {day.year}", li, name, "0", f"{clicks:,}"])
        w.writerow(["Oct 15, 2026", UNKNOWN_CLIENT_LINE_ITEM, "Brand search (other agency)", "0", "1,204"])
        w.writerow(["Total", "", "", "0", f"{total + 1204:,}"])
    return len(rows) + 1


def _write_booking_log(path: Path, bookings: list[tuple[date, str, int]], rng: random.Random) -> dict[str, int]:
    """The booking service's JSON request log (Europe/Berlin local times with their offset).

    Every approved test drive is one ``POST /test-drive/bookings`` answered 201 with its
    ``booking_id``; around them: page views (``GET``), rejected posts (422, 409) that book nothing,
    client retries that log the same booking twice, a booking for a campaign that is no longer in
    the programme and one line cut off mid-write."""
    tz = ZoneInfo("Europe/Berlin")
    lines: list[tuple[datetime, str]] = []
    retries = failed = views = 0

    def at(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, rng.randint(8, 19), rng.randint(0, 59), rng.randint(0, 59),
                        tzinfo=tz)

    def entry(when: datetime, method: str, target: str, status: int, body: dict[str, Any] | None = None) -> str:
        obj: dict[str, Any] = {"time": when.isoformat(), "level": "info" if status < 400 else "warning",
                               "service": "test-drive-booking", "method": method, "path": target, "status": status,
                               "duration_ms": rng.randint(20, 400)}
        if body is not None:
            obj["body"] = body
        return json.dumps(obj, ensure_ascii=False)

    for day, campaign, n in bookings:
        when = at(day)
        booking = f"TD-{day:%y%m%d}-{campaign.rsplit('-', 1)[-1]}-{n}"
        body = {"campaign": campaign, "booking_id": booking, "model": rng.choice(["ID.3", "ID.4", "ID.7", "Golf"])}
        lines.append((when, entry(when, "POST", "/test-drive/bookings", 201, body)))
        roll = rng.random()
        if roll < 0.03:  # the app retried after a timeout: the same booking logged again
            retries += 1
            again = when + timedelta(seconds=rng.randint(2, 30))
            lines.append((again, entry(again, "POST", "/test-drive/bookings", 201, body)))
        elif roll < 0.08:  # a form sent twice or incomplete: refused, nothing booked
            failed += 1
            status = rng.choice([409, 422])  # 409: the booking sent again after it was made; 422: incomplete
            bad = when + timedelta(seconds=rng.randint(5, 120) * (1 if status == 409 else -1))
            lines.append((bad, entry(bad, "POST", "/test-drive/bookings", status,
                                     {"campaign": campaign, "booking_id": booking if status == 409 else None})))
        if roll < 0.25:
            views += 1
            seen = when - timedelta(minutes=rng.randint(1, 30))
            lines.append((seen, entry(seen, "GET", f"/test-drive?dealer={campaign}", 200)))
    mid = datetime(2026, 10, 16, 10, 12, 5, tzinfo=tz)
    lines.append((mid, entry(mid, "POST", "/test-drive/bookings", 201,
                             {"campaign": UNKNOWN_CAMPAIGN, "booking_id": "TD-261016-0000-1", "model": "Golf"})))
    cut = datetime(2026, 10, 20, 17, 40, 0, tzinfo=tz)
    broken = entry(cut, "POST", "/test-drive/bookings", 201, {"campaign": "branch-0001", "booking_id": "TD-x"})
    lines.append((cut, broken[: len(broken) // 2]))  # the disk filled up mid-line
    lines.sort(key=lambda t: t[0].astimezone(UTC))
    path.write_text("".join(text + "\n" for _when, text in lines), encoding="utf-8")
    return {"bookings": len(bookings), "log_lines": len(lines), "retried_bookings": retries,
            "failed_posts": failed, "page_views": views}


def has_mixed_delivery(s: Any, *, inline: bool) -> bool:
    """True when the database already holds the demo's delivery the *other* way (inline rows of
    source ``scenario`` vs rows imported from the demo's files): loading both would count twice."""
    from sqlalchemy import select

    from storage.models import Conversion, DeliveryFact

    other = (TRACKER_SOURCE, GAM_SOURCE, THIRD_PARTY_SOURCE, LOGS_SOURCE) if inline else ("scenario",)
    facts = DeliveryFact.source.in_(other)
    convs = Conversion.source.in_(other)
    q1 = select(DeliveryFact.id).where(facts, DeliveryFact.item_id.like("branch-%")).limit(1)
    q2 = select(Conversion.id).where(convs, Conversion.item_id.like("branch-%")).limit(1)
    return s.execute(q1).first() is not None or s.execute(q2).first() is not None
