"""Synthetic non-image objects for tests: SR measurement reports, a Key Object Selection, an encapsulated PDF.

Every generator writes one Part-10 file (Explicit VR Little Endian) into an existing study
(`study_uid`, with the patient's name and ID) as a series of its own, with fresh SOP Instance
and Series UIDs, and returns its path. No real patient data is involved.

- :func:`make_measurement_report`: an Enhanced or Comprehensive SR with sections, measurements
  (NUM with UCUM units: :data:`LONG_AXIS_MM` mm), a CODE, a TEXT, a DATE, a TIME, an observer
  (PNAME) and an IMAGE reference, complete and verified;
- :func:`make_key_objects`: a Key Object Selection of some images;
- :func:`make_pdf_document`: an Encapsulated PDF whose PDF (:func:`tiny_pdf`) says `text`;
- :func:`into_study`: one of pydicom's sample objects (RT Structure Set, RT Plan, ...) moved into
  the study, optionally without its pixel data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ComprehensiveSRStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    KeyObjectSelectionDocumentStorage,
    generate_uid,
)

LONG_AXIS_MM = "12.5"
SHORT_AXIS_MM = "8"
REPORT_TITLE = "Imaging Measurement Report"
IMPRESSION = "Hypodense liver lesion of 12.5 mm, probably a cyst. Follow-up in three months."
OBSERVER = "WATSON^JOHN^H"
VERIFIER = "HOLMES^SHERLOCK"
KEY_OBJECT_NOTE = "Lesion best seen on these images."
CONTENT_DATE, CONTENT_TIME = "20240115", "103000"


@dataclass(frozen=True)
class Subject:
    """The study (and patient) a generated object joins."""

    study_uid: str
    patient_name: str
    patient_id: str


def code(value: str, scheme: str, meaning: str) -> Dataset:
    """A code sequence item."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _item(relationship: str, value_type: str, name: Dataset, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = relationship, value_type
    item.ConceptNameCodeSequence = [name]
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def container(relationship: str, name: Dataset, children: list[Dataset]) -> Dataset:
    return _item(relationship, "CONTAINER", name, ContinuityOfContent="SEPARATE", ContentSequence=children)


def num(name: Dataset, value: str, ucum: str, meaning: str) -> Dataset:
    """A NUM item of `value` in the UCUM unit `ucum`."""
    measured = Dataset()
    measured.NumericValue = value
    measured.MeasurementUnitsCodeSequence = [code(ucum, "UCUM", meaning)]
    return _item("CONTAINS", "NUM", name, MeasuredValueSequence=[measured])


def image(relationship: str, name: Dataset, sop_class: str, sop_uid: str) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = sop_class, sop_uid
    return _item(relationship, "IMAGE", name, ReferencedSOPSequence=[reference])


