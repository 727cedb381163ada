"""Storage: what relay keeps, in SQL and in Redis, and the protocol for each.

Owns: the connection pools (`extensions.py`), the SQL models (`models.py`)
and a caller's session list, the Redis protocol whole (`keys.py` and the
`lua/` scripts: every key, field and notice), the job list and the active
claim (`jobs.py`), stored answers to retried posts (`idempotency.py`), and
the events' names and payloads (`events.py`).
May import: `webapp.settings`, `webapp.exceptions`. Never the sides above it:
storage knows nothing of who reads or writes.
"""
