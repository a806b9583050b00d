"""Evidence packs: what is inside, that a fresh pack verifies, and that it stops verifying after any
byte changes — in any member, and anywhere in the zip itself."""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from bot.cli import app
from bot.documents import pdf
from bot.workflows import evidence as wf
from bot.workflows.evidence import _canonical_zip, build_evidence_pack, verify_evidence_pack


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


@pytest.fixture
def pack(db, key, world, tmp_path: Path, out_dir: Path) -> Path:
    return build_evidence_pack(db, world.numbers["reverse"], tmp_path / "INV-2026-000002.zip", renderer=pdf, key=key,
                               out_dir=out_dir)


def test_pack_holds_pdf_xml_source_rows_manifest_decisions_and_sums(db, key, world, pack) -> None:
    assert verify_evidence_pack(pack) == []
    assert verify_evidence_pack(pack, public_key=key.public_key()) == []
    files = dict(_members(pack))
    assert set(files) == {"INV-2026-000002.pdf", "factur-x.xml", "lines/001-delivery.csv", "decisions.json",
                          "audit.jsonl", "public_key.pem", "manifest.json", "SHA256SUMS", "SHA256SUMS.sig"}
    rows = list(csv.DictReader(io.StringIO(files["lines/001-delivery.csv"].decode())))
    assert len(rows) == 28 and {r["item_id"] for r in rows} == {"lyon-cpm"} and rows[0]["day"] == "2026-02-01"
    manifest = json.loads(files["manifest.json"])
    assert manifest["invoice"]["number"] == "INV-2026-000002" and manifest["invoice"]["gross"] == "2037.00"
    assert [r["source"] for r in manifest["sync_runs"]] == ["gam"]
    assert manifest["sync_runs"][0]["file_sha256"] == "a" * 64
    assert manifest["lines"][0]["computation"] == {"impressions": 485000, "per": 1000, "rate": "4.20",
                                                   "rate_type": "cpm"}
    assert manifest["lines"][0]["delivery_rows"] == 28
    decisions = json.loads(files["decisions.json"])
    assert [d["actor_name"] for d in decisions["decisions"]] == ["Arne Approver"]
    assert decisions["exceptions"][0]["kind"] == "variance"
    audit_actions = [json.loads(line)["action"] for line in files["audit.jsonl"].decode().splitlines()]
    assert "exception.decided" in audit_actions and "invoice.finalized" in audit_actions
    sums = files["SHA256SUMS"].decode().splitlines()
    assert len(sums) == len(files) - 2 and all(len(line.split("  ")[0]) == 64 for line in sums)


def test_foreign_and_linear_packs_carry_fx_and_distribution(db, key, world, tmp_path, out_dir) -> None:
    path = build_evidence_pack(db, world.numbers["foreign"], tmp_path / "f.zip", renderer=pdf, key=key, out_dir=out_dir)
    assert verify_evidence_pack(path) == []
    files = dict(_members(path))
    manifest = json.loads(files["manifest.json"])
    # stored in the older base/quote shape; every surface shows the one shape of billing.fx.fx_json
    assert manifest["fx"] == {"rate": "1.0812", "date": "2026-02-27", "source": "ECB", "from": "EUR", "to": "USD"}
    dist = dict(csv.reader(io.StringIO(files["lines/001-distribution.csv"].decode())))
    assert dist["basis"] == "even" and dist["fx_rate"] == "1.0812"
    dom = build_evidence_pack(db, world.numbers["domestic"], tmp_path / "d.zip", renderer=pdf, key=key, out_dir=out_dir)
    files = dict(_members(dom))
    assert {"lines/001-distribution.csv", "lines/002-delivery.csv", "lines/002-conversions.csv"} <= set(files)
    conv = list(csv.DictReader(io.StringIO(files["lines/002-conversions.csv"].decode())))
    assert len(conv) == 17 and sum(r["status"] == "approved" for r in conv) == 16
    assert [r["source"] for r in json.loads(files["manifest.json"])["sync_runs"]] == ["dealer-logs"]


