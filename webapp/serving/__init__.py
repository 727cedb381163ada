"""The server adapter: everything that relies on gunicorn's internals or raw sockets.

Owns: the gunicorn worker class and its header deadline (`gunicorn_worker.py`),
the JSON answer to requests gunicorn refuses itself (`refusals.py`), taking a
connection over from gunicorn and handing it back (`handover.py`, whose
numbered list names every reliance on gunicorn's internals, each pinned by a
test), streams held by the hub after their view ended (`held_streams.py`),
long-polls parked with the hub and answered on their socket
(`parked_polls.py`), written as gunicorn writes a response
(`poll_answers.py`), the way in for polls that skips Flask's dispatch
(`fast_poll.py`, WSGI middleware that create_app hands the polls' plan),
the connections whose next request the hub reads itself once a parked
poll is answered (`poll_connections.py`, with httptools: `poll_heads.py`;
waited on with no greenlet each: `waiting_connections.py`),
and the order in which a process serves polls and other requests
(`priority.py`).
May import: `webapp.read`, `webapp.ops`, `webapp.settings`,
`webapp.exceptions`; never `webapp.storage` or `webapp.write` (it moves
bytes), nor `webapp.http`. Only `webapp.http` and the entry points import it.
"""
