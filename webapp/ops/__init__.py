"""Operations: metrics, log lines, readiness checks and process tuning.

Owns: the figures processes record (`metrics.py`) and `/metrics`, which
answers them (`scrape.py`), the log format and token
redaction (`logs.py`), whether Redis, the database and its schema are ready
(`readiness.py`), and the garbage collector's settings (`runtime.py`).
May import: `webapp.storage`, `webapp.settings`, `webapp.exceptions`.
Everything above may import it, to count or to check.
"""
