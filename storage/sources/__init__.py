"""Connectors: an ad-tracker API (HasOffers v3), ad-server reports (Google Ad Manager), server logs.

See :mod:`storage.sources.base` for the interface every connector follows.
"""

from storage.sources.base import (
    SCHEMAS,
    BadRow,
    Batch,
    Source,
    SourceConfig,
    SourceError,
    configured_sources,
    get_source_config,
    make_source,
    register,
)

__all__ = [
    "SCHEMAS", "BadRow", "Batch", "Source", "SourceConfig", "SourceError", "configured_sources",
    "get_source_config", "make_source", "register",
]
