"""Bits Allocated of each instance and Timezone Offset From UTC of each study, for QIDO-RS.

Rows indexed before this revision keep NULL in both (their blobs are not read for it);
objects stored or re-indexed from their blobs afterwards fill them in.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("instances", sa.Column("bits_allocated", sa.Integer(), nullable=True))
    op.add_column("studies", sa.Column("timezone_offset", sa.String(length=5), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+): rebuilding a table that others
    # reference, as batch mode does, would fail on the foreign keys of the rows kept.
    op.drop_column("studies", "timezone_offset")
    op.drop_column("instances", "bits_allocated")
