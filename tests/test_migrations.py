"""Migrations build the models' schema from an empty database, and take it down again.

Each database runs the release command itself (`flask --app wsgi db upgrade`,
in a child process, as Heroku's release phase does), then the schema it left
is compared with webapp/models.py by Alembic's autogenerate comparison: no
difference may remain. PostgreSQL runs in a database created for the test
and dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.support.processes import ROOT
from webapp import models  # noqa: F401  (registers the tables on the metadata)
from webapp.config import database_url as normalise
from webapp.extensions import db

TABLES = {"chat_sessions", "messages"}


def flask_db(database_url: str, *args: str) -> str:
    """Run `flask --app wsgi db <args>` against `database_url`; its standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "db", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


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


@pytest.fixture()
def empty_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database on TEST_DATABASE_URL's server, dropped after."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    import psycopg

    name = f"relay_mig_{uuid.uuid4().hex[:12]}"
    admin = sa.make_url(normalise(url))
    with psycopg.connect(admin.set(drivername="postgresql").render_as_string(False),
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin.set(database=name, drivername="postgresql").render_as_string(False)
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgresql_upgrades_to_the_models_and_downgrades(empty_postgres: str) -> None:
    check_up_and_down(empty_postgres)


def test_no_production_path_creates_tables_itself() -> None:
    """The schema comes only from migrations: the release line, never create_all()."""
    procfile = (ROOT / "Procfile").read_text()
    assert "release: flask --app wsgi db upgrade" in procfile.splitlines()
    for path in [ROOT / "wsgi.py", ROOT / "worker.py", *sorted((ROOT / "webapp").glob("*.py"))]:
        assert "db.create_all(" not in path.read_text(), path
