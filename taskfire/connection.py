"""The Redis URL parser's old address: `from taskfire.connection import parse` was shown in
docs/high-availability.md before the storage layer became a package, so it keeps working.
The code lives in `taskfire.storage.connection`; nothing in taskfire imports this module.
"""

from __future__ import annotations

from .storage.connection import CLUSTER_SCHEME, SENTINEL_SCHEME, Address, Target, parse, redacted

__all__ = ["Address", "CLUSTER_SCHEME", "SENTINEL_SCHEME", "Target", "parse", "redacted"]
