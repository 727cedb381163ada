"""relay's gunicorn worker: gevent's, able to take back a connection the hub answered.

A long-poll with nothing to answer is parked with the hub (longpoll.py): its
request greenlet ends. Once the hub has answered it, the connection goes
back to this worker (`handover.hand_back`) to read the client's next
request, as gunicorn would have. The worker registers itself with
handover.py, which names what that relies on (item 5) and is pinned by
tests/test_handover.py.

Not here: a time limit on a request's headers. gunicorn 27 bounds a header
read only by `keepalive` (95 s here), so a half-sent request holds a
connection that long; a first version of a shorter limit raced with
gunicorn's own read of the first bytes and was taken out (README,
Performance; issue 18).

This module is imported by gunicorn's arbiter (worker_class in
gunicorn.conf.py): it imports gevent and gunicorn only, as gunicorn's own
"gevent" worker class does.
"""

from __future__ import annotations

from gunicorn.workers.ggevent import GeventWorker

from . import handover


class Worker(GeventWorker):
    """gunicorn's gevent worker, registered with handover.py so connections can come back."""

    def run(self) -> None:
        handover.serve_with(self)
        super().run()
