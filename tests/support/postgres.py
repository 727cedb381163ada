"""Fresh PostgreSQL databases for tests that need an empty one of their own."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa


def server_url() -> str:
    """TEST_DATABASE_URL, or skip the test when it is not set."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    return url


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create an empty database on TEST_DATABASE_URL's server; drop it afterwards.

    Yields its URL in the form an operator would set (`postgresql://...`).
    """
    import psycopg

    admin = sa.make_url(server_url()).set(drivername="postgresql")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            # FORCE ends sessions a stopped process may have left behind.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
