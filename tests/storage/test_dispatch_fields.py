"""The scenario format's dispatch fields (issue 19): invoice_emails, invoice_cc, dispatch."""

from __future__ import annotations

import pytest

from billing.errors import Invalid
from storage.loader import load_scenario
from storage.models import Advertiser
from tests.slack.desk import scenario


def test_dispatch_fields_load_and_bad_addresses_are_named(db) -> None:
    sc = scenario()
    sc["advertisers"][0].update(invoice_emails=["rechnung@elbe.example"], invoice_cc=["cfo@elbe.example"])
    sc["advertisers"][1].update(dispatch="none")
    load_scenario(db, sc)
    with db.read() as s:
        elbe, nord = s.get(Advertiser, "autohaus-elbe"), s.get(Advertiser, "fahrrad-nord")
        assert (elbe.invoice_emails, elbe.invoice_cc, elbe.dispatch) == (["rechnung@elbe.example"],
                                                                        ["cfo@elbe.example"], "email")
        assert (nord.invoice_emails, nord.dispatch) == ([], "none")

    sc["advertisers"][2].update(invoice_cc=["accounting at optik"], dispatch="fax")
    with pytest.raises(Invalid) as e:
        load_scenario(db, sc)
    text = str(e.value)
    assert "advertisers[2].invoice_cc" in text and "not an e-mail address: accounting at optik" in text
    assert "advertisers[2].dispatch" in text
