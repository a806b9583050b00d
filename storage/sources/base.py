"""The connector interface: configured sources that yield typed batches.

A source turns whatever it reads (an HTTP API, a report file, a server log) into :class:`Batch` es:
pandas DataFrames whose columns are declared in :data:`SCHEMAS`, all values still *text* as the
source gave them, plus ``_loc`` (``file:line`` or ``page:row``) and ``_raw`` (the raw row) so that
:mod:`storage.ingest` can normalise, validate and quarantine every row with its origin. Lines a source
cannot even split into fields travel as :class:`BadRow` s on the batch.

Sources are configured by name from the environment (``BILLBOT_SOURCE_<NAME>_URL``, ``_TOKEN``,
``_KIND``, ``_TIMEZONE``, ``_CURRENCY``, ``_LEGAL_ENTITY``, ``_LOOKBACK_DAYS``); file imports need no
configuration, their ``--source`` only names the source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from billing.errors import BillingError, Invalid
from billing.money import is_currency
from billing.periods import check_zone

SourceKind = Literal["hasoffers", "gam", "logs"]
BatchKind = Literal["employees", "advertisers", "affiliates", "stats", "conversions"]

# Declared columns per batch kind (text values; ingest parses them). Every frame also has _loc and _raw.
SCHEMAS: dict[str, tuple[str, ...]] = {
    "employees": ("external_id", "name", "email", "status"),
    "advertisers": ("external_id", "name", "status", "country", "currency"),
    "affiliates": ("external_id", "name", "status", "country"),
    # one row per day × item/offer × affiliate; revenue in currency units or micros (Batch.revenue_micros)
    "stats": ("day", "external_item", "affiliate", "impressions", "clicks", "conversions", "revenue", "currency"),
    # occurred_at: ISO 8601, naive = the source's time zone
    "conversions": ("external_id", "occurred_at", "status", "external_item", "affiliate", "payout", "revenue",
                    "currency", "kind"),
}
META_COLUMNS = ("_loc", "_raw")

ProgressFn = Callable[[str, int, int | None], None]


class SourceError(BillingError):
    """A source could not be read (HTTP errors after retries, an error envelope, a broken file)."""

    code = "source_error"
    exit_code = 1


@dataclass(frozen=True)
class BadRow:
    location: str
    raw: str
    reason: str


@dataclass
class Batch:
    kind: BatchKind
    frame: pd.DataFrame
    bad: list[BadRow] = field(default_factory=list)
    revenue_micros: bool = False  # GAM's API dump gives revenue in micros (1/1,000,000)
    ignored: int = 0  # rows that are not data by the source's own rule (log lines that are no billable event)
    label: str = ""  # e.g. "Report::getStats" — for job log lines
    item_label: str = "line item"  # what the source calls the external id of a campaign item ("offer", …)


def make_frame(kind: BatchKind, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A frame with exactly the declared columns of ``kind`` (missing values as None)."""
    cols = [*SCHEMAS[kind], *META_COLUMNS]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    frame = pd.DataFrame.from_records(rows, columns=cols).astype(object)
    return frame.where(frame.notna(), None)


# --------------------------------------------------------------------------- configuration


def _default_tz() -> str:
    return os.environ.get("BILLBOT_TIMEZONE", "Europe/Berlin")


