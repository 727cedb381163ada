"""Settings: every environment variable relay reads, parsed and checked in one table.

Owns: `config.py` (the table, `from_env`, `check_or_exit`) and `parsers.py`
(raw text -> checked value). May import: the standard library and
`webapp.exceptions` only, because gunicorn's arbiter loads this package
before its workers fork and monkey-patch (gunicorn.conf.py).
"""
