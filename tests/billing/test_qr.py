"""billing.documents.qr: segno's mask evaluation done by numpy gives segno's own symbols, bit for bit."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.documents import qr
from billing.payments import creditor_reference, epc_qr_payload


@pytest.fixture(autouse=True)
def _segno_as_shipped() -> Iterator[None]:
    qr.uninstall()
    yield
    qr.uninstall()


def _symbol(payload: str, *, fast: bool) -> tuple[int | str, int, list[bytes]]:
    (qr.install if fast else qr.uninstall)()
    code = segno.make(payload, error="m", micro=False, encoding="utf-8")
    return code.version, code.mask, [bytes(row) for row in code.matrix]


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=600))
def test_the_fast_mask_evaluation_chooses_and_applies_segnos_mask(payload: str) -> None:
    assert _symbol(payload, fast=True) == _symbol(payload, fast=False)


@pytest.mark.parametrize("n", [1, 17, 90, 300, 1200])
def test_every_mask_score_equals_segnos(n: int) -> None:
    """The four penalties themselves, for each of the eight masks of symbols of several versions."""
    import segno.encoder as enc

    payload = ("Rechnung INV-2026-000123 " * 60)[:n]
    code = segno.make(payload, error="m", micro=False, mask=0)
    size = len(code.matrix)
    for mask in range(8):
        matrix = [bytearray(r) for r in segno.make(payload, error="m", micro=False, mask=mask).matrix]
        assert qr.mask_scores(matrix, size, size) == enc.mask_scores(matrix, size, size)  # type: ignore[no-untyped-call]


def test_the_girocode_payload_makes_the_same_code_as_segno_and_a_png_of_one_pixel_per_module() -> None:
    payload = epc_qr_payload(name="Northwind Media GmbH", iban="DE89370400440532013000", amount=Decimal("1190.00"),
                             reference=creditor_reference("INV-2026-000123"))
    expected = segno.make(payload, error="m", micro=False, encoding="utf-8")
    assert qr.qr_png_data_uri(payload) == expected.png_data_uri(scale=1, border=2)
    assert _symbol(payload, fast=True)[1] == expected.mask
