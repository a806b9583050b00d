"""Load a scenario file into the database: validated, atomic, idempotent.

- Every problem of the file is reported at once (paths like ``campaigns[3].items[0].rate``) and
  nothing is written (:class:`billing.errors.Invalid`).
- One transaction: either the whole file lands or nothing does.
- Upsert by id: reloading the same file changes nothing (all ``unchanged``); a changed file
  updates the rows whose values differ.

Delivery rows of the file are stored as ``DeliveryFact(source="scenario")``; conversion counts
become individual ``Conversion`` rows (``source="scenario"``) so billing counts conversions in
one place, whatever their origin.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.orm import Session

from billing.addresses import parse_address
from billing.errors import Invalid
from storage.db import Database
from storage.models import (
    Advertiser,
    Campaign,
    CampaignItem,
    Conversion,
    DeliveryFact,
    ExchangeRate,
    ExternalId,
    LegalEntity,
    Partner,
    Setting,
    User,
    UserRole,
)
from storage.scenario import WEEKDAYS, AdvertiserIn, LegalEntityIn, Scenario, cross_check, parse_scenario

SCENARIO_SOURCE = "scenario"


#: Fields of EXISTING master data that move money (issue 14, maker-checker): a change of one of them by
#: ``billbot load`` is held in a change set for someone other than its author to approve; new records
#: and every other field apply directly. VAT data: the country and VAT id decide the VAT treatment.
MONEY_FIELDS: dict[str, tuple[str, ...]] = {
    "legal_entities": ("currency", "country", "vat_id", "tolerance", "due_date_rule", "fx_rule",
                       "fx_max_age_days"),
    "advertisers": ("currency", "country", "vat_id", "billing_threshold", "payment_terms_days", "tolerance",
                    "due_date_rule"),
    "campaigns": ("tolerance", "fx_rate"),
    "items": ("amount", "rate_type", "rate", "booked_quantity", "tolerance", "supply"),  # supply: VAT abroad
}
MODELS: dict[str, Any] = {"legal_entities": LegalEntity, "advertisers": Advertiser, "campaigns": Campaign,
                          "items": CampaignItem}


def canonical_value(v: Any) -> Any:
    """A field value as a change set shows and compares it: decimals exact without trailing zeros."""
    if isinstance(v, Decimal):
        text = format(v.normalize(), "f")
        return "0" if text in ("-0", "") else text
    return v


@dataclass
class LoadResult:
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    #: money-moving changes of existing records, not applied: ``{kind, id, field, before, after}``
    held: list[dict[str, Any]] = field(default_factory=list)
    change_set: int | None = None  # the change set holding them (set by the load workflow)

    def count(self, kind: str, outcome: str, n: int = 1) -> None:
        bucket = getattr(self, outcome)
        bucket[kind] = bucket.get(kind, 0) + n

    @property
    def changed(self) -> bool:
        return any(self.inserted.values()) or any(self.updated.values())

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}
        if self.held:
            out["held"] = self.held
            out["change_set"] = self.change_set
        return out


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter: a key given twice in one mapping is an error naming both lines
    (plain YAML keeps the last and silently drops a whole section), and dates stay text until the
    scenario model reads them (``2026-13-01`` is then a problem named by its path, not a traceback)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (lines {seen[key]} and {line})", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


StrictLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Invalid(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise Invalid(f"{path}: not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise Invalid(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None


def _sync_obj(obj: Any, values: dict[str, Any]) -> bool:
    changed = False
    for k, v in values.items():
        if getattr(obj, k) != v:
            setattr(obj, k, v)
            changed = True
    return changed


def _upsert_by_id(s: Session, model: Any, rows: list[dict[str, Any]], kind: str, res: LoadResult, *,
                  hold: bool = False) -> None:
    if not rows:
        return
    ids = [r["id"] for r in rows]
    existing = {o.id: o for o in s.execute(select(model).where(model.id.in_(ids))).scalars()}
    for r in rows:
        obj = existing.get(r["id"])
        if obj is None:
            s.add(model(**r))
            res.count(kind, "inserted")
            continue
        held = _held(obj, r, kind) if hold else []
        res.held += held
        direct = {k: v for k, v in r.items() if k not in {h["field"] for h in held}}
        if _sync_obj(obj, direct):
            res.count(kind, "updated")
        elif not held:
            res.count(kind, "unchanged")


def _held(obj: Any, r: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [{"kind": kind, "id": r["id"], "field": f, "before": canonical_value(getattr(obj, f)),
             "after": canonical_value(r[f])}
            for f in MONEY_FIELDS.get(kind, ()) if f in r and getattr(obj, f) != r[f]]


def load_scenario(
    db: Database,
    data: dict[str, Any] | Path | str,
    *,
    actor: str = "cli",
    audit: Callable[[Session, LoadResult], None] | None = None,
    hold_money_changes: bool = False,
) -> LoadResult:
    """Validate and load a scenario (a parsed dict or a YAML file path) in one transaction.

    ``hold_money_changes``: changes of :data:`MONEY_FIELDS` on existing records are not applied but
    listed in ``held`` (the load workflow turns them into a change set); ``audit`` runs when anything
    changed or was held."""
    raw = read_file(Path(data)) if isinstance(data, Path | str) else data
    sc = parse_scenario(raw)
    with db.transaction() as s:
        problems = cross_check(sc, _known_ids(s, sc))
        if problems:
            raise Invalid(problems)
        res = _apply(s, sc, hold=hold_money_changes)
        if audit is not None and (res.changed or res.held):
            audit(s, res)
    return res


def _known_ids(s: Session, sc: Scenario) -> dict[str, set[str]]:
    le_refs = {a.legal_entity for a in sc.advertisers} | {r.legal_entity for r in sc.routing or [] if r.legal_entity}
    adv_refs = ({c.advertiser for c in sc.campaigns} | {p.head_office for p in sc.partners if p.head_office}
                | {r.advertiser for r in sc.routing or [] if r.advertiser})
    partner_refs = {a.partner for a in sc.advertisers if a.partner}
    item_refs = {d.item for d in sc.delivery}

    def ids(col: Any, refs: set[str]) -> set[str]:
        return set(s.scalars(select(col).where(col.in_(refs)))) if refs else set()

    return {"legal_entities": ids(LegalEntity.id, le_refs), "advertisers": ids(Advertiser.id, adv_refs),
            "partners": ids(Partner.id, partner_refs),
            "items": ids(CampaignItem.id, item_refs)}


def _postal(x: LegalEntityIn | AdvertiserIn) -> dict[str, str | None]:
    """The structured address of a party: as given, or parsed from the one-line ``address`` of an older
    file (what cannot be read stays empty; the pre-invoice check ``check_addresses`` names it)."""
    if x.street or x.postcode or x.city or not x.address:
        return {"street": x.street, "postcode": x.postcode, "city": x.city}
    a = parse_address(x.address, x.country)
    return {"street": a.street, "postcode": a.postcode, "city": a.city}


def _apply(s: Session, sc: Scenario, *, hold: bool = False) -> LoadResult:
    res = LoadResult()
    _upsert_by_id(s, LegalEntity, [
        {"id": le.id, "name": le.name, "country": le.country, "currency": le.currency, "vat_id": le.vat_id,
         "start_of_week": WEEKDAYS.index(le.start_of_week), "invoice_series": le.invoice_series,
         "credit_note_series": le.credit_note_series, "address": le.address,
         "exceptions_channel": le.exceptions_channel, "tolerance": le.tolerance, "iban": le.iban,
         **_postal(le), "register_court": le.register_court, "register_number": le.register_number,
         "managing_directors": "\n".join(le.managing_directors) or None, "bank_name": le.bank_name,
         "bic": le.bic, "accounting": le.accounting,
         "invoice_date_rule": le.invoice_date, "due_date_rule": le.due_date, "fx_rule": le.fx_rule,
         "fx_max_age_days": le.fx_max_age_days,
         "dunning": [d.model_dump(mode="json") for d in le.dunning] or None, "default_owner": le.default_owner}
        for le in sc.legal_entities
    ], "legal_entities", res, hold=hold)
    s.flush()
    _upsert_by_id(s, Partner, [
        {"id": p.id, "name": p.name, "invoicing": p.invoicing, "head_office_id": p.head_office}
        for p in sc.partners
    ], "partners", res, hold=hold)
    s.flush()
    _upsert_by_id(s, Advertiser, [
        {"id": a.id, "name": a.name, "legal_entity_id": a.legal_entity, "currency": a.currency,
         "country": a.country, "vat_id": a.vat_id, "billing_threshold": a.billing_threshold,
         "payment_terms_days": a.payment_terms_days, "locale": a.locale, "address": a.address,
         "email": a.email, "tolerance": a.tolerance, **_postal(a), "customer_number": a.customer_number,
         "account_owner": a.account_owner,
         "invoice_emails": a.invoice_emails, "invoice_cc": a.invoice_cc, "dispatch": a.dispatch,
         "debtor_account": a.debtor_account, "invoice_date_rule": a.invoice_date, "due_date_rule": a.due_date,
         "partner_id": a.partner, "po_number": a.po_number, "po_required": a.po_required}
        for a in sc.advertisers
    ], "advertisers", res, hold=hold)
    s.flush()
    _upsert_by_id(s, Campaign, [
        {"id": c.id, "advertiser_id": c.advertiser, "name": c.name, "bill_me": c.bill_me,
         "payment_interval": c.payment_interval, "start": c.start, "end": c.end, "tolerance": c.tolerance,
         "fx_rate": c.fx_rate, "fx_rate_date": c.fx_rate_date, "po_number": c.po_number}
        for c in sc.campaigns
    ], "campaigns", res, hold=hold)
    s.flush()
    _upsert_by_id(s, CampaignItem, [
        {"id": it.id, "campaign_id": c.id, "position": pos, "description": it.description, "billing": it.billing,
         "unit": it.unit, "period": it.period, "amount": it.amount, "rate_type": it.rate_type, "rate": it.rate,
         "booked_quantity": it.booked_quantity, "start": it.start, "end": it.end, "tolerance": it.tolerance,
         "make_good": it.make_good, "variance_check": it.variance_check, "supply": it.supply}
        for c in sc.campaigns for pos, it in enumerate(c.items)
    ], "items", res, hold=hold)
    s.flush()
    _load_external_ids(s, sc, res)
    _load_users(s, sc, res)
    _load_delivery(s, sc, res)
    _load_rates(s, sc, res)
    _load_dispute_sla(s, sc, res)
    _load_review(s, sc, res)
    _load_freshness(s, sc, res)
    s.flush()
    return res


DISPUTE_SLA_KEY = "disputes.sla"  # the scenario's dispute_sla as JSON in the kv table (issue 20)


def _load_dispute_sla(s: Session, sc: Scenario, res: LoadResult) -> None:
    """The file's ``dispute_sla`` replaces the stored one (a file without it leaves it alone)."""
    if not sc.dispute_sla:
        return
    value = json.dumps({k: v.model_dump() for k, v in sc.dispute_sla.items()}, sort_keys=True,
                       separators=(",", ":"))
    row = s.get(Setting, DISPUTE_SLA_KEY)
    if row is None:
        s.add(Setting(key=DISPUTE_SLA_KEY, value=value))
        res.count("dispute_sla", "inserted")
    elif row.value != value:
        row.value = value
        res.count("dispute_sla", "updated")
    else:
        res.count("dispute_sla", "unchanged")


