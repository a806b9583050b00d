"""A deterministic demo scenario like the one billing desks face every month.

A car maker runs a regional search campaign for its sales partners' branches (by default 546
partners with 1,124 branches, one advertiser per branch): CPC search clicks and, for some
branches, CPM display impressions from the ad server, plus a per-test-drive CPL fee counted from
server logs. Thresholds and currencies are mixed (EUR at home, reverse-charge EUR/PLN in the EU,
CHF exports), a few branches show tracking gaps or third-party discrepancies, and small branches
fall below their billing threshold. ``seed`` changes the data reproducibly; ``size`` scales the
branch count.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

DEMO_PERIOD = "2026-10"
PERIOD_START = date(2026, 10, 1)
PERIOD_END = date(2026, 10, 31)

CITIES_DE = ["Hamburg", "Berlin", "München", "Köln", "Frankfurt", "Stuttgart", "Düsseldorf", "Leipzig", "Dortmund",
             "Essen", "Bremen", "Dresden", "Hannover", "Nürnberg", "Duisburg", "Bochum", "Wuppertal", "Bielefeld",
             "Bonn", "Münster", "Kiel", "Lübeck", "Rostock", "Magdeburg", "Erfurt", "Mainz", "Kassel", "Freiburg"]
CITIES = {"DE": CITIES_DE, "AT": ["Wien", "Graz", "Linz", "Salzburg", "Innsbruck"],
          "CH": ["Zürich", "Basel", "Bern", "Luzern"], "PL": ["Warszawa", "Kraków", "Poznań", "Wrocław"]}
NAMES = ["Nord", "Süd", "West", "Ost", "Elbe", "Rhein", "Main", "Weser", "Alster", "Isar", "Spree", "Havel",
         "Donau", "Neckar", "Mosel", "Saale", "Ems", "Ruhr", "Lahn", "Fulda"]
FORMS = {"DE": "GmbH & Co. KG", "AT": "GmbH", "CH": "AG", "PL": "Sp. z o.o."}
CURRENCY = {"DE": "EUR", "AT": "EUR", "CH": "CHF", "PL": "PLN"}
LOCALE = {"DE": "de", "AT": "de", "CH": "de", "PL": "en"}

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


def build_demo(size: int = 1124, seed: int = 1, partners: int | None = None) -> dict[str, Any]:
    """Return the demo as a scenario dict (the ``billbot load`` format, with ``delivery``)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not cryptography
    n_partners = partners or max(1, round(size * 546 / 1124))
    scenario: dict[str, Any] = {
        "legal_entities": [{
            "id": "northwind-media", "name": "Northwind Media GmbH", "country": "DE", "currency": "EUR",
            "vat_id": "DE811907980", "start_of_week": "monday", "invoice_series": "INV-{year}-{seq:06d}",
            "credit_note_series": "CN-{year}-{seq:06d}", "address": "Hafenstrasse 1, 20457 Hamburg, Germany",
            "iban": "DE89370400440532013000",
        }],
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
    for i, p in enumerate(branch_partner):
        branch_no[p] = branch_no.get(p, 0) + 1
        country = rng.choices(["DE", "AT", "CH", "PL"], weights=[86, 6, 4, 4])[0]
        city = rng.choice(CITIES[country])
        name = f"Autohaus {NAMES[p % len(NAMES)]} {p + 1:03d} {FORMS[country]} – {city} {branch_no[p]}"
        adv_id = f"branch-{i + 1:04d}"
        small = rng.random() < 0.08
        threshold = Decimal(rng.choice([0, 100, 250, 500])) if not small else Decimal(250)
        currency = CURRENCY[country]
        scenario["advertisers"].append({
            "id": adv_id, "name": name, "legal_entity": "northwind-media", "currency": currency, "country": country,
            "vat_id": _vat_id(country, rng), "billing_threshold": _money(threshold), "payment_terms_days": 14,
            "locale": LOCALE[country], "address": f"Hauptstrasse {rng.randint(1, 200)}, {city}",
            "email": f"billing@{adv_id}.example",
        })
        fx = {"EUR": Decimal(1), "CHF": Decimal("0.94"), "PLN": Decimal("4.3")}[currency]
        cpc = (Decimal(rng.randint(35, 120)) / 100 * fx).quantize(Decimal("0.01"))
        items: list[dict[str, Any]] = [{
            "id": f"{adv_id}-search", "description": f"Regional search ads – {city}", "billing": "delivery",
            "rate_type": "cpc", "rate": _money(cpc), "booked_quantity": 0,
            "external_ids": {"gam": str(5_550_000 + i * 3)},
        }]
        has_display = rng.random() < 0.3
        if has_display:
            items.append({
                "id": f"{adv_id}-display", "description": "Display retargeting", "billing": "delivery",
                "rate_type": "cpm", "rate": _money(Decimal(rng.randint(350, 600)) / 100 * fx),
                "booked_quantity": 0, "external_ids": {"gam": str(5_550_001 + i * 3)},
            })
        items.append({
            "id": f"{adv_id}-testdrives", "description": "Booked test drives", "billing": "delivery",
            "rate_type": "cpl", "rate": _money(Decimal(25) * fx), "booked_quantity": 0,
            # a few bookings a month swing a lot; the desk tolerates half of the plan either way
            "tolerance": "0.50",
            "external_ids": {"dealer-logs": adv_id},
        })
        scenario["campaigns"].append({
            "id": f"{adv_id}-2026", "advertiser": adv_id, "name": f"Regional search 2026 – {city}",
            "bill_me": True, "payment_interval": "monthly", "start": date(2026, 9, 1), "end": date(2026, 12, 31),
            "items": items,
        })
        # October delivery: clicks per day, impressions where display runs, test drives (approved/pending).
        daily_clicks = rng.randint(2, 6) if small else rng.randint(12, 90)
        daily_impr = rng.randint(4_000, 30_000)
        gap = rng.random() < 0.02            # tracking outage: a few days without data
        third_party = rng.random() < 0.3     # the client's analytics reports clicks too
        discrepancy = third_party and rng.random() < 0.1  # … and sometimes far from ours
        gap_days = set(rng.sample(range(31), 5)) if gap else set()
        search_total = display_total = 0
        for d in range(31):
            day = PERIOD_START + timedelta(days=d)
            if d in gap_days:
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
                scenario["delivery"].append({"item": f"{adv_id}-testdrives", "date": day, "conversions": drives,
                                             "status": "approved"})
            if not small and rng.random() < 0.05:
                scenario["delivery"].append({"item": f"{adv_id}-testdrives", "date": day, "conversions": 1,
                                             "status": "pending"})
        # booked quantity over the campaign's 122 days, so October's pro-rata share matches the plan
        for it in items:
            if it["rate_type"] == "cpc":
                it["booked_quantity"] = daily_clicks * 122
            elif it["rate_type"] == "cpm":
                it["booked_quantity"] = daily_impr * 122
            else:
                it["booked_quantity"] = 12 if small else 81
    return scenario
