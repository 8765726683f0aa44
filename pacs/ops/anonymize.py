"""A de-identified copy of a study (PS3.15 Annex E, Basic Application Level Confidentiality Profile), audited.

:func:`copy_steps` writes, for each current instance of the study, the object de-identified
by :class:`~pacs.ops.deid.Deidentifier` with one secret for the whole copy (made here, never
kept), into a :class:`~pacs.ops.anonymize_sinks.Sink` (a folder or a ZIP file, named like
``pacs export``: ``S0001/I000001.dcm``, never from a value of the data set), then a
``MANIFEST.json`` listing every object with its SOP Class, modality, frames and whether it
may carry burned-in annotation. Memory holds one header at a time: the pixel data is copied
from the stored object as it is read (a deflated object, whose pixel data is inside the
deflate stream, is read whole).

Burned-in annotation: the profile cleans the header, not the pixels. An object whose Burned In
Annotation (0028,0301) is ``YES``, or which does not say and is an ultrasound or a secondary
capture (where text in the image is the rule), is flagged; it is left out of the copy unless
the caller allows it, and listed in the manifest either way. The copy is audited
(:func:`pacs.core.care_events.study_anonymized`) with who, the study, where to, the options
and the counts, also when it fails part-way.
"""

from __future__ import annotations

import io
import json
import secrets
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from pacs.core import care_events
from pacs.core.audit import AuditLog
from pacs.core.audit_vocabulary import AuditEvent, Outcome
from pacs.ops.anonymize_sinks import Sink, sink_for
from pacs.ops.deid import Deidentifier, Options
from pacs.ops.exporting import export_names
from storage.archive import Archive
from storage.errors import ArchiveError
from storage.framemap import FrameMap
from storage.records import InstanceInfo

