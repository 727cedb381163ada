"""gunicorn settings for the web process (read by `gunicorn --config gunicorn.conf.py`).

Sized for Heroku's router (https://devcenter.heroku.com/articles/http-routing):
it keeps idle keep-alive connections to a dyno for 90 s, cuts a response
that sends nothing for 55 s (the SSE heartbeat keeps streams above that),
and SIGKILLs a dyno 30 s after SIGTERM.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# gevent: each open SSE stream or long-poll is a cheap greenlet, not a thread.
worker_class = "gevent"
# Heroku's Python buildpack sets WEB_CONCURRENCY from the dyno's size.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Open connections per process. A dyno allows 10000 open files per process;
# leave room for the Redis and SQL pools and the logs.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "5000"))
# Never load the app in the arbiter: the gevent worker must monkey-patch
# before the app imports psycopg, or SQL calls block every greenlet
# (webapp.extensions.check_green_postgres refuses to start then).
preload_app = False
# Streams stay open for minutes; gunicorn's timeout is about a silent worker, not a request.
timeout = 60
# Idle keep-alive connections from the router: stay open longer than its 90 s,
# so the router closes them first and never sends a request into a closing socket.
keepalive = 95
# SIGTERM: stop accepting, give open requests this long, all under Heroku's 30 s.
# Open SSE streams are cut then; their clients resume with Last-Event-ID.
graceful_timeout = 25
accesslog = "-"
errorlog = "-"
