"""Login throttling decided atomically: attempts in flight are counted; the lockout lives in the throttle.

The lock of an account is its ``user:NAME`` counter (time-limited), no longer a flag of the user.
Counters of the earlier scheme are dropped: they only delay logins for a few minutes.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM login_throttle")
    with op.batch_alter_table("login_throttle") as batch:
        batch.add_column(sa.Column("pending", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("pending_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.drop_column("locked")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("locked", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("login_throttle") as batch:
        batch.drop_column("pending_until")
        batch.drop_column("pending")