#: where the review controls of the scenario format live (key/value rows, canonical JSON)
REVIEW_KEYS = {"checklists": "review.checklists", "routing": "review.routing"}


def _load_review(s: Session, sc: Scenario, res: LoadResult) -> None:
    """Checklists and routing rules (issue 21): a section given in the file replaces the stored one
    as a whole (rule order matters: the first matching routing rule wins); a file without it keeps it."""
    for section, key in REVIEW_KEYS.items():
        given = getattr(sc, section)
        if given is None:
            continue
        value = json.dumps([r.model_dump(mode="json", exclude_none=True) for r in given], sort_keys=True,
                           separators=(",", ":"))
        row = s.get(Setting, key)
        if row is None:
            s.add(Setting(key=key, value=value))
            res.count(section, "inserted", len(given))
        elif row.value != value:
            row.value = value
            res.count(section, "updated", len(given))
        else:
            res.count(section, "unchanged", len(given))


FRESHNESS_KEY = "freshness.targets"  # the scenario's freshness targets as JSON in the kv table (issue 21)


def _load_freshness(s: Session, sc: Scenario, res: LoadResult) -> None:
    """The file's ``freshness`` targets replace the stored ones (a file without them leaves them alone)."""
    if not sc.freshness:
        return
    value = json.dumps({k: v.model_dump() for k, v in sc.freshness.items()}, sort_keys=True, separators=(",", ":"))
    row = s.get(Setting, FRESHNESS_KEY)
    if row is None:
        s.add(Setting(key=FRESHNESS_KEY, value=value))
        res.count("freshness", "inserted")
    elif row.value != value:
        row.value = value
        res.count("freshness", "updated")
    else:
        res.count("freshness", "unchanged")


