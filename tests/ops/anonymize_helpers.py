"""A study of real samples marked with identifying values, to anonymize and then search for those values.

pydicom's samples (CT with private tags, MR, ultrasound in JPEG 2000, JPEG, a multi-frame
enhanced MR full of sequences, a comprehensive SR, a two-frame secondary capture) are made
one study of one patient: each gets the same distinctive names, IDs, dates, institution
and descriptions, a private block, and nested references (the SR points at the CT slice,
the MR shares the CT's frame of reference), then is stored through the archive.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacs.core.context import Context

SAMPLES = (
    "CT_small.dcm",  # CT, explicit VR, private tags
    "MR_small_implicit.dcm",  # MR, implicit VR
    "US1_J2KR.dcm",  # ultrasound, JPEG 2000, Burned In Annotation not stated
    "JPEG-lossy.dcm",  # JPEG extended, secondary capture
    "emri_small_jpeg_2k_lossless.dcm",  # enhanced MR, 10 frames, functional group sequences
    "test-SR.dcm",  # comprehensive SR: content tree, observers, references
    "SC_rgb_rle_2frame.dcm",  # RLE, 2 frames, secondary capture
)
STUDY_UID = "1.2.826.0.1.3680043.8.498.77123.1"
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.77123.9"
STUDY_DATE = "20190311"
DESCRIPTION = "Head for Quixote ref 8812"
MARKS = {
    "PatientName": "QUIXOTE^DULCINEA^TOBOSO",
    "PatientID": "PID-ANON-5521",
    "PatientBirthDate": "19610423",
    "AccessionNumber": "ACC99117733",
    "InstitutionName": "Hospital Sancho Panza",
    "InstitutionAddress": "12 Calle Mancha",
    "ReferringPhysicianName": "ROCINANTE^DOCTOR",
    "PerformingPhysicianName": "CERVANTES^MIGUEL",
    "OperatorsName": "BARATARIA^OPERATOR",
    "StudyID": "STUDY4471",
    "StudyDate": STUDY_DATE,
    "SeriesDate": STUDY_DATE,
    "StudyDescription": DESCRIPTION,
    "SeriesDescription": "Series of Toboso",
    "PatientAddress": "Calle Mancha 12",
    "OtherPatientIDs": "OTHER-PID-3131",
}
PRIVATE_MARK = "SECRET-PRIVATE-9911"
REQUESTED_ID = "REQPROC-6161"
FREE_TEXT = "Report for Dulcinea"
# The attributes whose UIDs identify the originals (classes and transfer syntaxes are no secret).
UID_KEYWORDS = frozenset(
    {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "MediaStorageSOPInstanceUID",
        "FrameOfReferenceUID",
        "ReferencedSOPInstanceUID",
        "InstanceCreatorUID",
        "DimensionOrganizationUID",
        "UID",
        "IrradiationEventUID",
        "ConcatenationUID",
    }
)


@dataclass(frozen=True)
class MarkedStudy:
    """The stored study: the marked files by SOP Instance UID, in the archive's order."""

    files: dict[str, Path]

    def identifying_values(self, *, dates: bool = True) -> set[str]:
        """Every value the copy must not contain: the marks, the originals' UIDs and (unless kept) dates."""
        values = {value for value in MARKS.values() if dates or value != STUDY_DATE}
        values |= {PRIVATE_MARK, REQUESTED_ID, "QUIXOTE", "DULCINEA", "TOBOSO"}
        for path in self.files.values():
            ds = pydicom.dcmread(path)
            values |= {
                str(elem.value) for elem in _elements(ds) if elem.keyword in UID_KEYWORDS and elem.value
            }
            if dates:
                values |= {str(e.value)[:8] for e in _elements(ds) if e.VR in ("DA", "DT") and e.value}
        values.discard("")
        return values


def _elements(ds: Dataset) -> list[pydicom.DataElement]:
    elements = list(ds.file_meta.iterall()) if hasattr(ds, "file_meta") else []
    return elements + list(ds.iterall())


def _mark(ds: Dataset, number: int, ct_sop: str) -> None:
    """Give `ds` the study's identifying values, a private block and references."""
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = f"{STUDY_UID}.{number}"
    ds.SeriesNumber = number
    for keyword, value in MARKS.items():
        setattr(ds, keyword, value)
    block = ds.private_block(0x0029, "ACME MARKS", create=True)
    block.add_new(0x10, "LO", PRIVATE_MARK)
    request = Dataset()
    request.RequestedProcedureID = REQUESTED_ID
    request.ScheduledProcedureStepID = REQUESTED_ID
    ds.RequestAttributesSequence = Sequence([request])
    if ds.Modality in ("CT", "MR") and "FrameOfReferenceUID" in ds:
        ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
    if ds.Modality == "SR":
        ds.CurrentRequestedProcedureEvidenceSequence = Sequence([_evidence(ct_sop)])
        ds.ContentSequence.append(_text_item())


def _text_item() -> Dataset:
    """An SR text content item naming the patient, the ID and the date, as a report's free text does."""
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121106", "DCM", "Comment"
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
    item.ConceptNameCodeSequence = Sequence([concept])
    item.TextValue = f"{FREE_TEXT} Toboso, {MARKS['PatientID']}, seen {STUDY_DATE}"
    return item


def _evidence(ct_sop: str) -> Dataset:
    """An SR evidence item pointing at the CT slice of the study."""
    sop = Dataset()
    sop.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    sop.ReferencedSOPInstanceUID = ct_sop
    series = Dataset()
    series.SeriesInstanceUID = f"{STUDY_UID}.1"
    series.ReferencedSOPSequence = Sequence([sop])
    study = Dataset()
    study.StudyInstanceUID = STUDY_UID
    study.ReferencedSeriesSequence = Sequence([series])
    return study


def store_marked_study(pacs: Context, out: Path, names: tuple[str, ...] = SAMPLES) -> MarkedStudy:
    """Mark each sample, write it under `out` and store it; the marked files by SOP Instance UID."""
    out.mkdir(parents=True, exist_ok=True)
    datasets = [pydicom.dcmread(get_testdata_file(name)) for name in names]
    ct_sop = str(datasets[0].SOPInstanceUID)
    files: dict[str, Path] = {}
    for number, ds in enumerate(datasets, start=1):
        _mark(ds, number, ct_sop)
        path = out / f"marked{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        pacs.archive.store(path)
        files[str(ds.SOPInstanceUID)] = path
    return MarkedStudy(files)


def found_in(data: bytes, values: set[str]) -> set[str]:
    """Which of `values` occur in `data` (as bytes, and case-insensitively for text)."""
    lowered = data.lower()
    return {value for value in values if value.encode().lower() in lowered}


_UID = re.compile(r"\b\d+(?:\.\d+){2,}\b")


def dciodvfy_errors(path: Path) -> set[str]:
    """The errors dciodvfy reports for `path`, with UIDs and values that differ between copies masked."""
    run = subprocess.run(["/usr/bin/dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return {_UID.sub("<uid>", line) for line in lines if line.startswith("Error")}
