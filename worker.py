"""The worker entry point: `python worker.py` (the Procfile's worker line).

It patches the standard library for gevent before anything else is
imported (psycopg must see the patched `select`, see extensions.py), builds
the same app as wsgi.py, and runs the worker loop (webapp/write/worker.py).
"""

from gevent import monkey

monkey.patch_all()

from webapp import create_app  # noqa: E402
from webapp.ops import runtime  # noqa: E402
from webapp.ops.logs import configure  # noqa: E402
from webapp.settings import config  # noqa: E402
from webapp.write.worker import Worker, wait_until_ready  # noqa: E402


def main() -> None:
    config.check_or_exit()  # a malformed setting: one line, exit 2
    app = create_app()
    configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    # A Heroku add-on may come up after the dyno: wait for Redis and the
    # database (and its schema) with backoff, one line per wait, until told to stop.
    if not wait_until_ready(app):
        return
    runtime.settle()
    Worker(app).run()


if __name__ == "__main__":
    main()
