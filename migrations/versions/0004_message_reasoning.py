"""Messages store the model's reasoning beside the answer.

Revision ID: 0004
Revises: 0002 (0003 at merge: see down_revision)
Create Date: 2026-12-02

"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
# MERGE: 0003_session_owner lands beside this on another branch; set this to
# "0003" when both are merged, so the history stays one line.
down_revision = "0002"
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