def _load_external_ids(s: Session, sc: Scenario, res: LoadResult) -> None:
    wanted = {(src, "item", ext): it.id for c in sc.campaigns for it in c.items for src, ext in it.external_ids.items()}
    if not wanted:
        return
    existing = {
        (e.source, e.kind, e.external_id): e
        for e in s.execute(select(ExternalId).where(ExternalId.kind == "item")).scalars()
    }
    for k, our in wanted.items():
        e = existing.get(k)
        if e is None:
            s.add(ExternalId(source=k[0], kind=k[1], external_id=k[2], our_id=our))
            res.count("external_ids", "inserted")
        elif e.our_id != our:
            e.our_id = our
            res.count("external_ids", "updated")
        else:
            res.count("external_ids", "unchanged")


def _load_users(s: Session, sc: Scenario, res: LoadResult) -> None:
    if not sc.users:
        return
    ids = [u.slack_id for u in sc.users]
    existing = {u.slack_id: u for u in s.execute(select(User).where(User.slack_id.in_(ids))).scalars()}
    for u in sc.users:
        obj = existing.get(u.slack_id)
        if obj is None:
            obj = User(slack_id=u.slack_id, name=u.name, email=u.email)
            obj.roles = [UserRole(role=r) for r in sorted(set(u.roles))]
            s.add(obj)
            res.count("users", "inserted")
            continue
        changed = _sync_obj(obj, {"name": u.name or obj.name, "email": u.email or obj.email})
        if obj.role_names != set(u.roles):
            obj.roles = [r for r in obj.roles if r.role in set(u.roles)]
            obj.roles += [UserRole(role=r) for r in sorted(set(u.roles) - obj.role_names)]
            changed = True
        res.count("users", "updated" if changed else "unchanged")