def test_changing_any_member_breaks_verification(pack) -> None:
    members = _members(pack)
    for i, (name, data) in enumerate(members):
        for where in {0, len(data) // 2, len(data) - 1}:
            changed = bytearray(data)
            changed[where] ^= 0x01
            tampered = [*members[:i], (name, bytes(changed)), *members[i + 1:]]
            pack.write_bytes(_canonical_zip(tampered))
            problems = verify_evidence_pack(pack)
            assert problems, f"flipping byte {where} of {name} went unnoticed"
            assert any(name in p or "SHA256SUMS" in p or "audit" in p for p in problems), (name, problems)


def test_changing_any_byte_of_the_zip_breaks_verification(pack) -> None:
    raw = pack.read_bytes()
    # every byte of the zip's own structures (local headers, central directory, end record) …
    structure: set[int] = set()
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        for info in z.infolist():
            structure.update(range(info.header_offset, info.header_offset + 30 + len(info.filename)))
        cd_start = min(info.header_offset for info in z.infolist()) + sum(
            30 + len(i.filename) + i.compress_size for i in z.infolist())
    structure.update(range(cd_start, len(raw)))
    # … and a sample of content bytes
    rng = random.Random(8)
    offsets = sorted(structure | {rng.randrange(len(raw)) for _ in range(60)})
    for off in offsets:
        changed = bytearray(raw)
        changed[off] ^= 0x20
        pack.write_bytes(bytes(changed))
        assert verify_evidence_pack(pack), f"flipping byte {off} of the zip went unnoticed"


def test_a_pack_resigned_with_another_key_is_refused_when_the_deployment_key_is_given(db, key, world, tmp_path,
                                                                                       out_dir) -> None:
    other = Ed25519PrivateKey.generate()
    path = build_evidence_pack(db, world.numbers["domestic"], tmp_path / "o.zip", renderer=pdf, key=other, out_dir=out_dir)
    problems = verify_evidence_pack(path, public_key=key.public_key())
    assert any("another key" in p for p in problems)


def test_unknown_number_is_named(db, world, tmp_path, out_dir) -> None:
    with pytest.raises(wf.NotFound, match="no invoice numbered NOPE"):
        build_evidence_pack(db, "NOPE", tmp_path / "x.zip", renderer=pdf, out_dir=out_dir)


def test_cli_writes_and_verifies_packs_and_pdfs(db, key, world, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "pack.zip"
    res = runner.invoke(app, ["evidence", world.numbers["credit"], "-o", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evidence", "verify", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == {"file": str(out), "ok": True, "problems": []}
    raw = bytearray(out.read_bytes())
    raw[100] ^= 0x01
    out.write_bytes(bytes(raw))
    res = runner.invoke(app, ["evidence", "verify", str(out)])
    assert res.exit_code == 1 and "does not verify" in res.output
    res = runner.invoke(app, ["evidence", "verify", str(tmp_path / "missing.zip")])
    assert res.exit_code == 2
    pdf = tmp_path / "inv.pdf"
    res = runner.invoke(app, ["invoices", "pdf", world.numbers["domestic"], "-o", str(pdf), "--json"])
    assert res.exit_code == 0, res.output
    assert pdf.read_bytes().startswith(b"%PDF-1.7") and json.loads(res.stdout)["bytes"] == pdf.stat().st_size
    res = runner.invoke(app, ["invoices", "pdf", "INV-1999-999999", "-o", str(pdf)])
    assert res.exit_code == 2 and "no invoice numbered INV-1999-999999" in res.output


# --------------------------------------------------------------------------- issue 14: packs an outsider can trust


def _forge(pack: Path) -> None:
    """Change a source row, drop the signature and the key, recompute manifest and sums — a pack
    that is consistent in itself, as a forger would make it."""
    files = dict(_members(pack))
    name = next(n for n in files if n.endswith("conversions.csv"))  # the delivery behind the invoice
    lines = files[name].decode().split("\n")
    assert ",approved," in lines[1]
    lines[1] = lines[1].replace(",approved,", ",rejected,")
    files[name] = "\n".join(lines).encode()
    files.pop(wf.SUMS_SIG)
    files.pop(wf.PUBLIC_KEY)
    manifest = json.loads(files[wf.MANIFEST])
    manifest["files"] = {n: wf.sha256_hex(d) for n, d in files.items() if n in manifest.get("files", {})}
    files[wf.MANIFEST] = wf._json(manifest)
    members = sorted((n, d) for n, d in files.items() if n != wf.SUMS)
    files[wf.SUMS] = wf._sums(members)
    pack.write_bytes(_canonical_zip(sorted(files.items())))


def test_a_forged_unsigned_pack_and_a_resigned_pack_fail_and_say_why(db, key, world, tmp_path, out_dir) -> None:
    runner = CliRunner()
    forged = build_evidence_pack(db, world.numbers["domestic"], tmp_path / "f.zip", renderer=pdf, key=key,
                                 out_dir=out_dir)
    _forge(forged)
    assert verify_evidence_pack(forged) == []  # consistent in itself: only a trusted signature tells
    res = runner.invoke(app, ["evidence", "verify", str(forged)])
    assert res.exit_code == 1 and "not signed" in res.output
    other = build_evidence_pack(db, world.numbers["domestic"], tmp_path / "o.zip", renderer=pdf,
                                key=Ed25519PrivateKey.generate(), out_dir=out_dir)
    res = runner.invoke(app, ["evidence", "verify", str(other)])
    assert res.exit_code == 1 and "not a trusted key" in res.output


def test_a_fresh_pack_verifies_with_the_registry_and_offline_with_an_exported_key(db, key, world, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "pack.zip"
    assert runner.invoke(app, ["evidence", world.numbers["domestic"], "-o", str(out)]).exit_code == 0
    assert runner.invoke(app, ["evidence", "verify", str(out)]).exit_code == 0
    exported = tmp_path / "auditor" / "billbot-keys.pem"
    res = runner.invoke(app, ["keys", "export", "-o", str(exported)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evidence", "verify", str(out), "--public-key", str(exported), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"] is True
    stranger = tmp_path / "stranger.pem"
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    stranger.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    res = runner.invoke(app, ["evidence", "verify", str(out), "--public-key", str(stranger)])
    assert res.exit_code == 1 and "not a trusted key" in res.output


def test_a_huge_member_in_a_small_zip_is_refused_without_reading_it(tmp_path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("invoice.pdf", "w", force_zip64=True) as f:
            chunk = b"\0" * (1024 * 1024)
            for _ in range(400):
                f.write(chunk)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    problems = verify_evidence_pack(bomb)
    assert len(problems) == 1 and "refused" in problems[0] and "invoice.pdf" in problems[0]


def test_a_decision_s_ticked_checklist_and_rule_are_in_the_pack(db, key, world, tmp_path: Path, out_dir: Path) -> None:
    """Issue 21: the checklist ticked at a decision is part of its signed record, and the pack's
    decisions.json repeats it next to the decision (audit.jsonl carries the signed record itself)."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from bot.workflows import audit
    from storage.models import Decision

    items = [{"item": "Checked the third-party report for the same days", "checked": True}]
    with db.transaction() as s:
        first = s.execute(select(Decision).order_by(Decision.id)).scalars().first()
        assert first is not None
        rec = audit.record(s, key=key, actor="U03APPROVER", action="decision.recorded", subject_type="exception",
                           subject_id=first.exception_id, now=datetime(2026, 3, 1, 8, tzinfo=UTC),
                           payload={"decision": "approve", "rule": "lyon-large", "checklist": items})
        s.add(Decision(exception_id=first.exception_id, decision="approve", actor_id="U03APPROVER",
                       decided_at=datetime(2026, 3, 1, 8, tzinfo=UTC), subject_hash=first.subject_hash,
                       audit_id=rec.id))
    path = build_evidence_pack(db, world.numbers["reverse"], tmp_path / "p.zip", renderer=pdf, key=key,
                               out_dir=out_dir)
    files = dict(_members(path))
    decisions = json.loads(files["decisions.json"])["decisions"]
    assert "checklist" not in decisions[0]  # a decision without review controls keeps its shape
    assert decisions[1]["checklist"] == items and decisions[1]["rule"] == "lyon-large"
    signed = [line for line in files["audit.jsonl"].decode().splitlines() if "decision.recorded" in line]
    assert len(signed) == 1 and "Checked the third-party report for the same days" in signed[0]
    assert verify_evidence_pack(path) == []
