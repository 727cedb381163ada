"""Sessions record their owner, the token subject that created them, indexed for listing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

A session's list entry also shows a title and when it was last updated
(API.md, GET /api/sessions). Both are read from its messages when a page is
listed (webapp/http/sessions.py), not stored here: storing them would add a write
to every prompt, and give one fact two places to live.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("chat_sessions", schema=None) as batch_op:
        # Sessions made before access control was on have no owner.
        batch_op.add_column(sa.Column("owner", sa.String(length=255), nullable=True))
        batch_op.create_index(
            "ix_chat_sessions_owner_created_at", ["owner", "created_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("chat_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_sessions_owner_created_at")
        batch_op.drop_column("owner")
