"""Messages record how many reasoning pieces their answer streamed.

`end` carries `reasoning_chunks` (API.md); a final event replayed from SQL
(generation.py, `_claim`) needs the count as `chunks` needs `chunk_count`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reasoning_chunk_count", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("reasoning_chunk_count")
