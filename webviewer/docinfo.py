"""What a stored object is, for a reader: its kind, the name of its SOP Class and its key attributes.

:func:`kind_of` says how the web viewer shows an object (an image, an SR report, an
encapsulated PDF, or a description); :func:`key_facts` lists what identifies its content
(an RT Structure Set's label and ROI names, an RT Plan's label and beams, an RT Dose's units,
a Key Object Selection's references, ...), and :func:`patient_facts` who and when it is about.
SOP Class names come from pydicom's UID dictionary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pydicom.dataset import Dataset
from pydicom.uid import UID

from webviewer import dicomtext
from webviewer.dicomtext import text
from webviewer.sr import Observer, Report, is_sr_document

PDF_MIME = "application/pdf"
PDF_MAGIC = b"%PDF-"
MAX_LISTED = 100  # names listed of a sequence (ROIs, beams); the count says how many there are
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class Kind(StrEnum):
    """How an object is shown."""

    IMAGE = "image"
    REPORT = "report"
    PDF = "pdf"
    OTHER = "other"


@dataclass(frozen=True)
class Fact:
    """One labelled attribute; `values` has several entries for a list (ROI names, beams)."""

    label: str
    values: tuple[str, ...]
    count: int = 0  # for a list: how many there are (more than `values` if it was cut short)

    @property
    def value(self) -> str:
        return ", ".join(self.values)


def kind_of(ds: Dataset, *, has_pixels: bool = False) -> Kind:
    """How `ds` is shown: an image if it has pixels, else a report, a PDF or a description.

    `has_pixels` says that Pixel Data follows `ds`, a header read without it (the archive's
    frame map knows, see :attr:`storage.framemap.FrameMap.has_pixels`); a whole data set shows it itself.
    """
    if (has_pixels or any(keyword in ds for keyword in _PIXEL_KEYWORDS)) and "Rows" in ds:
        return Kind.IMAGE
    if is_sr_document(ds):
        return Kind.REPORT
    if pdf_bytes(ds) is not None:
        return Kind.PDF
    return Kind.OTHER


def pdf_bytes(ds: Dataset) -> bytes | None:
    """The encapsulated PDF of `ds` without its padding, or None if it holds no PDF.

    The Encapsulated Document Length (0042,0011), when present and plausible, drops the
    padding byte an odd-length document gets; the bytes must start as a PDF does.
    """
    if text(ds.get("MIMETypeOfEncapsulatedDocument")).lower() != PDF_MIME:
        return None
    data = ds.get("EncapsulatedDocument")
    if not isinstance(data, bytes) or not data.startswith(PDF_MAGIC):
        return None
    length = ds.get("EncapsulatedDocumentLength")
    return data[:length] if isinstance(length, int) and 0 < length <= len(data) else data


def sop_class(ds: Dataset) -> str:
    """The name of `ds`'s SOP Class."""
    return dicomtext.sop_class_name(ds.get("SOPClassUID"))


def patient_facts(ds: Dataset) -> list[Fact]:
    """Who the object is about and when it was made (empty attributes left out)."""
    facts = [
        ("Patient", dicomtext.person_name(ds.get("PatientName", ""))),
        ("Patient ID", text(ds.get("PatientID"))),
        ("Born", dicomtext.date(ds.get("PatientBirthDate"))),
        ("Sex", text(ds.get("PatientSex"))),
        ("Study date", dicomtext.date_and_time(ds.get("StudyDate"), ds.get("StudyTime"))),
        ("Accession", text(ds.get("AccessionNumber"))),
        ("Study", text(ds.get("StudyDescription"))),
        ("Series", text(ds.get("SeriesDescription"))),
    ]
    return [Fact(label, (value,)) for label, value in facts if value]


