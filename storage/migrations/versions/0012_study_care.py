"""Study care: the trash (studies.deleted_at), the history of changes and the forwarding queue.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("studies", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_studies_deleted_at", "studies", ["deleted_at"])
    op.create_table(
        "study_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=400), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("undone_by", sa.Integer(), nullable=True),
    )
    op.create_index("ix_study_changes_study_uid", "study_changes", ["study_uid"])
    op.create_index("ix_study_changes_patient_key", "study_changes", ["patient_key"])
    op.create_table(
        "forward_jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destination", sa.String(length=16), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("commitment", sa.String(length=16), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_forward_jobs_destination", "forward_jobs", ["destination"])
    op.create_index("ix_forward_jobs_due", "forward_jobs", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("forward_jobs")
    op.drop_table("study_changes")
    op.drop_index("ix_studies_deleted_at", table_name="studies")
    op.drop_column("studies", "deleted_at")
