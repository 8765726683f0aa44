"""Pointing a corrected study at the patient row of its new values, and the study row's attributes.

Called by :mod:`storage.versions` inside the transaction that makes the corrected versions
current, so the index answers with the values the objects now carry: C-FIND and QIDO read
the patient and study rows, the study list reads them and the name words (:mod:`storage.search`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, func, select, update

from storage import index, search
from storage.header import InstanceHeader, normalise_name
from storage.models import Patient, Study


def place_study(connection: Connection, header: InstanceHeader, now: datetime) -> str:
    """Point the study of `header` at the patient row of its values and set the study's attributes.

    The patient row (found by its key, created by indexing if new) takes the header's name,
    birth date and sex; a patient row left without studies is deleted. Returns the key.
    """
    key = index.patient_key(header)
    patient_fk = index.patient_row(connection, header)
    patient = connection.execute(select(Patient.id, Patient.name).where(Patient.id == patient_fk)).one()
    connection.execute(
        update(Patient)
        .where(Patient.id == patient.id)
        .values(
            patient_id=header.patient_id,
            issuer=header.issuer,
            name=header.patient_name,
            name_norm=normalise_name(header.patient_name),
            birth_date=header.birth_date,
            sex=header.sex,
        )
    )
    if patient.name != header.patient_name:
        search.remove_name_words(connection, patient.id)
        search.add_name_words(connection, patient.id, header.patient_name)
    old_fk = connection.execute(
        select(Study.patient_fk).where(Study.study_uid == header.study_uid)
    ).scalar_one()
    connection.execute(
        update(Study)
        .where(Study.study_uid == header.study_uid)
        .values(
            patient_fk=patient.id,
            study_date=header.study_date,
            study_time=header.study_time.replace(":", ""),
            accession=header.accession,
            study_id=header.study_id,
            description=header.study_description,
            referring_name=header.referring_name,
            referring_norm=normalise_name(header.referring_name),
            updated_at=now,
        )
    )
    if old_fk != patient.id:
        left = connection.execute(select(func.count(Study.id)).where(Study.patient_fk == old_fk)).scalar_one()
        if not left:
            search.remove_name_words(connection, old_fk)
            connection.execute(delete(Patient).where(Patient.id == old_fk))
    return key