def _base(subject: Subject, sop_class: UID, modality: str, series_number: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = subject.study_uid, generate_uid()
    ds.PatientName, ds.PatientID = subject.patient_name, subject.patient_id
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = CONTENT_DATE, "093000", ""
    ds.ReferringPhysicianName, ds.StudyID = "", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, series_number, 1
    ds.Manufacturer = "SYNTHETIC"
    ds.ContentDate, ds.ContentTime = CONTENT_DATE, CONTENT_TIME
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _findings(image_ref: tuple[str, str] | None) -> list[Dataset]:
    lesion = [
        _item(
            "HAS CONCEPT MOD",
            "CODE",
            code("363698007", "SCT", "Finding Site"),
            ConceptCodeSequence=[code("10200004", "SCT", "Liver")],
        ),
        num(code("103339001", "SCT", "Long Axis"), LONG_AXIS_MM, "mm", "millimeter"),
        num(code("103340004", "SCT", "Short Axis"), SHORT_AXIS_MM, "mm", "millimeter"),
        num(code("112031", "DCM", "Attenuation Coefficient"), "14", "[hnsf'U]", "Hounsfield unit"),
        _item("CONTAINS", "DATE", code("111060", "DCM", "Study Date"), Date=CONTENT_DATE),
        _item("CONTAINS", "TIME", code("111061", "DCM", "Study Time"), Time="093000"),
    ]
    if image_ref is not None:
        lesion.append(image("CONTAINS", code("121112", "DCM", "Source of Measurement"), *image_ref))
    return [container("CONTAINS", code("M-0100", "SRT", "Liver lesion"), lesion)]


def make_measurement_report(
    path: Path,
    subject: Subject,
    *,
    sop_class: UID = ComprehensiveSRStorage,
    image_ref: tuple[str, str] | None = None,
) -> Path:
    """An SR (Enhanced or Comprehensive) of one liver lesion's measurements, complete and verified.

    `image_ref` (SOP Class UID, SOP Instance UID) is the image the measurements were made on.
    """
    ds = _base(subject, sop_class, "SR", 90)
    ds.SeriesDescription = "Measurements"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = [code("126000", "DCM", REPORT_TITLE)]
    ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag = "COMPLETE", "VERIFIED", "FINAL"
    verifier = Dataset()
    verifier.VerifyingObserverName, verifier.VerifyingOrganization = VERIFIER, "Baker Street Radiology"
    verifier.VerificationDateTime = f"{CONTENT_DATE}{CONTENT_TIME}"
    verifier.VerifyingObserverIdentificationCodeSequence = []
    ds.VerifyingObserverSequence = [verifier]
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.PerformedProcedureCodeSequence = []
    ds.ContentSequence = [
        _item("HAS OBS CONTEXT", "PNAME", code("121008", "DCM", "Person Observer Name"), PersonName=OBSERVER),
        container("CONTAINS", code("121070", "DCM", "Findings"), _findings(image_ref)),
        container(
            "CONTAINS",
            code("121072", "DCM", "Impressions"),
            [_item("CONTAINS", "TEXT", code("121073", "DCM", "Impression"), TextValue=IMPRESSION)],
        ),
    ]
    return _save(ds, path)


def make_key_objects(path: Path, subject: Subject, images: list[tuple[str, str, str]]) -> Path:
    """A Key Object Selection ("Of Interest") of `images` (SOP Class, SOP Instance, Series UID)."""
    ds = _base(subject, KeyObjectSelectionDocumentStorage, "KO", 91)
    ds.SeriesDescription = "Key images"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = [code("113000", "DCM", "Of Interest")]
    ds.ContentTemplateSequence = [Dataset()]
    ds.ContentTemplateSequence[0].MappingResource, ds.ContentTemplateSequence[0].TemplateIdentifier = (
        "DCMR",
        "2010",
    )
    ds.ReferencedPerformedProcedureStepSequence = []
    note = _item(
        "CONTAINS", "TEXT", code("113012", "DCM", "Key Object Description"), TextValue=KEY_OBJECT_NOTE
    )
    ds.ContentSequence = [note] + [
        image("CONTAINS", code("113001", "DCM", "Image"), sop_class, sop_uid)
        for sop_class, sop_uid, _ in images
    ]
    ds.CurrentRequestedProcedureEvidenceSequence = [_evidence(subject.study_uid, images)]
    return _save(ds, path)


def _evidence(study_uid: str, images: list[tuple[str, str, str]]) -> Dataset:
    study = Dataset()
    study.StudyInstanceUID = study_uid
    series: dict[str, Dataset] = {}
    for sop_class, sop_uid, series_uid in images:
        entry = series.setdefault(series_uid, Dataset())
        entry.SeriesInstanceUID = series_uid
        reference = Dataset()
        reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = sop_class, sop_uid
        entry.ReferencedSOPSequence = [*entry.get("ReferencedSOPSequence", []), reference]
    study.ReferencedSeriesSequence = list(series.values())
    return study


def tiny_pdf(text: str) -> bytes:
    """A valid one-page PDF 1.4 that shows `text` (ASCII, without parentheses or backslashes) in Helvetica."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_pdf_document(path: Path, subject: Subject, *, title: str, text: str) -> tuple[Path, bytes]:
    """An Encapsulated PDF titled `title` whose page says `text`; the path and the PDF's bytes."""
    document = tiny_pdf(text)
    ds = _base(subject, EncapsulatedPDFStorage, "DOC", 92)
    ds.SeriesDescription = "Scanned documents"
    ds.DocumentTitle, ds.BurnedInAnnotation = title, "YES"
    ds.ConceptNameCodeSequence = []
    ds.AcquisitionDateTime = f"{CONTENT_DATE}{CONTENT_TIME}"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(document)
    ds.EncapsulatedDocument = document + (b"\0" if len(document) % 2 else b"")
    return _save(ds, path), document


def into_study(source: Path, path: Path, subject: Subject, *, drop_pixels: bool = False) -> Path:
    """`source` (one of pydicom's samples) as a new object of the study, in a series of its own."""
    ds = pydicom.dcmread(source, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = subject.study_uid, generate_uid()
    ds.PatientName, ds.PatientID = subject.patient_name, subject.patient_id
    if drop_pixels:
        for keyword in ("PixelData", "Rows", "Columns", "NumberOfFrames", "GridFrameOffsetVector"):
            if keyword in ds:
                delattr(ds, keyword)
    return _save(ds, path)
