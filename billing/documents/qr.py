"""QR codes for documents (the GiroCode), made by ``segno`` with its data-mask evaluation done by numpy.

ISO/IEC 18004 (7.8.3) says the mask pattern with the lowest penalty score *shall* be chosen, so segno
applies all eight masks and scores each (rules N1–N4) — in Python loops over every module, about 5 ms of
an invoice's ~40 ms rendering. :func:`install` replaces those two loops (``segno.encoder.apply_mask``
and ``segno.encoder.mask_scores``) with array operations that take the same arguments and return the
same results, quirks included: segno still builds the code, chooses the mask by the same scores (ties
to the lower number) and writes format and version information. ``tests/billing/test_qr.py`` compares
whole symbols with segno's own functions for generated payloads of every length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_N3 = bytes((0x1, 0x0, 0x1, 0x1, 0x1, 0x0, 0x1))
_originals: tuple[Any, Any] | None = None
_patterns: dict[tuple[Any, int, int], np.ndarray] = {}
_region: list[Any] = [None, None]  # (segno's is_encoding_region closure, its array) of the symbol being built


def _array(matrix: Sequence[bytearray]) -> np.ndarray:
    return np.frombuffer(b"".join(matrix), dtype=np.uint8).reshape(len(matrix), -1)


def apply_mask(matrix: list[bytearray], mask_pattern: Callable[[Any, Any], Any], width: int, height: int,
               is_encoding_region: Callable[[int, int], bool]) -> None:
    """``segno.encoder.apply_mask``: XOR 1 where the pattern holds, in the encoding region, in place."""
    if _region[0] is not is_encoding_region:  # asked once per symbol, not once per module and mask
        _region[:] = [is_encoding_region, np.array([[bool(is_encoding_region(i, j)) for j in range(width)]
                                                    for i in range(height)])]
    key = (mask_pattern.__code__, width, height)
    pattern = _patterns.get(key)
    if pattern is None:  # segno's pattern functions use only + * // % & ==: they work on index arrays too
        i, j = np.indices((height, width))
        pattern = _patterns[key] = np.asarray(mask_pattern(i, j), dtype=bool)
    flipped = _array(matrix) ^ (pattern & _region[1]).astype(np.uint8)
    for r in range(height):
        matrix[r][:] = flipped[r].tobytes()


def _runs_penalty(a: np.ndarray) -> int:
    """N1 along the rows of ``a``: every run of ≥ 5 equal modules costs its length − 2."""
    edge = np.full((a.shape[0], 1), 255, dtype=np.uint8)  # a value no module has: each row's runs end there
    padded = np.hstack((edge, a, edge))
    bounds = np.flatnonzero((padded[:, 1:] != padded[:, :-1]).ravel())
    lengths = np.diff(bounds)
    long = lengths[lengths >= 5]
    return int((long - 2).sum())


def _n3(seq: bytes, size: int) -> int:
    """segno's ``n3_pattern_occurrences``, as it is (its light-area test included)."""
    count = 0
    idx = seq.find(_N3)
    while idx != -1:
        offset = idx + 7
        if idx in (0, size - 7) or not any(seq[max(idx - 4, 0):min(idx, size)]) \
                or not any(seq[max(offset, 0):min(offset + 4, size)]):
            count += 40
        else:
            offset = idx + 4
        idx = seq.find(_N3, offset)
    return count


def mask_scores(matrix: Sequence[bytearray], width: int, height: int) -> tuple[int, int, int, int]:
    """``segno.encoder.mask_scores``: the penalties ``(N1, N2, N3, N4)`` of a masked symbol."""
    assert width == height
    a = _array(matrix)
    n1 = _runs_penalty(a) + _runs_penalty(np.ascontiguousarray(a.T))
    same = (a[1:, 1:] == a[1:, :-1]) & (a[1:, 1:] == a[:-1, 1:]) & (a[1:, 1:] == a[:-1, :-1])
    n2 = 3 * int(same.sum())
    cols = np.ascontiguousarray(a.T)
    n3 = sum(_n3(a[i].tobytes(), width) + _n3(cols[i].tobytes(), width) for i in range(width))
    percent = float(int(a.sum(dtype=np.int64))) / (width ** 2)
    n4 = 10 * int(abs(percent * 100 - 50) / 5)
    return n1, n2, n3, n4


def install() -> None:
    """Make segno evaluate masks with the functions above (idempotent; :func:`uninstall` undoes it)."""
    global _originals  # noqa: PLW0603 - the one switch of this module
    import segno.encoder as enc

    if _originals is None:
        _originals = (enc.apply_mask, enc.mask_scores)
        enc.apply_mask, enc.mask_scores = apply_mask, mask_scores


def uninstall() -> None:
    global _originals  # noqa: PLW0603
    import segno.encoder as enc

    if _originals is not None:
        enc.apply_mask, enc.mask_scores = _originals
        _originals = None
        _region[:] = [None, None]


def qr_png_data_uri(payload: str) -> str:
    """A QR code of ``payload`` (error correction M, UTF-8, never Micro QR) as a PNG data URI, one pixel
    per module with a 2-module quiet zone."""
    import segno

    install()
    return str(segno.make(payload, error="m", micro=False, encoding="utf-8").png_data_uri(scale=1, border=2))
