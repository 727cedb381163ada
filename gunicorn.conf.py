"""gunicorn settings for the web process (read by `gunicorn --config gunicorn.conf.py`).

Sized for Heroku's router (https://devcenter.heroku.com/articles/http-routing):
it keeps idle keep-alive connections to a dyno for 90 s, cuts a response
that sends nothing for 55 s (the SSE heartbeat keeps streams above that),
and SIGKILLs a dyno 30 s after SIGTERM.

gunicorn reads this file in its arbiter, before it forks: every setting is
parsed here first, so a malformed one stops the web process with one line
and a non-zero exit (a bad value found by a forked worker would only make the
arbiter restart it, with a traceback each time). `webapp.settings.config`
imports only the standard library and `webapp.serving.refusals` gunicorn
besides, so nothing the gevent workers must patch first is imported here.
"""

import os

from webapp.serving import refusals
from webapp.settings.config import check_or_exit, host_port

# Module-level names that are gunicorn settings are applied as such: these are not.
relay_settings = check_or_exit()

# HOST: every interface unless set, as Heroku's router needs (the Procfile's
# web line); scripts/run sets 127.0.0.1 for a development server.
bind = host_port(relay_settings["HOST"], relay_settings["PORT"])
# gevent's worker (each request a cheap greenlet, not a thread), with a time
# limit on a request's headers (HEADER_TIMEOUT_SECONDS), which can take back
# a connection a parked long-poll answered: webapp/serving/gunicorn_worker.py.
worker_class = "webapp.serving.gunicorn_worker.Worker"
# Heroku's Python buildpack sets WEB_CONCURRENCY from the dyno's size.
workers = relay_settings["WEB_CONCURRENCY"]
worker_connections = relay_settings["WORKER_CONNECTIONS"]
# Never load the app in the arbiter: the gevent worker must monkey-patch
# before the app imports psycopg, or SQL calls block every greenlet
# (webapp.storage.extensions.check_green_postgres refuses to start then).
preload_app = False
# Streams stay open for minutes; gunicorn's timeout is about a silent worker, not a request.
timeout = 60
# Idle keep-alive connections from the router: stay open longer than its 90 s,
# so the router closes them first and never sends a request into a closing socket.
keepalive = 95
# SIGTERM: stop accepting, give open requests this long, all under Heroku's 30 s.
# Open SSE streams are cut then; their clients resume with Last-Event-ID.
graceful_timeout = 25
# The default format's request line holds the query string: an access_token
# there is rewritten to [redacted] before it is logged (webapp/ops/logs.py).
accesslog = "-"
errorlog = "-"
# gunicorn 25+ opens a control socket for `gunicornc` at one default path per
# user, which every server on a machine would share; Heroku manages dynos
# with `heroku ps` instead.
control_socket_disable = True


# -- Prometheus multiprocess mode (webapp/ops/metrics.py) -------------------------
# Every web process writes its metrics to files in PROMETHEUS_MULTIPROC_DIR,
# and a scrape answered by any of them adds up all the files. The folder must
# hold this server's processes only, so it starts empty, and a dead process's
# gauges must go, or its open streams would be counted for ever.


def on_starting(server):
    """In the arbiter, before any fork: the metrics folder, fresh."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = relay_settings["PROMETHEUS_MULTIPROC_DIR"]
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
    else:
        folder = tempfile.mkdtemp(prefix="relay-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # inherited by the forked workers
        server.relay_metrics_tmp = folder
    server.relay_rmtree = shutil.rmtree


def child_exit(server, worker):
    # Imported here, after on_starting set the folder: prometheus_client picks
    # file-backed values only if the variable is set when it is first imported.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    folder = getattr(server, "relay_metrics_tmp", None)
    if folder:
        server.relay_rmtree(folder, ignore_errors=True)


# -- SIGTERM: end open streams at once -----------------------------------------
# Left alone, open SSE streams and long-polls would be cut when graceful_timeout
# runs out. Ended now, with a clean end of body, every client reconnects at
# once (to a dyno that stays) with Last-Event-ID and loses nothing.


def post_fork(server, worker):
    worker.header_timeout_seconds = relay_settings["HEADER_TIMEOUT_SECONDS"]


def post_worker_init(worker):
    import signal

    import gevent

    from webapp.ops import readiness, runtime
    from webapp.read.hub import hub as relay_hub

    runtime.settle()
    # Serve at once; say in the log what is not ready (/readyz answers 503 meanwhile).
    gevent.spawn(readiness.log_problems, worker.wsgi)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        # A signal handler may run in the middle of anything: hand the work to
        # the gevent loop, which is safe from here.
        gevent.get_hub().loop.run_callback_threadsafe(relay_hub.close, worker.wsgi)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


# -- Requests gunicorn refuses itself: JSON, as API.md says -------------------
# gunicorn answers a request it cannot parse before the app sees it, with an
# HTML page and no setting to change it: replaced here, in the arbiter before
# it forks, by webapp/serving/refusals.py (a reliance on gunicorn's internals,
# listed in webapp/serving/handover.py with the others).

refusals.install()
