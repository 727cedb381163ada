"""The server adapter: everything that relies on gunicorn's internals or raw sockets.

Owns: the gunicorn worker class and its header deadline (`gunicorn_worker.py`),
taking a connection over from gunicorn and handing it back (`handover.py`,
whose numbered list names every reliance, pinned by tests/test_handover.py),
streams held by the hub after their view ended (`held_streams.py`), and the
order in which a process serves polls and other requests (`priority.py`).
May import: `webapp.read`, `webapp.ops`, `webapp.settings`,
`webapp.exceptions`; never `webapp.write` or `webapp.storage`: the adapter
moves bytes, and knows no SQL, no Redis key and no generation. Only
`webapp.http`, `create_app` and the entry points import it.
"""
