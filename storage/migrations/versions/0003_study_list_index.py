"""Study list index: newest first (date, time, id) without a sort of every study.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index("ix_studies_study_date")
        batch_op.create_index("ix_studies_newest", ["study_date", "study_time", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index("ix_studies_newest")
        batch_op.create_index("ix_studies_study_date", ["study_date"], unique=False)