class SourceConfig(BaseModel):
    """One source, by name. ``kind`` decides the connector; ``timezone`` is the zone its dates are in."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: SourceKind | None = None
    url: str | None = None
    token: str | None = Field(default=None, repr=False)
    timezone: str = Field(default_factory=_default_tz)
    currency: str | None = None
    legal_entity: str | None = None
    lookback_days: int = Field(default=30, ge=1, le=3650)
    page_limit: int = Field(default=1000, ge=1, le=100000)
    timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v or ""):
            raise ValueError(f"bad source name {v!r} (letters, digits, '-', '_', '.'; at most 64)")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_zone(v)

    @field_validator("currency")
    @classmethod
    def _cur(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not is_currency(v):
            raise ValueError(f"unknown currency {v!r}")
        return v.strip().upper()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def env_prefix(name: str) -> str:
    return "BILLBOT_SOURCE_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_"


_FIELDS = {"URL": "url", "TOKEN": "token", "KIND": "kind", "TIMEZONE": "timezone", "CURRENCY": "currency",
           "LEGAL_ENTITY": "legal_entity", "LOOKBACK_DAYS": "lookback_days", "PAGE_LIMIT": "page_limit",
           "TIMEOUT_S": "timeout_s"}


def get_source_config(name: str, *, kind: SourceKind | None = None, require: bool = False) -> SourceConfig:
    """The configuration of source ``name`` from ``BILLBOT_SOURCE_<NAME>_*``.

    ``kind`` is the fallback kind for file imports (which need no configuration); ``require=True``
    (API syncs) insists that the source is configured with a URL. Bad values raise :class:`Invalid`
    naming the environment variable.
    """
    prefix = env_prefix(name)
    data: dict[str, Any] = {"name": name}
    for suffix, attr in _FIELDS.items():
        val = os.environ.get(prefix + suffix)
        if val not in (None, ""):
            data[attr] = val.lower() if attr == "kind" else val
    if kind is not None and "kind" not in data:
        data["kind"] = kind
    try:
        cfg = SourceConfig(**data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            attr = str(err["loc"][0]) if err["loc"] else "name"
            var = next((prefix + k for k, v in _FIELDS.items() if v == attr), "--source")
            problems.append(f"{var}: {err['msg']}")
        raise Invalid(problems, code="source_config") from None
    if require:
        if cfg.kind is None:
            raise Invalid(f"source {name!r} is not configured (set {prefix}KIND and {prefix}URL)",
                          code="source_config")
        if cfg.kind == "hasoffers" and not cfg.url:
            raise Invalid(f"{prefix}URL: missing for tracker source {name!r}", code="source_config")
    return cfg


def configured_sources(kind: SourceKind | None = None) -> list[str]:
    """Names of sources configured in the environment (``BILLBOT_SOURCE_<NAME>_KIND``), lower-cased."""
    names = []
    for var, val in os.environ.items():
        m = re.fullmatch(r"BILLBOT_SOURCE_(.+)_KIND", var)
        if m and (kind is None or val.lower() == kind):
            names.append(m.group(1).lower().replace("_", "-"))
    return sorted(names)


# --------------------------------------------------------------------------- registry


class Source(Protocol):
    """What a connector offers: batches for a sync mode, given the stored watermark."""

    config: SourceConfig

    def fetch(self, *, mode: str, watermark: str | None, pending_ids: list[str], now: datetime,
              on_progress: ProgressFn | None = None) -> Iterator[Batch]: ...

    def advance_watermark(self, old: str | None, *, max_day: date | None, max_occurred: str | None) -> str | None:
        """The watermark after a completed sync that saw data up to ``max_day`` / ``max_occurred``."""
        ...


_REGISTRY: dict[str, Callable[[SourceConfig], Source]] = {}


def register(kind: str) -> Callable[[Callable[[SourceConfig], Source]], Callable[[SourceConfig], Source]]:
    def deco(factory: Callable[[SourceConfig], Source]) -> Callable[[SourceConfig], Source]:
        _REGISTRY[kind] = factory
        return factory

    return deco


def make_source(config: SourceConfig) -> Source:
    """The API connector for a configured source (file sources are read by their parsers)."""
    from storage.sources import hasoffers  # noqa: F401  (registers itself)

    factory = _REGISTRY.get(config.kind or "")
    if factory is None:
        raise Invalid(f"source {config.name!r} is a {config.kind or 'unconfigured'} source, not an API "
                      f"source: use `billbot import report|logs` for files", code="source_kind")
    return factory(config)
