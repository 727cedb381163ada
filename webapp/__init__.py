"""relay: stream LLM answers to browsers, losing no word on the way.

`create_app()` builds the Flask app that both entry points share: `wsgi.py`
serves it with gunicorn, `worker.py` runs generation jobs inside it.
"""

from __future__ import annotations

from typing import Any, Mapping

import click
from flask import Flask

from . import config, errors
from .extensions import db, redis_store


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
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

    db.init_app(app)
    redis_store.init_app(app)
    errors.register(app)

    from . import api, pages, stream

    app.register_blueprint(api.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(pages.bp)

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the tables that do not exist yet."""
        _sqlite_folder(app)
        db.create_all()
        click.echo("database ready")

    return app


def _sqlite_folder(app: Flask) -> None:
    """SQLite needs its folder to exist before the first connection."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///"):
        from pathlib import Path

        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
