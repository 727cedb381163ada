"""Messages store the model's reasoning beside the answer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        # Answers stored before this revision had no reasoning recorded: "",
        # as API.md says a message without reasoning shows.
        batch_op.add_column(sa.Column("reasoning", sa.Text(), nullable=False, server_default=""))


def downgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("reasoning")
