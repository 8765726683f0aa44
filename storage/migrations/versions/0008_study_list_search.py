"""Study list: the words of patients' names for search, frame counts, Patient's Age, indexes to sort by.

``patient_words`` holds the folded words of every patient's name (``storage.search.words``),
filled here for the patients already indexed. ``num_frames`` of series and studies is
the sum of the frames of their current instances, computed from the instance rows.
``studies.patient_age`` starts empty: it was not kept before (the age is then worked out
from the birth date). The two study indexes the list walks also hold what its search reads.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from storage.search import fill_name_words

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_instances = sa.table(
    "instances",
    sa.column("series_fk", sa.Integer),
    sa.column("frames", sa.Integer),
    sa.column("is_current", sa.Boolean),
)
_series = sa.table(
    "series",
    sa.column("id", sa.Integer),
    sa.column("study_fk", sa.Integer),
    sa.column("num_frames", sa.Integer),
)
_studies = sa.table("studies", sa.column("id", sa.Integer), sa.column("num_frames", sa.Integer))


def _bytewise(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _fill_frame_counts() -> None:
    frames = (
        sa.select(sa.func.coalesce(sa.func.sum(_instances.c.frames), 0))
        .where(_instances.c.series_fk == _series.c.id, _instances.c.is_current.is_(True))
        .scalar_subquery()
    )
    op.execute(sa.update(_series).values(num_frames=frames))
    total = (
        sa.select(sa.func.coalesce(sa.func.sum(_series.c.num_frames), 0))
        .where(_series.c.study_fk == _studies.c.id)
        .scalar_subquery()
    )
    op.execute(sa.update(_studies).values(num_frames=total))


def upgrade() -> None:
    op.create_table(
        "patient_words",
        sa.Column("word", _bytewise(64), nullable=False),
        sa.Column("patient_fk", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["patient_fk"], ["patients.id"]),
        sa.PrimaryKeyConstraint("word", "patient_fk"),
    )
    with op.batch_alter_table("patient_words") as batch:
        batch.create_index("ix_patient_words_patient_fk", ["patient_fk"], unique=False)
    with op.batch_alter_table("patients") as batch:
        batch.create_index("ix_patients_birth_date", ["birth_date"], unique=False)
    with op.batch_alter_table("series") as batch:
        batch.add_column(sa.Column("num_frames", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("patient_age", sa.String(4), nullable=False, server_default=""))
        batch.add_column(sa.Column("num_frames", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_index("ix_studies_patient_date")
        batch.create_index("ix_studies_patient_date", ["patient_fk", "study_date", "study_time"])
        batch.drop_index("ix_studies_newest")
        batch.create_index("ix_studies_newest", ["study_date", "study_time", "id", "patient_fk"])
    _fill_frame_counts()
    fill_name_words(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_index("ix_studies_newest")
        batch.create_index("ix_studies_newest", ["study_date", "study_time", "id"])
        batch.drop_index("ix_studies_patient_date")
        batch.create_index("ix_studies_patient_date", ["patient_fk", "study_date"])
        batch.drop_column("num_frames")
        batch.drop_column("patient_age")
    with op.batch_alter_table("series") as batch:
        batch.drop_column("num_frames")
    with op.batch_alter_table("patients") as batch:
        batch.drop_index("ix_patients_birth_date")
    op.drop_table("patient_words")
