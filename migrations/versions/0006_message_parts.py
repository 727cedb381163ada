"""Answers record their parts: text, reasoning and tool calls in order.

API.md's Tools section: an assistant message gains `parts`, stored as JSON
text (parts.py names their shape). Answers stored before this have none;
their `content` and `reasoning` stand in (models.Message.parts_list).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parts", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("parts")
