"""The audit trail as DICOM audit messages (PS3.15 A.5.1, the IHE ATNA schema), for export."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import TextIO

from pacs.core.audit import EVENT_NAMES
from storage.models import AuditRecord


def export_xml(records: Iterable[AuditRecord], out: TextIO, audit_source: str = "mini-pacs") -> int:
    """Write every record as a DICOM PS3.15 A.5 AuditMessage inside one AuditMessages root."""
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n<AuditMessages>\n')
    count = 0
    for record in records:
        element = atna_message(record, audit_source)
        ET.indent(element, level=1)
        out.write("  " + ET.tostring(element, encoding="unicode") + "\n")
        count += 1
    out.write("</AuditMessages>\n")
    return count


_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(value: str) -> str:
    """`value` with the characters XML 1.0 cannot carry replaced by U+FFFD."""
    return _XML_ILLEGAL.sub("\ufffd", value)


def _code(tag: str, code: str, system: str, meaning: str) -> ET.Element:
    return ET.Element(tag, {"csd-code": code, "codeSystemName": system, "originalText": meaning})


def atna_message(record: AuditRecord, audit_source: str) -> ET.Element:
    """One record as a DICOM audit message (PS3.15 A.5.1, the ATNA schema)."""
    message = ET.Element("AuditMessage")
    identification = ET.SubElement(
        message,
        "EventIdentification",
        {
            "EventActionCode": record.action,
            "EventDateTime": record.recorded_at,
            "EventOutcomeIndicator": str(record.outcome),
        },
    )
    identification.append(_code("EventID", record.event_id, "DCM", EVENT_NAMES.get(record.event_id, "")))
    if record.event_type:
        identification.append(
            _code("EventTypeCode", record.event_type, "DCM", EVENT_NAMES.get(record.event_type, ""))
        )
    participant = {"UserID": record.user_id or "unknown", "UserIsRequestor": "true"}
    if record.source:
        participant |= {"NetworkAccessPointID": record.source, "NetworkAccessPointTypeCode": "2"}
    ET.SubElement(message, "ActiveParticipant", participant)
    ET.SubElement(message, "AuditSourceIdentification", {"AuditSourceID": audit_source})
    if record.patient_id:
        patient = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": record.patient_id,
                "ParticipantObjectTypeCode": "1",
                "ParticipantObjectTypeCodeRole": "1",
            },
        )
        patient.append(_code("ParticipantObjectIDTypeCode", "2", "RFC-3881", "Patient Number"))
    if record.study_uid:
        study = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": record.study_uid,
                "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "3",
            },
        )
        study.append(_code("ParticipantObjectIDTypeCode", "110180", "DCM", "Study Instance UID"))
    details = json.loads(record.details)
    if details:
        ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {"ParticipantObjectID": f"audit-record-{record.seq}", "ParticipantObjectTypeCode": "4"},
        ).append(ET.Element("ParticipantObjectDetail", {"type": "details", "value": record.details}))
    for element in message.iter():
        for name, value in element.attrib.items():
            element.set(name, _xml_safe(value))
    return message
