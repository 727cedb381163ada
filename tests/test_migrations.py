"""Migrations build the models' schema from an empty database, and take it down again.

Each database runs the release command itself (`flask --app wsgi db upgrade`,
in a child process, as Heroku's release phase does), then the schema it left
is compared with webapp/storage/models.py by Alembic's autogenerate comparison: no
difference may remain. PostgreSQL runs in a database created for the test
and dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.support.flask_cli import flask_cli
from tests.support.postgres import fresh_database
from tests.support.processes import ROOT
from webapp.settings.config import database_url as normalise
from webapp.storage import models  # noqa: F401  (registers the tables on the metadata)
from webapp.storage.extensions import db

TABLES = {"chat_sessions", "messages"}


def flask_db(database_url: str, *args: str) -> str:
    """Run `flask --app wsgi db <args>` against `database_url`; its standard output."""
    return flask_cli({"DATABASE_URL": database_url}, "db", *args).stdout


def schema_differences(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def check_up_and_down(database_url: str) -> None:
    engine = sa.create_engine(normalise(database_url))
    try:
        assert not table_names(engine) & TABLES, "the database must start empty"
        flask_db(database_url, "upgrade")
        assert TABLES <= table_names(engine)
        assert schema_differences(engine) == []
        assert "(head)" in flask_db(database_url, "current")

        flask_db(database_url, "downgrade", "base")
        assert table_names(engine) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_sqlite_upgrades_to_the_models_and_downgrades(tmp_path: Path) -> None:
    check_up_and_down(f"sqlite:///{tmp_path / 'empty.sqlite3'}")


def test_a_database_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    """The old release line (`init-db`) left 0001's tables and no version: upgrade adopts them."""
    url = f"sqlite:///{tmp_path / 'init-db.sqlite3'}"
    flask_db(url, "upgrade", "0001")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE alembic_version"))
            conn.execute(
                sa.text(
                    "INSERT INTO chat_sessions (id, created_at)"
                    " VALUES ('kept-session', '2026-01-01 00:00:00')"
                )
            )
        flask_db(url, "upgrade")
        assert schema_differences(engine) == []
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM chat_sessions")).scalars().all() == [
                "kept-session"
            ]
    finally:
        engine.dispose()


@pytest.fixture()
def empty_postgres() -> Iterator[str]:
    with fresh_database("relay_mig") as url:
        yield url


def test_postgresql_upgrades_to_the_models_and_downgrades(empty_postgres: str) -> None:
    check_up_and_down(empty_postgres)


def test_no_production_path_creates_tables_itself() -> None:
    """The schema comes only from migrations: the release line, never create_all()."""
    procfile = (ROOT / "Procfile").read_text()
    assert "release: flask --app wsgi db upgrade" in procfile.splitlines()
    for path in [ROOT / "wsgi.py", ROOT / "worker.py", *sorted((ROOT / "webapp").rglob("*.py"))]:
        assert "db.create_all(" not in path.read_text(), path