def key_facts(ds: Dataset, *, has_pixels: bool = False) -> list[Fact]:
    """The attributes that say what `ds` holds: general ones, then those of its SOP Class.

    `has_pixels` is as for :func:`kind_of`.
    """
    general = [
        ("Modality", text(ds.get("Modality"))),
        ("Document title", text(ds.get("DocumentTitle"))),
        ("Content label", text(ds.get("ContentLabel"))),
        ("Content description", text(ds.get("ContentDescription"))),
        ("Content date", dicomtext.date_and_time(ds.get("ContentDate"), ds.get("ContentTime"))),
        ("Manufacturer", text(ds.get("Manufacturer"))),
        ("Instance number", text(ds.get("InstanceNumber"))),
    ]
    facts = [Fact(label, (value,)) for label, value in general if value]
    return facts + class_facts(ds, has_pixels=has_pixels)


def class_facts(ds: Dataset, *, has_pixels: bool = False) -> list[Fact]:
    """The attributes of `ds` particular to its SOP Class (else an encapsulated document's type and size).

    An RT Dose without Pixel Data (`has_pixels`, see :func:`kind_of`) says that it has no grid to show.
    """
    keyword = UID(text(ds.get("SOPClassUID"))).keyword
    facts = _BY_CLASS.get(keyword, _encapsulated)(ds)
    if keyword == "RTDoseStorage" and not (has_pixels or "PixelData" in ds):
        facts.append(_single("Pixels", "none: no dose grid to show"))
    return [fact for fact in facts if fact.values]


def report_facts(report: Report) -> list[Fact]:
    """An SR document's flags, observers and dates."""
    observers = [(observer.role, _observer(observer)) for observer in report.observers]
    facts = [
        ("Completion", report.completion),
        ("Verification", report.verification),
        ("Status", report.preliminary),
        *observers,
        ("Content date", report.content_date),
        ("Observation date", report.observation_date),
    ]
    return [Fact(label, (value,)) for label, value in facts if value]


def _observer(observer: Observer) -> str:
    """``Name (Organization), date``."""
    shown = f"{observer.name} ({observer.organization})" if observer.organization else observer.name
    return f"{shown}, {observer.when}" if observer.when else shown


def _single(label: str, value: str) -> Fact:
    return Fact(label, (value,) if value else ())


def _listed(label: str, names: list[str]) -> Fact:
    """A list of names, at most :data:`MAX_LISTED` of them, and how many there are."""
    shown = tuple(name or "(unnamed)" for name in names[:MAX_LISTED])
    return Fact(f"{label} ({len(names)})", shown, len(names))


def _structure_set(ds: Dataset) -> list[Fact]:
    kinds = {
        text(item.get("ReferencedROINumber")): text(item.get("RTROIInterpretedType"))
        for item in ds.get("RTROIObservationsSequence", [])
    }
    rois = []
    for item in ds.get("StructureSetROISequence", []):
        kind = kinds.get(text(item.get("ROINumber")), "")
        rois.append(f"{text(item.get('ROIName'))} ({kind})" if kind else text(item.get("ROIName")))
    return [
        _single("Structure set label", text(ds.get("StructureSetLabel"))),
        _single("Structure set name", text(ds.get("StructureSetName"))),
        _single(
            "Structure set date",
            dicomtext.date_and_time(ds.get("StructureSetDate"), ds.get("StructureSetTime")),
        ),
        _listed("ROIs", rois),
    ]


def _plan(ds: Dataset) -> list[Fact]:
    beams = [*ds.get("BeamSequence", []), *ds.get("IonBeamSequence", [])]
    fractions = [text(item.get("NumberOfFractionsPlanned")) for item in ds.get("FractionGroupSequence", [])]
    doses = [
        text(item.get("TargetPrescriptionDose"))
        for item in ds.get("DoseReferenceSequence", [])
        if "TargetPrescriptionDose" in item
    ]
    return [
        _single("RT plan label", text(ds.get("RTPlanLabel"))),
        _single("RT plan name", text(ds.get("RTPlanName"))),
        _single("RT plan date", dicomtext.date_and_time(ds.get("RTPlanDate"), ds.get("RTPlanTime"))),
        _single("Plan intent", text(ds.get("PlanIntent")).lower()),
        _single("Geometry", text(ds.get("RTPlanGeometry")).lower()),
        _single("Fractions planned", ", ".join(f for f in fractions if f)),
        _single("Prescription dose (Gy)", ", ".join(doses)),
        _listed("Beams", [_beam(item) for item in beams]),
    ]


