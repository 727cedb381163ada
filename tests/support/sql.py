"""Read what the app stored in SQL, from the test process."""

from __future__ import annotations

from typing import Any


def answer_rows(app: Any, message_id: str) -> list:
    """Every SQL row of a message (exactly one, if nothing went wrong), detached."""
    from webapp.storage import models
    from webapp.storage.extensions import db

    with app.app_context():
        rows = list(db.session.scalars(db.select(models.Message).filter_by(id=message_id)))
        db.session.expunge_all()
        db.session.remove()
        return rows


def stored_message(app: Any, message_id: str):
    """The message's row, or None."""
    rows = answer_rows(app, message_id)
    return rows[0] if rows else None
