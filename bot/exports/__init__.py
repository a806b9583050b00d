"""Accounting export writers (issue 19): the DATEV *Buchungsstapel* and the Beancount ledger.

Adapters beside the PDF renderer and the mail sender: pure functions from a batch's header and its
:class:`billing.accounting.Entry` list to the file's bytes; the workflow
(:mod:`bot.workflows.accounting`) receives the writer as a parameter, and the same batch always gives
the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from billing.accounting import Entry
from bot.exports.beancount import beancount_ledger
from bot.exports.datev import datev_buchungsstapel

Writer = Callable[[Mapping[str, Any], Sequence[Entry]], bytes]

WRITERS: dict[str, Writer] = {"datev": datev_buchungsstapel, "beancount": beancount_ledger}

#: The file name a batch is written to by default.
SUFFIX = {"datev": ".csv", "beancount": ".beancount"}


def writer(fmt: str) -> Writer:
    return WRITERS[fmt]


def default_file_name(header: Mapping[str, Any]) -> str:
    """``EXTF_Buchungsstapel_acme_2026-10_batch3.csv`` / ``billbot_acme_2026-10_batch3.beancount``."""
    stem = "EXTF_Buchungsstapel" if header["format"] == "datev" else "billbot"
    return f"{stem}_{header['legal_entity']}_{header['period']}_batch{header['batch']}{SUFFIX[header['format']]}"
