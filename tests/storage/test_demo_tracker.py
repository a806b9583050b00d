"""The demo tracker speaks the HasOffers Network API v3 the connector expects: envelope, token, paging,
filters, groups, sorting, and the entity lists of a standard sync."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bot.sandbox.tracker import DemoTracker
from storage.sources.base import SourceError
from storage.sources.hasoffers import HasOffersClient, Params

DATA: dict[str, Any] = {
    "token": "t0k",
    "affiliates": {"2": {"company": "Microsoft Advertising"}, "1": {"company": "Google Ads"}},
    "stats": [
        {"date": "2026-10-01", "offer_id": "1001", "affiliate_id": "1", "impressions": "900", "clicks": "30"},
        {"date": "2026-10-01", "offer_id": "1001", "affiliate_id": "2", "impressions": "100", "clicks": "5"},
        {"date": "2026-10-02", "offer_id": "1002", "affiliate_id": "1", "impressions": "400", "clicks": "12"},
        {"date": "2026-10-03", "offer_id": "1001", "affiliate_id": "1", "impressions": "700", "clicks": "21"},
    ],
    "conversions": [
        {"id": "c1", "datetime": "2026-10-01 10:00:00", "status": "pending", "offer_id": "1001"},
        {"id": "c2", "datetime": "2026-10-02 11:00:00", "status": "approved", "offer_id": "1002"},
    ],
}


@pytest.fixture
def tracker() -> Iterator[DemoTracker]:
    with DemoTracker(DATA) as t:
        yield t


def _get(tracker: DemoTracker, **params: Any) -> dict[str, Any]:
    r = httpx.get(tracker.url + "/Apiv3/json", params={"NetworkToken": "t0k", **params}, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"request", "response"}
    assert "NetworkToken" not in body["request"]
    response: dict[str, Any] = body["response"]
    return response


def test_envelope_paging_and_filters(tracker: DemoTracker) -> None:
    client = HasOffersClient(tracker.url, "t0k", timeout=5)
    try:
        params: Params = [("fields[]", "Stat.date"), ("fields[]", "Stat.clicks"), ("fields[]", "Stat.offer_id"),
                  ("filters[Stat.date][conditional]", "BETWEEN"), ("filters[Stat.date][values][]", "2026-10-01"),
                  ("filters[Stat.date][values][]", "2026-10-02"), ("sort[Stat.date]", "asc")]
        pages = list(client.pages("Report", "getStats", params, limit=2))
    finally:
        client.close()
    assert [p for p, _ in pages] == [1, 2]
    rows = [r["Stat"] for _p, data in pages for r in data]
    assert rows == [{"date": "2026-10-01", "clicks": "30", "offer_id": "1001"},
                    {"date": "2026-10-01", "clicks": "5", "offer_id": "1001"},
                    {"date": "2026-10-02", "clicks": "12", "offer_id": "1002"}]
    assert tracker.calls == ["Report::getStats page=1", "Report::getStats page=2"]


def test_groups_sum_numbers_and_sort_descending(tracker: DemoTracker) -> None:
    resp = _get(tracker, Target="Report", Method="getStats", **{
        "fields[]": ["Stat.offer_id", "Stat.clicks", "Stat.impressions"], "groups[]": "Stat.offer_id",
        "sort[Stat.clicks]": "desc"})
    assert resp["status"] == 1 and resp["errors"] == []
    data = resp["data"]
    assert (data["page"], data["count"], data["pageCount"], data["current"]) == (1, 2, 1, 2)
    assert [r["Stat"] for r in data["data"]] == [{"offer_id": "1001", "clicks": "56", "impressions": "1700"},
                                                 {"offer_id": "1002", "clicks": "12", "impressions": "400"}]


def test_the_first_sort_key_is_the_primary_one(tracker: DemoTracker) -> None:
    resp = _get(tracker, Target="Report", Method="getStats", **{
        "fields[]": ["Stat.offer_id", "Stat.date", "Stat.affiliate_id"], "sort[Stat.offer_id]": "asc",
        "sort[Stat.date]": "desc", "filters[Stat.affiliate_id][conditional]": "EQUAL_TO",
        "filters[Stat.affiliate_id][values]": "1"})
    assert [(r["Stat"]["offer_id"], r["Stat"]["date"]) for r in resp["data"]["data"]] == [
        ("1001", "2026-10-03"), ("1001", "2026-10-01"), ("1002", "2026-10-02")]


def test_pending_recheck_by_id_and_entities_keyed_by_id(tracker: DemoTracker) -> None:
    resp = _get(tracker, Target="Report", Method="getConversions", **{
        "fields[]": ["Stat.id", "Stat.status"], "filters[Stat.id][conditional]": "EQUAL_TO",
        "filters[Stat.id][values][]": ["c1", "c9"]})
    assert [r["Stat"] for r in resp["data"]["data"]] == [{"id": "c1", "status": "pending"}]
    resp = _get(tracker, Target="Affiliate", Method="findAll", limit="1", page="2")
    assert resp["data"]["data"] == {"2": {"Affiliate": {"id": "2", "company": "Microsoft Advertising"}}}
    assert resp["data"]["pageCount"] == 2
    assert _get(tracker, Target="Employee", Method="findAll")["data"]["data"] == []


def test_errors_come_in_the_error_envelope(tracker: DemoTracker) -> None:
    r = httpx.get(tracker.url + "/Apiv3/json", params={"NetworkToken": "wrong", "Target": "Report",
                                                        "Method": "getStats", "fields[]": "Stat.date"}, timeout=5)
    resp = r.json()["response"]
    assert resp["status"] == -1 and resp["errors"][0]["err_msg"] == "Invalid NetworkToken"
    assert _get(tracker, Target="Offer", Method="delete")["errorMessage"] == "Method Offer::delete does not exist"
    assert _get(tracker, Target="Report", Method="getStats")["errorMessage"] == "fields is required"
    assert httpx.get(tracker.url + "/elsewhere", timeout=5).status_code == 404
    client = HasOffersClient(tracker.url, "wrong", timeout=5)
    with pytest.raises(SourceError, match="Invalid NetworkToken"):
        client.call("Report", "getStats", [("fields[]", "Stat.date")])
    client.close()


def test_stop_frees_the_port() -> None:
    t = DemoTracker(DATA).start()
    url = t.url
    t.stop()
    with pytest.raises(RuntimeError):
        _ = t.url
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/Apiv3/json", timeout=2)
