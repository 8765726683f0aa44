"""The index schema as the code reads and writes it: one model per table.

The tables are created and upgraded only by the Alembic migrations in
``storage/migrations``; :class:`storage.db.Database` opens the database they live in.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _bytewise(length: int) -> String:
    """A string column that sorts bytewise on PostgreSQL too, so prefix ranges use the index."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of every table in the index."""


class Patient(Base):
    """A patient, identified by Patient ID and issuer (or by name and birth date without one)."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_key: Mapped[str] = mapped_column(String(400), unique=True)
    patient_id: Mapped[str] = mapped_column(_bytewise(64), index=True)
    issuer: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(324))
    name_norm: Mapped[str] = mapped_column(_bytewise(324), index=True)
    birth_date: Mapped[str] = mapped_column(String(8), index=True)
    sex: Mapped[str] = mapped_column(String(16))


class Study(Base):
    """A study, with the attributes needed by C-FIND and the study list, and its counts."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_date: Mapped[str] = mapped_column(String(8))
    study_time: Mapped[str] = mapped_column(String(16))
    accession: Mapped[str] = mapped_column(_bytewise(16), index=True)
    study_id: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(64))
    referring_name: Mapped[str] = mapped_column(String(324))
    referring_norm: Mapped[str] = mapped_column(_bytewise(324))
    modalities: Mapped[str] = mapped_column(String(200))
    # Patient's Age (0010,1010) as the study recorded it ("052Y"), empty when absent.
    patient_age: Mapped[str] = mapped_column(String(4), default="", server_default="")
    num_series: Mapped[int] = mapped_column(Integer, default=0)
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    # Frames of the current instances (an instance without Number of Frames is one).
    num_frames: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Timezone Offset From UTC ("-0500") of the first object that carries one; None if none did.
    timezone_offset: Mapped[str | None] = mapped_column(String(5))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set when the study was moved to the trash: hidden from every query until restored or purged.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class Series(Base):
    """A series within a study, with its instance count."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str] = mapped_column(String(16), index=True)
    series_number: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(64))
    body_part: Mapped[str] = mapped_column(String(16))
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    num_frames: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PatientWord(Base):
    """One word of a patient's name, folded (``storage.search.words``), for the study list's search.

    The primary key (word, patient) serves prefix ranges of a word.
    """

    __tablename__ = "patient_words"

    word: Mapped[str] = mapped_column(_bytewise(64), primary_key=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patients.id"), primary_key=True, index=True)


class Instance(Base):
    """One stored version of a SOP instance and the blob that holds its bytes."""

    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("sop_uid", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    is_current: Mapped[bool] = mapped_column(Boolean)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax: Mapped[str] = mapped_column(String(64))
    frames: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    bits_allocated: Mapped[int | None] = mapped_column(Integer)
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Native Pixel Data shorter than the image attributes call for (stored, answered with a warning).
    pixel_data_short: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Where the header and each frame lie in the blob (storage.framemap); None until first computed.
    frame_map: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # Its DICOM JSON (storage.instance_json) sealed beside the blob; None until first written.
    dicom_json: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class AuditRecord(Base):
    """One row of the hash-chained audit trail (written only by ``pacs.core.audit``)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    recorded_at: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(1))
    outcome: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Node(Base):
    """An enrolled DICOM node: who may associate, from where, with which certificate and rights."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str] = mapped_column(String(64))
    port: Mapped[int | None] = mapped_column(Integer)
    permissions: Mapped[str] = mapped_column(String(64))
    cert_fingerprint: Mapped[str] = mapped_column(String(64))
    cert_subject: Mapped[str] = mapped_column(String(256))
    cert_pem: Mapped[str] = mapped_column(Text)
    cert_issued: Mapped[bool] = mapped_column(Boolean)
    plaintext: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A web user: password hash, roles and TOTP second factor (``pacs.core.accounts``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    roles: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(256))
    must_change_password: Mapped[bool] = mapped_column(Boolean)
    disabled: Mapped[bool] = mapped_column(Boolean)
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_confirmed: Mapped[bool] = mapped_column(Boolean)
    last_totp_step: Mapped[int] = mapped_column(BigInteger)
    recovery_codes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Login failures of an account, an address or both, when it may try again (``pacs.core.throttle``)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    retry_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Attempts admitted and not yet settled (they count as failures until then), and until when.
    pending: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pending_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A web session: the SHA-256 of its cookie token, its user and data (``webviewer.sessions``)."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str | None] = mapped_column(String(64), index=True)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AccessToken(Base):
    """A personal access token for DICOMweb clients: the SHA-256 of its secret, never the secret.

    ``scopes`` is a comma-separated list (``read``, ``store``); ``prefix`` is the start of the
    secret, shown in lists so a user can tell tokens apart (``pacs.core.tokens``).
    """

    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_fk: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_from: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(64))


class Passkey(Base):
    """A WebAuthn credential (passkey) a user registered as a second factor (``pacs.core.passkeys``).

    ``public_key`` is the COSE key the authenticator made; ``sign_count`` the last signature
    counter seen (0 for authenticators that keep none); ``transports`` a comma-separated list
    as the browser reported it.
    """

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_fk: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    transports: Mapped[str] = mapped_column(String(128))
    aaguid: Mapped[str] = mapped_column(String(36))
    backup_eligible: Mapped[bool] = mapped_column(Boolean)
    backed_up: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_from: Mapped[str | None] = mapped_column(String(64))


class StudyChange(Base):
    """One change an admin made to the archive's studies, for their history and its undo.

    ``kind`` names the action (``delete``, ``restore``, ``purge``, ``edit``, ``move``, ``merge``,
    ``undo``); ``details`` is JSON with what it changed (attribute values before and after, the
    instances it touched). ``undone_by`` is the id of the change that undid this one.
    """

    __tablename__ = "study_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(16))
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    patient_key: Mapped[str] = mapped_column(String(400), index=True)
    user_id: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text)
    undone_by: Mapped[int | None] = mapped_column(Integer)


class ForwardJob(Base):
    """A study or series waiting to be sent, or sent, to an enrolled node (the forwarding queue).

    ``series_uid`` is empty for a whole study. ``state`` is ``pending``, ``sent`` or ``failed``;
    a pending job is tried again at ``next_attempt_at``. ``requested_by`` is a user or ``route:NAME``.
    """

    __tablename__ = "forward_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    destination: Mapped[str] = mapped_column(String(16), index=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text)
    sent: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    commitment: Mapped[str] = mapped_column(String(16))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ForwardSent(Base):
    """An instance version a forwarding job has delivered (the destination acknowledged it)."""

    __tablename__ = "forward_sent"
    __table_args__ = (UniqueConstraint("job_id", "sop_uid", "version", name="uq_forward_sent"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("forward_jobs.id", ondelete="CASCADE"))
    sop_uid: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)


class AlertRow(Base):
    """An alert for a person, queued until each channel has taken it (the alert queue).

    ``mail_state`` and ``syslog_state`` are ``pending``, ``sent``, ``failed`` or ``no channel``;
    an alert with a pending channel is tried again at ``next_attempt_at``. ``key`` (with
    ``kind``) keeps an alert that is still queued from being queued twice; it carries no PHI.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    mail_state: Mapped[str] = mapped_column(String(16))
    syslog_state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text)


class AlertCursor(Base):
    """How far a stream of the audit trail has gone: the last record ``seq`` a channel took."""

    __tablename__ = "alert_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)


class AlertMark(Base):
    """What the alert producers remember across restarts (pacs.ops.alert_state): a name and its value.

    Cursors into the audit trail, the thresholds already alerted for each certificate, the
    failed forwarding jobs already alerted, the disk's side of the watermark, the last
    selfcheck findings and when the daily check last ran.
    """

    __tablename__ = "alert_marks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# A patient's studies newest first, and all studies newest first, with what the study list's
# search reads while it walks them (storage.search): no row is read for that.
Index("ix_studies_patient_date", Study.patient_fk, Study.study_date, Study.study_time)
Index("ix_studies_newest", Study.study_date, Study.study_time, Study.id, Study.patient_fk)
Index("ix_instances_series_current", Instance.series_fk, Instance.is_current)
Index("ix_forward_jobs_due", ForwardJob.state, ForwardJob.next_attempt_at)
Index("ix_alerts_due", AlertRow.next_attempt_at)
Index("ix_alerts_kind_key", AlertRow.kind, AlertRow.key)
