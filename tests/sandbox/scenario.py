"""A small scenario for the sandbox's end-to-end flows (``storage.loader.load_scenario`` input).

February 2026, one legal entity, three advertisers:
- Autohaus Elbe KG: a linear 2,800.00 EUR item — checks pass, approved by the system, invoiced by the run;
- Garage du Rhône SARL: CPC display booked 4,000 clicks, first-party delivery 40 clicks — a variance (CPC, not
  CPM: a CPM line's unit "1,000 impressions" does not fit ``preinvoice_lines.unit`` VARCHAR(16) on PostgreSQL);
- Kiosk Alster: a linear 180.00 EUR item under its 250.00 EUR threshold — skipped by the run (below_threshold).
"""

from __future__ import annotations

from typing import Any

PERIOD = "2026-02"
OPERATOR, APPROVER, FINANCE = "U01OPERATOR", "U02APPROVER", "U03FINANCE"


def scenario() -> dict[str, Any]:
    return {
        "legal_entities": [
            {"id": "northwind-media", "name": "Northwind Media GmbH", "country": "DE", "currency": "EUR",
             "vat_id": "DE811907980", "start_of_week": "monday", "address": "Hafenstrasse 1, 20457 Hamburg"},
        ],
        "advertisers": [
            {"id": "autohaus-elbe", "name": "Autohaus Elbe KG", "legal_entity": "northwind-media", "currency": "EUR",
             "country": "DE", "vat_id": "DE136695976", "billing_threshold": "250.00",
             "address": "Elbchaussee 10, 22763 Hamburg"},
            {"id": "garage-lyon", "name": "Garage du Rhône SARL", "legal_entity": "northwind-media", "currency": "EUR",
             "country": "FR", "vat_id": "FR40303265045", "billing_threshold": "0.00", "address": "1 Quai Perrache, 69002 Lyon"},
            {"id": "kiosk-alster", "name": "Kiosk Alster", "legal_entity": "northwind-media", "currency": "EUR",
             "country": "DE", "vat_id": "DE129273398", "billing_threshold": "250.00", "address": "Alsterufer 2, 20354 Hamburg"},
        ],
        "campaigns": [
            {"id": "elbe-feb", "advertiser": "autohaus-elbe", "name": "February search", "payment_interval": "monthly",
             "start": "2026-02-01", "end": "2026-02-28",
             "items": [{"id": "elbe-feb-search", "description": "Regional search ads", "billing": "linear",
                        "unit": "amount", "period": "day_based", "amount": "2800.00"}]},
            {"id": "lyon-display", "advertiser": "garage-lyon", "name": "Display retargeting",
             "payment_interval": "monthly", "start": "2026-02-01", "end": "2026-02-28",
             "items": [{"id": "lyon-display-cpc", "description": "Display clicks", "billing": "delivery",
                        "rate_type": "cpc", "rate": "0.50", "booked_quantity": 4000, "tolerance": "0.10"}]},
            {"id": "alster-feb", "advertiser": "kiosk-alster", "name": "Neighbourhood banner",
             "payment_interval": "monthly", "start": "2026-02-01", "end": "2026-02-28",
             "items": [{"id": "alster-feb-banner", "description": "Banner placement", "billing": "linear",
                        "unit": "amount", "period": "day_based", "amount": "180.00"}]},
        ],
        "users": [
            {"slack_id": OPERATOR, "name": "Olivia Operator", "email": "olivia@northwind.example", "roles": ["operator"]},
            {"slack_id": APPROVER, "name": "Arne Approver", "email": "arne@northwind.example", "roles": ["approver"]},
            {"slack_id": FINANCE, "name": "Fiona Finance", "email": "fiona@northwind.example",
             "roles": ["approver", "finance_manager"]},
        ],
        "delivery": [
            {"item": "lyon-display-cpc", "date": "2026-02-10", "source": "first_party", "impressions": 18000,
             "clicks": 40},
        ],
    }
