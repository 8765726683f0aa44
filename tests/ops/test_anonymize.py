"""De-identified copies of a study (PS3.15 Annex E): no identifying value left, valid objects, new UIDs."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, datetime
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from pacs.core.context import Context
from pacs.ops import corrections
from pacs.ops.anonymize import MANIFEST, CopyReport, anonymize_to_path, copy_steps
from pacs.ops.anonymize_sinks import TargetError, ZipSink
from pacs.ops.deid import Deidentifier, OptionError, Options
from pacs.ops.exporting import export_names
from storage.errors import NotFoundError
from tests.data.make_series import make_ct_series
from tests.ops.anonymize_helpers import (
    DESCRIPTION,
    FRAME_OF_REFERENCE,
    FREE_TEXT,
    MARKS,
    SAMPLES,
    STUDY_DATE,
    STUDY_UID,
    MarkedStudy,
    dciodvfy_errors,
    found_in,
    store_marked_study,
)


@pytest.fixture
def study(pacs: Context, tmp_path: Path) -> MarkedStudy:
    return store_marked_study(pacs, tmp_path / "marked")


def _copy(pacs: Context, out: Path, options: Options | None = None, *, allow: bool = True) -> CopyReport:
    return anonymize_to_path(
        pacs, STUDY_UID, out, options or Options(), allow_burned_in=allow, by="alice", source="cli"
    )


def _copies(out: Path) -> dict[str, pydicom.Dataset]:
    return {str(p.relative_to(out)): pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))}


def _originals(pacs: Context, study: MarkedStudy) -> dict[str, Path]:
    """The marked original of each file name of the copy."""
    return {
        name: study.files[info.sop_uid]
        for name, info in export_names(pacs.archive.study_instances(STUDY_UID))
    }


def test_no_byte_of_the_copy_holds_an_identifying_value_of_the_study(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    report = _copy(pacs, out)
    assert report.written == len(SAMPLES)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == len(SAMPLES) + 1  # and the manifest
    values = study.identifying_values()
    assert len(values) > 40
    in_originals = [found_in(path.read_bytes(), values) for path in study.files.values()]
    assert set().union(*in_originals) == values  # the scan finds each value where it is
    for path in files:
        assert found_in(path.read_bytes(), values) == set(), path
    assert all(value not in str(path) for path in files for value in values)


def test_every_copied_object_passes_dciodvfy_without_an_error_its_original_did_not_have(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    originals = _originals(pacs, study)
    for number, options in enumerate([Options(clean_descriptors=True), Options(shift_dates=True)]):
        out = tmp_path / f"copy{number}"
        _copy(pacs, out, options)
        for name in _copies(out):
            before, after = dciodvfy_errors(originals[name]), dciodvfy_errors(out / name)
            assert after - before == set(), name


def test_the_copy_has_new_uids_the_same_in_every_object_and_in_its_references(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    _copy(pacs, tmp_path / "one")
    one = _copies(tmp_path / "one")
    study_uids = {ds.StudyInstanceUID for ds in one.values()}
    assert len(study_uids) == 1 and STUDY_UID not in study_uids
    assert len({ds.SeriesInstanceUID for ds in one.values()}) == len(SAMPLES)
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in one.values())
    ct, mr, sr = one["S0001/I000001.dcm"], one["S0002/I000002.dcm"], one["S0006/I000006.dcm"]
    assert ct.FrameOfReferenceUID == mr.FrameOfReferenceUID != FRAME_OF_REFERENCE
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == ct.StudyInstanceUID
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    assert (
        evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        == ct.SOPInstanceUID
    )
    _copy(pacs, tmp_path / "two")
    two = _copies(tmp_path / "two")
    assert {ds.StudyInstanceUID for ds in two.values()}.isdisjoint(study_uids)  # another secret


def test_the_pixel_data_is_copied_unchanged(pacs: Context, study: MarkedStudy, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    _copy(pacs, out)
    originals = _originals(pacs, study)
    for name, ds in _copies(out).items():
        original = pydicom.dcmread(originals[name])
        assert ("PixelData" in ds) == ("PixelData" in original)
        if "PixelData" in ds:
            assert ds.PixelData == original.PixelData, name
        assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_the_copy_says_it_was_deidentified_and_how(pacs: Context, study: MarkedStudy, tmp_path: Path) -> None:
    _copy(pacs, tmp_path / "plain")
    _copy(pacs, tmp_path / "options", Options(retain_dates=True, clean_descriptors=True))
    plain, options = _copies(tmp_path / "plain"), _copies(tmp_path / "options")
    for ds in plain.values():
        assert ds.PatientIdentityRemoved == "YES"
        assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100"]
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        assert not any(elem.tag.is_private for elem in ds.iterall())
    for ds in options.values():
        codes = [
            (item.CodeValue, item.CodingSchemeDesignator) for item in ds.DeidentificationMethodCodeSequence
        ]
        assert codes == [("113100", "DCM"), ("113106", "DCM"), ("113105", "DCM")]
        assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
        assert len(ds.DeidentificationMethod) == 3


def test_retain_dates_keeps_the_dates_and_nothing_else_identifying(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    _copy(pacs, out, Options(retain_dates=True))
    copies = _copies(out)
    assert {ds.StudyDate for ds in copies.values()} == {STUDY_DATE}
    assert (
        copies["S0001/I000001.dcm"].ContentDate
        == pydicom.dcmread(study.files[next(iter(study.files))]).ContentDate
    )
    values = study.identifying_values(dates=False)
    for path in out.rglob("*.dcm"):
        assert found_in(path.read_bytes(), values) == set()


def test_without_retain_dates_the_dates_are_gone(pacs: Context, study: MarkedStudy, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    _copy(pacs, out)
    for ds in _copies(out).values():
        assert ds.StudyDate == ""
        assert all(
            not str(e.value).startswith(("2019", "2004", "2001")) for e in ds.iterall() if e.VR == "DA"
        )


def test_descriptions_are_removed_or_with_clean_descriptors_kept_without_identifying_values(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    _copy(pacs, tmp_path / "plain")
    _copy(pacs, tmp_path / "clean", Options(clean_descriptors=True))
    assert all("StudyDescription" not in ds for ds in _copies(tmp_path / "plain").values())
    for ds in _copies(tmp_path / "clean").values():
        assert ds.StudyDescription == "Head for * ref *" != DESCRIPTION
        assert ds.SeriesDescription == "Series of *"
    values = study.identifying_values()
    for path in (tmp_path / "clean").rglob("*.dcm"):
        assert found_in(path.read_bytes(), values) == set()


def test_objects_that_may_show_burned_in_annotation_are_flagged_and_left_out_unless_allowed(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    report = _copy(pacs, tmp_path / "safe", allow=False)
    flagged = {item.name: (item.modality, item.burned_in) for item in report.flagged}
    # the ultrasound and the two secondary captures say nothing of burned-in text
    assert flagged == {
        "S0003/I000003.dcm": ("US", "not stated"),
        "S0004/I000004.dcm": ("NM", "not stated"),
        "S0007/I000007.dcm": ("OT", "not stated"),
    }
    assert sorted(_copies(tmp_path / "safe")) == sorted(
        name for name in _originals(pacs, study) if name not in flagged
    )
    assert len(report.warnings()) == 3 and all("left out" in line for line in report.warnings())
    manifest = json.loads((tmp_path / "safe" / MANIFEST).read_text())
    assert [item["written"] for item in manifest["objects"]] == [True, True, False, False, True, True, False]
    allowed = _copy(pacs, tmp_path / "all", allow=True)
    assert allowed.written == len(SAMPLES) and len(allowed.flagged) == 3
    assert all("copied: check its pixels" in line for line in allowed.warnings())


def test_an_object_that_says_it_has_burned_in_annotation_is_flagged(pacs: Context, tmp_path: Path) -> None:
    source = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    source.StudyInstanceUID = STUDY_UID
    source.BurnedInAnnotation = "YES"
    source.save_as(tmp_path / "burned.dcm", enforce_file_format=True)
    pacs.archive.store(tmp_path / "burned.dcm")
    report = _copy(pacs, tmp_path / "copy", allow=False)
    assert [(item.burned_in, item.written) for item in report.objects] == [("YES", False)]


def test_a_zip_copy_holds_no_identifying_value_in_any_byte_or_member(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    target = tmp_path / "copy.zip"
    _copy(pacs, target, Options(clean_descriptors=True))
    data = target.read_bytes()
    values = study.identifying_values()
    assert found_in(data, values) == set()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names == [*_originals(pacs, study), MANIFEST]
        for name in names:
            assert found_in(archive.read(name), values) == set(), name
    assert target.stat().st_mode & 0o077 == 0


def test_the_copy_is_audited_with_who_what_where_options_and_counts(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    _copy(pacs, tmp_path / "copy.zip", Options(retain_dates=True), allow=False)
    last = list(pacs.audit.records())[-1]
    assert (last.event_id, last.user_id, last.source) == ("110106", "alice", "cli")
    assert (last.study_uid, last.patient_id, last.outcome) == (STUDY_UID, MARKS["PatientID"], 0)
    details = json.loads(last.details)
    assert details["destination"] == str((tmp_path / "copy.zip").resolve())
    assert details["options"] == ["basic", "full_dates"]
    assert (details["instances"], details["written"], details["left_out"]) == (7, 4, 3)


def test_the_replacement_patient_name_and_id_are_used_in_every_object(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    report = _copy(pacs, tmp_path / "copy", Options(patient_name="CASE^SEVEN", patient_id="TEACH-07"))
    assert (report.patient_name, report.patient_id) == ("CASE^SEVEN", "TEACH-07")
    assert {(str(ds.PatientName), ds.PatientID) for ds in _copies(tmp_path / "copy").values()} == {
        ("CASE^SEVEN", "TEACH-07")
    }
    generated = _copy(pacs, tmp_path / "generated")
    assert generated.patient_name == "ANONYMOUS" and generated.patient_id.startswith("ANON")
    with pytest.raises(OptionError):
        _copy(pacs, tmp_path / "bad", Options(patient_id="A\\B"))
    assert not (tmp_path / "bad").exists()


def test_an_existing_target_or_an_unknown_study_is_refused_and_nothing_is_written(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(TargetError, match="exists already"):
        _copy(pacs, tmp_path / "taken")
    assert list((tmp_path / "taken").iterdir()) == []
    with pytest.raises(NotFoundError):
        anonymize_to_path(pacs, "1.2.3.4", tmp_path / "x.zip", Options(), by="alice", source="cli")
    assert not (tmp_path / "x.zip").exists()


def _day(value: str) -> date:
    return datetime.strptime(value[:8], "%Y%m%d").date()


def test_shift_dates_moves_every_date_of_the_copy_back_by_the_same_days_and_keeps_times(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    _copy(pacs, tmp_path / "copy", Options(shift_dates=True))
    copies = _copies(tmp_path / "copy")
    originals = {name: pydicom.dcmread(path) for name, path in _originals(pacs, study).items()}
    shifts = set()
    for name, ds in copies.items():
        original = originals[name]
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
        for keyword in ("StudyDate", "SeriesDate", "ContentDate"):
            if original.get(keyword):
                shifts.add(_day(original.get(keyword)) - _day(ds.get(keyword)))
        if original.get("ContentTime"):
            assert ds.ContentTime == original.ContentTime
        assert ds.PatientBirthDate == ""  # not a longitudinal date: removed
    (shift,) = shifts
    assert 365 <= shift.days <= 3652
    # each copy draws its shift from its own secret
    assert (
        Deidentifier(Options(shift_dates=True), b"a" * 32).shift != Deidentifier(Options(), b"b" * 32).shift
    )


def test_dates_cannot_be_kept_and_shifted_at_once(pacs: Context, study: MarkedStudy, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="either kept or shifted"):
        _copy(pacs, tmp_path / "copy", Options(retain_dates=True, shift_dates=True))
    assert not (tmp_path / "copy").exists()


class _Recorder(io.RawIOBase):
    """A write-only stream that counts what was written since it was last asked."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.pending += len(data)
        return len(data)


