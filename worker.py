"""The worker entry point: `python worker.py` (the Procfile's worker line).

It patches the standard library for gevent before anything else is
imported (psycopg must see the patched `select`, see extensions.py), builds
the same app as wsgi.py, and runs the worker loop (webapp/worker.py).
"""

from gevent import monkey

monkey.patch_all()

from webapp import create_app, runtime  # noqa: E402
from webapp.logs import configure  # noqa: E402
from webapp.worker import Worker  # noqa: E402


def main() -> None:
    app = create_app()
    configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    runtime.settle()
    Worker(app).run()


if __name__ == "__main__":
    main()
