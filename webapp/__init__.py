"""relay: stream LLM answers to browsers, losing no word on the way.

`create_app()` builds the Flask app that both entry points share: `wsgi.py`
serves it with gunicorn, `worker.py` runs generation jobs inside it.

Importing the package imports nothing else: gunicorn's arbiter loads
`webapp.settings.config` to check the settings before it forks, and Flask, redis-py or
SQLAlchemy imported there would be imported before the gevent workers
monkey-patch (gunicorn.conf.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """The app, with every setting parsed from the environment, then `overrides` on top.

    A malformed setting raises config.SettingError; entry points call
    config.check_or_exit() first, which stops with one line instead.
    """
    from flask import Flask

    from webapp.read.hub import hub
    from webapp.settings import config
    from webapp.storage.extensions import check_green_postgres, db, migrate, redis_store

    app = Flask(
        __name__,
        template_folder=str(config.PROJECT_ROOT / "templates"),
        static_folder=str(config.PROJECT_ROOT / "static"),
    )
    settings = config.from_env()
    settings.update(overrides or {})
    app.config.update(settings)
    app.config.update(config.flask_settings(app.config))
    app.json.sort_keys = False

    _sqlite_folder(app)
    db.init_app(app)
    check_green_postgres(app)
    # The schema comes from migrations only (`flask db upgrade`, the Procfile's
    # release line), never from create_all() in a running process.
    migrate.init_app(app, db, directory=str(config.PROJECT_ROOT / "migrations"))
    redis_store.init_app(app)
    hub.init_app(app)
    _serve(app)

    return app


def _serve(app: Flask) -> None:
    """The request hooks, the views, and the way in for long-polls."""
    from webapp import cli
    from webapp.http import api, auth, chat_api, cors, errors, health, pages, stream, tool_inputs
    from webapp.ops import metrics, scrape
    from webapp.serving import fast_poll, poll_connections, priority

    errors.register(app)
    priority.init_app(app)  # first: its hook must run before any other can refuse the request
    auth.init_app(app)
    cors.init_app(app)

    app.register_blueprint(api.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(chat_api.bp)
    app.register_blueprint(tool_inputs.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(scrape.bp)
    metrics.init_app(app)
    cli.init_app(app)
    # Long-polls skip Flask's dispatch when their plan needs nothing of it
    # (serving/fast_poll.py), and gunicorn's parser on a connection whose
    # parked poll was answered (serving/poll_connections.py): the adapter
    # gets the plan's ways in from here.
    if app.config["FAST_POLL"]:
        app.wsgi_app = fast_poll.FastPolls(app.wsgi_app, stream.fast_answerer(app))
    poll_connections.serve_polls_with(
        stream.kept_answerer(app) if app.config["FAST_POLL"] else None
    )


def _sqlite_folder(app: Flask) -> None:
    """SQLite needs its folder to exist before the first connection (var/ by default)."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    path = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and path and not path.startswith(":memory:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
