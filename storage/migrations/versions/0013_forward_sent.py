"""The instances each forwarding job has delivered, so a retried job sends only what is missing.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forward_sent",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "job_id", sa.Integer(), sa.ForeignKey("forward_jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("job_id", "sop_uid", "version", name="uq_forward_sent"),
    )


def downgrade() -> None:
    op.drop_table("forward_sent")