MANIFEST = "MANIFEST.json"
SECONDARY_CAPTURE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
    }
)
ULTRASOUND = frozenset(
    {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.6.2"}
)
_STEP = 1 << 20
_DELIMITER = (0xFFFE, 0xE0DD)


class Care(Protocol):
    """What a copy uses: the archive and the audit trail (a ``pacs`` context, or the web's services)."""

    @property
    def archive(self) -> Archive:
        """The archive the study is read from."""

    @property
    def audit(self) -> AuditLog:
        """Where the copy is recorded."""


@dataclass(frozen=True)
class CopiedObject:
    """One object of the study as the manifest lists it (nothing in it identifies anyone)."""

    name: str
    sop_class: str
    modality: str
    frames: int
    burned_in: str  # YES, NO or "not stated"
    flagged: bool
    written: bool


@dataclass
class CopyReport:
    """What a copy wrote so far: the objects, the replacement patient, the options."""

    options: Options
    allow_burned_in: bool
    patient_name: str = ""
    patient_id: str = ""
    objects: list[CopiedObject] = field(default_factory=list)

    @property
    def written(self) -> int:
        """Objects written into the copy."""
        return sum(item.written for item in self.objects)

    @property
    def flagged(self) -> list[CopiedObject]:
        """Objects that may carry burned-in annotation (written or not)."""
        return [item for item in self.objects if item.flagged]

    @property
    def skipped(self) -> list[CopiedObject]:
        """Flagged objects left out of the copy."""
        return [item for item in self.objects if not item.written]

    def warnings(self) -> list[str]:
        """One line for each flagged object: what the user must look at before sharing the copy."""
        return [
            f"{item.name}: {item.modality or 'object'} may show burned-in annotation (Burned In Annotation "
            f"{item.burned_in}); " + ("copied: check its pixels" if item.written else "left out")
            for item in self.flagged
        ]

    def manifest(self) -> bytes:
        """The manifest of the copy, as JSON."""
        document = {
            "deidentification": self.options.methods(),
            "retain_dates": self.options.retain_dates,
            "shift_dates": self.options.shift_dates,
            "clean_descriptors": self.options.clean_descriptors,
            "allow_burned_in": self.allow_burned_in,
            "patient_name": self.patient_name,
            "patient_id": self.patient_id,
            "objects": [asdict(item) for item in self.objects],
        }
        return json.dumps(document, indent=2).encode() + b"\n"


def burned_in(ds: Dataset) -> tuple[str, bool]:
    """What `ds` says of burned-in annotation, and whether the copy must flag it."""
    stated = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if stated:
        return stated, stated != "NO"
    likely = ds.get("Modality") == "US" or str(ds.get("SOPClassUID", "")) in SECONDARY_CAPTURE
    return "not stated", likely


def likely_flagged(instances: list[InstanceInfo]) -> int:
    """How many of `instances` are ultrasound or secondary capture images, by their SOP Class.

    What a form can say before any header is read; objects stating burned-in annotation are flagged too.
    """
    return sum(info.sop_class_uid in ULTRASOUND | SECONDARY_CAPTURE for info in instances)


def copy_steps(
    pacs: Care,
    study_uid: str,
    sink: Sink,
    options: Options,
    *,
    allow_burned_in: bool,
    by: str,
    source: str,
) -> Iterator[CopyReport]:
    """Write the de-identified copy into `sink`, yielding the report after each step; audited at the end.

    A step is a chunk of an object written (a header, or up to a MiB of pixel data), so a caller
    streaming the sink's output holds no more than that. The sink is finished (manifest written,
    ZIP closed) after the last object; on a failure it is left to the caller to discard.
    """
    options.check()
    instances = pacs.archive.study_instances(study_uid)
    deid = Deidentifier(options, secrets.token_bytes(32))
    report = CopyReport(options, allow_burned_in, deid.patient_name, deid.patient_id)
    outcome = Outcome.SERIOUS_FAILURE
    try:
        for name, info in export_names(instances):
            copied, chunks = _prepare(pacs, info, name, deid, allow_burned_in)
            if copied.written:
                with sink.member(name) as member:
                    for chunk in chunks:
                        member.write(chunk)
                        yield report
            report.objects.append(copied)  # once whole: a copy broken off counts only what it wrote
        with sink.member(MANIFEST) as member:
            member.write(report.manifest())
        sink.finish()
        outcome = Outcome.SUCCESS
    finally:
        pacs.audit.append(_audit(report, instances, by, source, sink.destination, outcome))
    yield report


def anonymize_study(
    pacs: Care,
    study_uid: str,
    sink: Sink,
    options: Options,
    *,
    allow_burned_in: bool = False,
    by: str,
    source: str,
) -> CopyReport:
    """Write the whole de-identified copy into `sink` (see :func:`copy_steps`) and say what was written."""
    steps = copy_steps(pacs, study_uid, sink, options, allow_burned_in=allow_burned_in, by=by, source=source)
    return deque(steps, maxlen=1)[0]


def _audit(
    report: CopyReport,
    instances: list[InstanceInfo],
    by: str,
    source: str,
    destination: str,
    outcome: Outcome,
) -> AuditEvent:
    """The audit record of a copy (the original patient and study: the trail is the archive's own)."""
    return care_events.study_anonymized(
        by=by,
        source=source,
        patient_id=instances[0].patient_id,
        study_uid=instances[0].study_uid,
        destination=destination,
        outcome=outcome,
        options=report.options.methods(),
        allow_burned_in=report.allow_burned_in,
        instances=len(instances),
        written=report.written,
        flagged_burned_in=len(report.flagged),
        left_out=len(report.skipped),
    )


def _prepare(
    pacs: Care, info: InstanceInfo, name: str, deid: Deidentifier, allow_burned_in: bool
) -> tuple[CopiedObject, Iterator[bytes]]:
    """One object as the manifest lists it, and its de-identified bytes (none if it is left out)."""
    deflated = info.transfer_syntax == DeflatedExplicitVRLittleEndian
    found = None if deflated else pacs.archive.frame_map(info)
    if found is None:
        ds = pydicom.dcmread(io.BytesIO(b"".join(pacs.archive.read_instance(info))))
    else:
        ds = pacs.archive.dataset_without_pixels(info)
    stated, flagged = burned_in(ds)
    copied = CopiedObject(
        name=name,
        sop_class=UID(info.sop_class_uid).name,
        modality=str(ds.get("Modality", "")),
        frames=int(ds.get("NumberOfFrames", 1) or 1),
        burned_in=stated,
        flagged=flagged,
        written=allow_burned_in or not flagged,
    )
    return copied, _object_bytes(pacs, info, deid.apply(ds), found) if copied.written else iter(())


def _object_bytes(pacs: Care, info: InstanceInfo, ds: Dataset, found: FrameMap | None) -> Iterator[bytes]:
    """The de-identified object: its new header, then its Pixel Data element copied from the stored one."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    yield buffer.getvalue()
    if found is not None and found.has_pixels:
        with pacs.archive.open_instance(info) as stored:
            yield from pixel_element(stored, found)


def pixel_element(stored: BinaryIO, found: FrameMap) -> Iterator[bytes]:
    """The bytes of the top-level Pixel Data element of the object `stored` (nothing that follows it)."""
    _skip(stored, found.dataset_start + found.pixel_start)
    head = found.value_start - found.pixel_start
    if not found.encapsulated:
        yield from _exactly(stored, head + found.value_length)
        return
    yield from _exactly(stored, head)
    while True:
        item = b"".join(_exactly(stored, 8))
        yield item
        group, element, length = struct.unpack("<HHI", item)
        if (group, element) == _DELIMITER:
            return
        yield from _exactly(stored, length)


def _skip(stored: BinaryIO, count: int) -> None:
    """Read past `count` bytes of `stored`."""
    for _ in _exactly(stored, count):
        pass


def _exactly(stored: BinaryIO, count: int) -> Iterator[bytes]:
    """The next `count` bytes of `stored`, a step at a time; ArchiveError if it ends first."""
    while count > 0:
        chunk = stored.read(min(count, _STEP))
        if not chunk:
            raise ArchiveError("the stored object ends inside its pixel data")
        count -= len(chunk)
        yield chunk


def anonymize_to_path(
    pacs: Care,
    study_uid: str,
    out: Path,
    options: Options,
    *,
    allow_burned_in: bool = False,
    by: str,
    source: str,
) -> CopyReport:
    """Write the copy into the new folder `out`, or the new ZIP file `out` when it ends in ``.zip``.

    An unknown study is refused before anything is written; a copy that fails is removed.
    """
    options.check()
    pacs.archive.study_instances(study_uid)
    sink = sink_for(out)
    try:
        return anonymize_study(
            pacs, study_uid, sink, options, allow_burned_in=allow_burned_in, by=by, source=source
        )
    except BaseException:
        sink.discard()
        raise