def _beam(item: Dataset) -> str:
    name = text(item.get("BeamName")) or text(item.get("BeamNumber"))
    radiation = text(item.get("RadiationType")).lower()
    return f"{name} ({radiation})" if radiation else name


def _dose(ds: Dataset) -> list[Fact]:
    grid = f"{text(ds.get('Columns'))} x {text(ds.get('Rows'))}" if "Rows" in ds else ""
    frames = text(ds.get("NumberOfFrames"))
    return [
        _single("Dose units", text(ds.get("DoseUnits"))),
        _single("Dose type", text(ds.get("DoseType")).lower()),
        _single("Dose summation", text(ds.get("DoseSummationType")).lower()),
        _single("Dose grid", f"{grid} x {frames}" if grid and frames else grid),
        _listed("Referenced RT plans", _referenced(ds, "ReferencedRTPlanSequence")),
    ]


def _treatment_record(ds: Dataset) -> list[Fact]:
    sessions = [
        *ds.get("TreatmentSessionBeamSequence", []),
        *ds.get("TreatmentSessionIonBeamSequence", []),
        *ds.get("TreatmentSessionApplicationSetupSequence", []),
    ]
    fractions = sorted({text(item.get("CurrentFractionNumber")) for item in sessions} - {""})
    return [
        _single("Treatment date", dicomtext.date_and_time(ds.get("TreatmentDate"), ds.get("TreatmentTime"))),
        _single("Fraction", ", ".join(fractions)),
        _listed("Beams delivered", [_beam(item) for item in sessions]),
        _listed("Referenced RT plans", _referenced(ds, "ReferencedRTPlanSequence")),
    ]


def _key_objects(ds: Dataset) -> list[Fact]:
    instances = [
        text(sop.get("ReferencedSOPClassUID"))
        for study in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in study.get("ReferencedSeriesSequence", [])
        for sop in series.get("ReferencedSOPSequence", [])
    ]
    classes = sorted({dicomtext.sop_class_name(uid) for uid in instances})
    return [_single("Objects selected", str(len(instances))), _single("Of the kinds", ", ".join(classes))]


def _waveform(ds: Dataset) -> list[Fact]:
    groups = [
        f"{text(item.get('NumberOfWaveformChannels'))} channel(s), "
        f"{text(item.get('NumberOfWaveformSamples'))} samples at {text(item.get('SamplingFrequency'))} Hz"
        for item in ds.get("WaveformSequence", [])
    ]
    return [_listed("Waveform groups", groups)]


def _encapsulated(ds: Dataset) -> list[Fact]:
    """Any other object: what an encapsulated document holds, if it is one."""
    data = pdf_bytes(ds) or ds.get("EncapsulatedDocument")
    size = f"{len(data):,} bytes" if isinstance(data, bytes) else ""
    return [
        _single("Document type", text(ds.get("MIMETypeOfEncapsulatedDocument"))),
        _single("Document size", size),
    ]


def _referenced(ds: Dataset, keyword: str) -> list[str]:
    return [text(item.get("ReferencedSOPInstanceUID")) for item in ds.get(keyword, [])]


_BY_CLASS: dict[str, Callable[[Dataset], list[Fact]]] = {
    "RTStructureSetStorage": _structure_set,
    "RTPlanStorage": _plan,
    "RTIonPlanStorage": _plan,
    "RTDoseStorage": _dose,
    "RTBeamsTreatmentRecordStorage": _treatment_record,
    "RTIonBeamsTreatmentRecordStorage": _treatment_record,
    "RTBrachyTreatmentRecordStorage": _treatment_record,
    "RTTreatmentSummaryRecordStorage": _treatment_record,
    "KeyObjectSelectionDocumentStorage": _key_objects,
    "TwelveLeadECGWaveformStorage": _waveform,
    "GeneralECGWaveformStorage": _waveform,
    "AmbulatoryECGWaveformStorage": _waveform,
    "HemodynamicWaveformStorage": _waveform,
    "BasicVoiceAudioWaveformStorage": _waveform,
    "ArterialPulseWaveformStorage": _waveform,
    "RespiratoryWaveformStorage": _waveform,
}
