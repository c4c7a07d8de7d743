"""Storage: numbered SQL migrations, capability detection (TimescaleDB or plain PostgreSQL),
the connection pool, and the rollup for the plain path."""

from backend.store.capabilities import Capabilities, detect
from backend.store.migrate import applied_versions, migrate
from backend.store.pool import open_pool

__all__ = ["Capabilities", "applied_versions", "detect", "migrate", "open_pool"]
