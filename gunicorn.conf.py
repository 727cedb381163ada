"""gunicorn settings for the web process (read by `gunicorn -c gunicorn.conf.py`)."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# gevent: each open SSE stream or long-poll is a cheap greenlet, not a thread.
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
# Streams stay open for minutes; gunicorn's timeout is about a silent worker, not a request.
timeout = 60
# Heroku's router keeps idle connections 90 s; stay above it.
keepalive = 95
# Heroku sends SIGKILL 30 s after SIGTERM.
graceful_timeout = 25
accesslog = "-"
errorlog = "-"