def test_a_streamed_copy_hands_out_at_most_a_step_of_pixel_data_at_a_time(
    pacs: Context, tmp_path: Path
) -> None:
    # 2048 x 2048 x 16 bits: 8 MiB of pixel data in each of two slices
    slices = make_ct_series(tmp_path / "big", slices=2, rows=2048, columns=2048, study_uid=STUDY_UID)
    for path in slices:
        pacs.archive.store(path)
    recorder = _Recorder()
    sink = ZipSink(recorder, "test")
    steps, largest = 0, 0
    for _ in copy_steps(pacs, STUDY_UID, sink, Options(), allow_burned_in=False, by="alice", source="cli"):
        steps, largest = steps + 1, max(largest, recorder.pending)
        recorder.pending = 0
    assert steps > 16
    assert largest <= 1 << 21  # one step of 1 MiB (and the ZIP's own few bytes), never an 8 MiB slice


def test_the_free_text_of_an_sr_is_kept_without_the_identifying_values(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    _copy(pacs, tmp_path / "copy")
    sr = _copies(tmp_path / "copy")["S0006/I000006.dcm"]
    texts = [item.TextValue for item in sr.ContentSequence if item.ValueType == "TEXT"]
    assert "Report for *" in texts[-1] and "*, *, seen *" in texts[-1]
    assert FREE_TEXT not in texts[-1]


def test_the_copy_is_made_from_the_current_versions_of_a_corrected_study(
    pacs: Context, study: MarkedStudy, tmp_path: Path
) -> None:
    actor = corrections.Actor(by="alice", source="cli", reason="wrong description")
    corrections.edit(pacs, STUDY_UID, {"StudyDescription": "Knee left 2 views"}, actor)
    _copy(pacs, tmp_path / "copy", Options(clean_descriptors=True))
    assert {ds.StudyDescription for ds in _copies(tmp_path / "copy").values()} == {"Knee left 2 views"}
    for path in (tmp_path / "copy").rglob("*.dcm"):  # the correction's history item went with the profile
        assert "OriginalAttributesSequence" not in pydicom.dcmread(path)
        assert found_in(path.read_bytes(), study.identifying_values()) == set()


def test_a_deflated_object_is_copied_whole_and_deflated_again(pacs: Context, tmp_path: Path) -> None:
    path = Path(get_testdata_file("image_dfl.dcm"))
    source = pydicom.dcmread(path)
    pacs.archive.store(path)
    anonymize_to_path(
        pacs,
        source.StudyInstanceUID,
        tmp_path / "copy",
        Options(),
        allow_burned_in=True,
        by="a",
        source="cli",
    )
    (copy,) = _copies(tmp_path / "copy").values()
    assert copy.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    assert copy.PixelData == source.PixelData
    assert copy.StudyInstanceUID != source.StudyInstanceUID and copy.PatientIdentityRemoved == "YES"
