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
# gunicorn 25+ opens a control socket for `gunicornc` at one default path per
# user, which every server on a machine would share; Heroku manages dynos
# with `heroku ps` instead.
control_socket_disable = True


# -- Prometheus multiprocess mode (webapp/metrics.py) -------------------------
# Every web process writes its metrics to files in PROMETHEUS_MULTIPROC_DIR,
# and a scrape answered by any of them adds up all the files. The folder must
# hold this server's processes only, so it starts empty, and a dead process's
# gauges must go, or its open streams would be counted for ever.


def on_starting(server):
    """In the arbiter, before any fork: the metrics folder, fresh."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
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


def post_worker_init(worker):
    import signal

    import gevent

    from webapp import runtime
    from webapp.hub import hub as relay_hub

    runtime.settle()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        # A signal handler may run in the middle of anything: hand the work to
        # the gevent loop, which is safe from here.
        gevent.get_hub().loop.run_callback_threadsafe(relay_hub.close, worker.wsgi)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