def _load_delivery(s: Session, sc: Scenario, res: LoadResult) -> None:  # noqa: C901 - one branch per delivery record shape of the scenario format
    if not sc.delivery:
        return
    now = datetime.now(UTC)
    facts: dict[tuple[Any, ...], dict[str, Any]] = {}
    conversions: dict[str, dict[str, Any]] = {}
    for d in sc.delivery:
        k = (d.item, d.date, SCENARIO_SOURCE, d.source)
        f = facts.setdefault(k, {"item_id": d.item, "day": d.date, "source": SCENARIO_SOURCE, "party": d.source,
                                 "impressions": 0, "clicks": 0, "conversions": 0, "revenue": None})
        f["impressions"] += d.impressions
        f["clicks"] += d.clicks
        if d.revenue is not None:
            f["revenue"] = (f["revenue"] or 0) + d.revenue
        if d.conversions and d.source == "first_party":
            if d.status == "approved":
                f["conversions"] += d.conversions
            for i in range(d.conversions):
                ext = f"{d.item}:{d.date.isoformat()}:{d.status}:{i}"
                conversions[ext] = {"source": SCENARIO_SOURCE, "external_id": ext, "kind": "conversion",
                                    "item_id": d.item, "day": d.date, "status": d.status}
    items = {k[0] for k in facts}
    # Plain tuples, not ORM objects: the demo reloads ~70,000 facts and only compares them.
    existing = {
        (r.item_id, r.day, SCENARIO_SOURCE, r.party): r
        for r in s.execute(select(DeliveryFact.id, DeliveryFact.item_id, DeliveryFact.day, DeliveryFact.party,
                                  DeliveryFact.impressions, DeliveryFact.clicks, DeliveryFact.conversions,
                                  DeliveryFact.revenue)
                           .where(DeliveryFact.source == SCENARIO_SOURCE, DeliveryFact.item_id.in_(items)))
    }
    new_rows: list[dict[str, Any]] = []
    changed_rows: list[dict[str, Any]] = []
    for k, v in facts.items():
        row = existing.get(k)
        if row is None:
            new_rows.append({**v, "updated_at": now})
        elif (row.impressions, row.clicks, row.conversions, row.revenue) != (
                v["impressions"], v["clicks"], v["conversions"], v["revenue"]):
            changed_rows.append({"id": row.id, "impressions": v["impressions"], "clicks": v["clicks"],
                                 "conversions": v["conversions"], "revenue": v["revenue"], "updated_at": now})
    if new_rows:
        s.execute(insert(DeliveryFact), new_rows)
        res.count("delivery", "inserted", len(new_rows))
    if changed_rows:
        s.execute(update(DeliveryFact), changed_rows)
        res.count("delivery", "updated", len(changed_rows))
    if len(facts) > len(new_rows) + len(changed_rows):
        res.count("delivery", "unchanged", len(facts) - len(new_rows) - len(changed_rows))
    # conversions: the file states counts, so rows beyond the stated count are removed
    have = {c.external_id: c for c in s.execute(
        select(Conversion.external_id, Conversion.item_id, Conversion.day)
        .where(Conversion.source == SCENARIO_SOURCE, Conversion.item_id.in_(items)))}
    new_conv = [{**c, "updated_at": now} for ext, c in conversions.items() if ext not in have]
    if new_conv:
        s.execute(insert(Conversion), new_conv)
        res.count("conversions", "inserted", len(new_conv))
    stated_days = {(d.item, d.date) for d in sc.delivery if d.source == "first_party"}
    stale = [ext for ext, c in have.items() if ext not in conversions and (c.item_id, c.day) in stated_days]
    if stale:
        s.execute(delete(Conversion).where(Conversion.source == SCENARIO_SOURCE, Conversion.external_id.in_(stale)))
        res.count("conversions", "updated", len(stale))
    if len(conversions) > len(new_conv):
        res.count("conversions", "unchanged", len(conversions) - len(new_conv))


def _load_rates(s: Session, sc: Scenario, res: LoadResult) -> None:
    if not sc.exchange_rates:
        return
    keys = [(r.date, r.base, r.quote, r.source) for r in sc.exchange_rates]
    existing = {
        (e.day, e.base, e.quote, e.source): e
        for e in s.execute(select(ExchangeRate).where(
            tuple_(ExchangeRate.day, ExchangeRate.base, ExchangeRate.quote, ExchangeRate.source).in_(keys))).scalars()
    }
    for r in sc.exchange_rates:
        e = existing.get((r.date, r.base, r.quote, r.source))
        if e is None:
            s.add(ExchangeRate(day=r.date, base=r.base, quote=r.quote, rate=r.rate, source=r.source))
            res.count("exchange_rates", "inserted")
        elif e.rate != r.rate:
            e.rate = r.rate
            res.count("exchange_rates", "updated")
        else:
            res.count("exchange_rates", "unchanged")
