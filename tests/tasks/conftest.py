from __future__ import annotations

DISTRIBUTED = ("test_distributed.py", "test_distributed_pdfs.py", "test_distributed_run.py")


def pytest_ignore_collect(collection_path, config):  # type: ignore[no-untyped-def]
    """The distributed-mode tests need PostgreSQL: collected only under ``--db postgres``."""
    if collection_path.name in DISTRIBUTED and config.getoption("--db") != "postgres":
        return True
    return None
