"""Messages record the generation attempt that owns them and their chunk count.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        # Rows written before this revision had no attempt recorded: 0, the
        # model's default, says "no attempt owns it yet".
        batch_op.add_column(
            sa.Column("attempt", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("chunk_count", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("chunk_count")
        batch_op.drop_column("attempt")
