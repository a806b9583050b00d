"""Files (issue 16 item 4): ``-o`` never overwrites billbot's database, WAL or signing key, overwrites
nothing else without ``--force`` and creates no folders; ``var/`` is 0700 and every file in it 0600."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from bot import context
from bot.cli import app
from storage.settings import get_settings

runner = CliRunner()


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_o_never_overwrites_the_database_its_wal_or_the_key(db, key, world, backend) -> None:
    s = get_settings()
    targets = [s.key_path]
    if backend == "sqlite":
        dbfile = Path(s.db_url.split("///", 1)[1])
        targets += [dbfile, dbfile.with_name(dbfile.name + "-wal")]
    for target in targets:
        assert target.exists(), target
        before = _sha(target)
        for extra in ([], ["--force"]):
            r = runner.invoke(app, ["invoices", "pdf", world.numbers["domestic"], "-o", str(target), *extra])
            assert r.exit_code == 2, r.output
            assert "write somewhere else" in r.output
            r = runner.invoke(app, ["evidence", world.numbers["domestic"], "-o", str(target), *extra])
            assert r.exit_code == 2, r.output
        assert _sha(target) == before or target.name.endswith("-wal")  # the WAL moves on by itself; never ours


def test_o_overwrites_only_with_force_and_creates_no_folders(db, key, world, tmp_path) -> None:
    out = tmp_path / "mine.pdf"
    out.write_bytes(b"my own file")
    r = runner.invoke(app, ["invoices", "pdf", world.numbers["domestic"], "-o", str(out)])
    assert r.exit_code == 2 and "exists; pass --force" in r.output
    assert out.read_bytes() == b"my own file"
    r = runner.invoke(app, ["invoices", "pdf", world.numbers["domestic"], "-o", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes().startswith(b"%PDF")

    nowhere = tmp_path / "no" / "such" / "folder" / "x.pdf"
    for args in (["invoices", "pdf", world.numbers["domestic"], "-o"], ["evidence", world.numbers["domestic"], "-o"],
                 ["digest", "--dry-run", "--chart"]):
        r = runner.invoke(app, [*args, str(nowhere)])
        assert r.exit_code == 2, (args, r.output)
        assert "does not exist" in r.output
    assert not (tmp_path / "no").exists()
    pack = tmp_path / "pack.zip"
    assert runner.invoke(app, ["evidence", world.numbers["domestic"], "-o", str(pack)]).exit_code == 0
    assert runner.invoke(app, ["evidence", world.numbers["domestic"], "-o", str(pack)]).exit_code == 2
    assert runner.invoke(app, ["evidence", world.numbers["domestic"], "-o", str(pack), "--force"]).exit_code == 0


def test_var_is_private(db, key, world, tmp_path, backend) -> None:
    var = get_settings().var_dir
    r = runner.invoke(app, ["invoices", "pdf", world.numbers["domestic"], "-o", str(tmp_path / "x.pdf")])
    assert r.exit_code == 0, r.output
    # an earlier billbot left var/ readable by everyone: fixed at the next start
    os.chmod(var, 0o755)
    for p in var.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    context.reset()
    context._secured.clear()
    context.get_db()
    assert _mode(var) == 0o700
    files = [p for p in var.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pdf" for p in files) and any(p.name == "signing_key.pem" for p in files)
    assert {(_mode(p)) for p in files} == {0o600}, {p.name: oct(_mode(p)) for p in files}
    assert {(_mode(p)) for p in var.rglob("*") if p.is_dir()} == {0o700}
    # what billbot writes from now on is private from the start
    r = runner.invoke(app, ["invoices", "pdf", world.numbers["reverse"], "-o", str(tmp_path / "y.pdf")])
    assert r.exit_code == 0, r.output
    assert {(_mode(p)) for p in var.rglob("*") if p.is_file()} == {0o600}


def test_a_fresh_sqlite_database_is_private(tmp_path) -> None:
    from storage.db import Database

    path = tmp_path / "fresh" / "billbot.db"
    db = Database(f"sqlite:///{path}")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE t (x int)"))
    assert _mode(path.parent) == 0o700
    for p in path.parent.iterdir():
        assert _mode(p) == 0o600, p
