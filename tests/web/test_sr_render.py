"""SR content trees read as reports, objects described by kind, and DICOM values as people read them.

Pure functions on data sets (pydicom's samples and the generated ones): no archive, no app.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedSRStorage, generate_uid

from tests.data.make_documents import (
    LONG_AXIS_MM,
    Subject,
    code,
    container,
    make_key_objects,
    make_measurement_report,
    make_pdf_document,
    num,
    tiny_pdf,
)
from webviewer import dicomtext
from webviewer.docinfo import Kind, key_facts, kind_of, pdf_bytes, sop_class
from webviewer.sr import MAX_DEPTH, MAX_ITEMS, ContentItem, is_sr_document, read_report

SUBJECT = Subject(generate_uid(), "DOE^JANE", "PID-1")


def _sample(name: str) -> Dataset:
    return pydicom.dcmread(get_testdata_file(name), force=True)


def _walk(items: tuple[ContentItem, ...]) -> list[ContentItem]:
    return [node for item in items for node in (item, *_walk(item.children))]


def _report_of(content: list[Dataset]) -> Dataset:
    ds = Dataset()
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [code("1", "99TEST", "Test report")]
    ds.ContentSequence = content
    return ds


# Reports.


def test_a_measurement_report_reads_as_sections_of_named_values(tmp_path: Path) -> None:
    image = ("1.2.840.10008.5.1.4.1.1.2", generate_uid())
    path = make_measurement_report(tmp_path / "sr.dcm", SUBJECT, sop_class=EnhancedSRStorage, image_ref=image)
    report = read_report(pydicom.dcmread(path))
    assert report.title == "Imaging Measurement Report"
    assert (report.completion, report.verification, report.preliminary) == ("Complete", "Verified", "Final")
    (verifier,) = report.observers
    assert (verifier.role, verifier.name, verifier.organization, verifier.when) == (
        "Verified by",
        "HOLMES, Sherlock",
        "Baker Street Radiology",
        "2024-01-15 10:30:00",
    )
    observer, findings, impressions = report.items
    assert (observer.value_type, observer.name, observer.value) == (
        "PNAME",
        "Person Observer Name",
        "WATSON, John H",
    )
    assert (findings.is_section, findings.name, impressions.name) == (True, "Findings", "Impressions")
    (lesion,) = findings.children
    values = {item.name: item.value for item in lesion.children}
    assert values["Long Axis"] == f"{LONG_AXIS_MM} mm" and values["Short Axis"] == "8 mm"
    assert values["Attenuation Coefficient"] == "14 Hounsfield unit"  # a UCUM code in brackets: its meaning
    assert values["Finding Site"] == "Liver"
    assert values["Source of Measurement"] == "CT Image Storage"
    assert report.sop_uids == {image[1]} and report.left_out == 0


def test_every_value_type_of_the_offis_sample_is_read() -> None:
    report = read_report(_sample("test-SR.dcm"))
    shown = {(item.value_type, item.value) for item in _walk(report.items)}
    assert {
        ("UIDREF", "1.2.3.4.5"),
        ("NUM", "3 Length Unit"),  # not UCUM: the unit's meaning
        ("CODE", "Sample Code 1"),
        ("SCOORD", "circle, 2 point(s)"),
        ("TCOORD", "segment"),
        ("", "see content item 1.3.2"),
        ("DATE", "2000-12-06"),
        ("TIME", "12:00:00"),
        ("DATETIME", "2000-12-06 12:00:00"),
        ("COMPOSITE", "Basic Text SR Storage"),
        ("IMAGE", "CT Image Storage, frames 5, 2"),
        ("WAVEFORM", "Hemodynamic Waveform Storage"),
    } <= shown
    assert report.completion == "Complete (This document is completed!)"
    assert [o.name for o in report.observers] == ["Riesmeier, Jörg", "Observer, Verifying"]
    assert {item.relationship for item in _walk(report.items)} >= {"has obs context", "inferred from"}


def test_a_numeric_item_without_a_value_says_why() -> None:
    item = num(code("1", "99TEST", "Volume"), "1", "mm3", "cubic millimeter")
    del item.MeasuredValueSequence
    item.NumericValueQualifierCodeSequence = [code("114006", "DCM", "Measurement failure")]
    (read,) = read_report(_report_of([item])).items
    assert read.value == "Measurement failure"


def test_a_tree_too_deep_or_too_large_is_cut_and_says_how_much_was_left_out() -> None:
    leaf = num(code("1", "99TEST", "Depth"), "1", "mm", "millimeter")
    deep = leaf
    for _ in range(MAX_DEPTH + 5):
        deep = container("CONTAINS", code("2", "99TEST", "Level"), [deep])
    report = read_report(_report_of([deep]))
    assert len(_walk(report.items)) == MAX_DEPTH and report.left_out == 6

    wide = [num(code("1", "99TEST", f"M{n}"), str(n), "mm", "millimeter") for n in range(MAX_ITEMS + 7)]
    report = read_report(_report_of(wide))
    assert len(report.items) == MAX_ITEMS and report.left_out == 7


def test_only_objects_with_a_content_tree_are_reports(tmp_path: Path) -> None:
    assert is_sr_document(_sample("reportsi.dcm")) and is_sr_document(_sample("test-SR.dcm"))
    kos = make_key_objects(
        tmp_path / "kos.dcm", SUBJECT, [("1.2.840.10008.5.1.4.1.1.2", generate_uid(), "1.2.3")]
    )
    assert read_report(pydicom.dcmread(kos)).title == "Of Interest"
    assert not is_sr_document(_sample("rtplan.dcm"))


# Kinds and descriptions.


@pytest.mark.parametrize(
    ("name", "kind", "class_name"),
    [
        ("reportsi.dcm", Kind.REPORT, "Basic Text SR Storage"),
        ("test-SR.dcm", Kind.REPORT, "Comprehensive SR Storage"),
        ("rtstruct.dcm", Kind.OTHER, "RT Structure Set Storage"),
        ("rtplan.dcm", Kind.OTHER, "RT Plan Storage"),
        ("rtdose.dcm", Kind.IMAGE, "RT Dose Storage"),  # its dose grid has pixels the viewer shows
        ("waveform_ecg.dcm", Kind.OTHER, "12-lead ECG Waveform Storage"),
        ("CT_small.dcm", Kind.IMAGE, "CT Image Storage"),
    ],
)
def test_objects_are_shown_by_kind_and_named_by_their_sop_class(
    name: str, kind: Kind, class_name: str
) -> None:
    ds = _sample(name)
    assert (kind_of(ds), sop_class(ds)) == (kind, class_name)


def test_an_unknown_sop_class_is_named_by_its_uid() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.3.4.5.6"
    assert sop_class(ds) == "Unknown SOP Class (1.2.3.4.5.6)"
    assert sop_class(Dataset()) == "Unknown SOP Class (none)"


def test_an_encapsulated_pdf_is_the_pdf_without_its_padding(tmp_path: Path) -> None:
    text = next(text for text in ("Hello", "Hello!") if len(tiny_pdf(text)) % 2 == 1)
    path, document = make_pdf_document(tmp_path / "pdf.dcm", SUBJECT, title="Letter", text=text)
    ds = pydicom.dcmread(path)
    assert len(ds.EncapsulatedDocument) == len(document) + 1
    assert kind_of(ds) is Kind.PDF and pdf_bytes(ds) == document
    del ds.EncapsulatedDocumentLength
    assert pdf_bytes(ds) == ds.EncapsulatedDocument
    ds.EncapsulatedDocument = b"<html>not a pdf</html>"
    assert pdf_bytes(ds) is None and kind_of(ds) is Kind.OTHER
    ds.EncapsulatedDocument, ds.MIMETypeOfEncapsulatedDocument = document, "text/xml"
    assert pdf_bytes(ds) is None
    assert ("Document type", "text/xml") in [(f.label, f.value) for f in key_facts(ds)]


def test_the_generated_pdf_is_a_pdf_with_a_valid_cross_reference_table() -> None:
    data = tiny_pdf("Hi there")
    assert data.startswith(b"%PDF-1.4\n") and data.rstrip().endswith(b"%%EOF")
    xref = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert data[xref:].startswith(b"xref\n0 6\n")
    entries = data[xref:].split(b"\n")[3:8]
    for number, entry in enumerate(entries, 1):
        assert data[int(entry[:10]) :].startswith(b"%d 0 obj" % number)
    assert b"(Hi there) Tj" in data


def test_a_structure_set_lists_at_most_a_hundred_roi_names_and_counts_them_all() -> None:
    ds = _sample("rtstruct.dcm")
    template = ds.StructureSetROISequence[0]
    ds.StructureSetROISequence = []
    for n in range(130):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = 1000 + n, f"ROI {n + 1}"  # numbers without an observation
        ds.StructureSetROISequence.append(roi)
    assert template.ROIName == "patient"
    (rois,) = [fact for fact in key_facts(ds) if fact.label.startswith("ROIs")]
    assert rois.label == "ROIs (130)" and rois.count == 130 and len(rois.values) == 100
    assert rois.values[0] == "ROI 1" and rois.values[-1] == "ROI 100"


# Values as people read them.


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("DOE^JANE", "DOE, Jane"),
        ("DOE^JANE^Q^DR^JR", "DOE, Dr Jane Q, Jr"),
        ("DOE", "DOE"),
        ("", ""),
    ],
)
def test_person_names_read_family_name_first(value: str, shown: str) -> None:
    assert dicomtext.person_name(value) == shown


@pytest.mark.parametrize(
    ("function", "value", "shown"),
    [
        (dicomtext.date, "20240115", "2024-01-15"),
        (dicomtext.date, "2024", "2024"),  # not a full date: as it is
        (dicomtext.time, "0930", "09:30"),
        (dicomtext.time, "093015.123", "09:30:15"),
        (dicomtext.datetime, "20240115093015+0100", "2024-01-15 09:30:15 +0100"),
        (dicomtext.datetime, "20240115", "2024-01-15"),
        (dicomtext.number, "12.50", "12.5"),
        (dicomtext.number, "3.0", "3"),
        (dicomtext.number, "100", "100"),
        (dicomtext.number, "1e-3", "1e-3"),
    ],
)
def test_dates_times_and_numbers_read_as_written_by_hand(
    function: Callable[[str], str], value: str, shown: str
) -> None:
    assert function(value) == shown


def test_units_are_ucum_symbols_or_the_meaning_of_other_codes() -> None:
    assert dicomtext.unit(code("mm", "UCUM", "millimeter")) == "mm"
    assert dicomtext.unit(code("1", "UCUM", "no units")) == ""
    assert dicomtext.unit(code("{ratio}", "UCUM", "ratio")) == "ratio"
    assert dicomtext.unit(code("cm", "99LOCAL", "Length Unit")) == "Length Unit"
    assert dicomtext.unit(None) == ""
