"""Helpers of the document tests: one of every kind of non-image object, made for a study and stored.

:func:`make_document_files` writes them into the study of a stored CT (whose first slice the
measurement report and the key object selection point to); :func:`store_documents` stores them
and says which SOP Instance UID each kind got. :func:`outline` reads a page or fragment the way
the tests look at it: its elements, its headings and its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import ComprehensiveSRStorage, EnhancedSRStorage

from pacs.core.context import Context
from tests.data.make_documents import (
    Subject,
    into_study,
    make_key_objects,
    make_measurement_report,
    make_pdf_document,
)

PDF_TITLE = "Discharge letter"
PDF_TEXT = "Discharge letter for the follow-up"
# name: (pydicom's sample file, whether its pixel data is dropped)
SAMPLES = {
    "basic": ("reportsi.dcm", False),
    "offis": ("test-SR.dcm", False),
    "rtstruct": ("rtstruct.dcm", False),
    "rtplan": ("rtplan.dcm", False),
    "rtdose": ("rtdose.dcm", True),
    "ecg": ("waveform_ecg.dcm", False),
}


@dataclass(frozen=True)
class DocumentFiles:
    """The files made for one study, by name, and the PDF they encapsulate."""

    subject: Subject
    paths: dict[str, Path]
    pdf: bytes
    image_sop: str  # the CT slice the report and the key objects refer to


def make_document_files(root: Path, ct_slice: Path) -> DocumentFiles:
    """One object of each kind, in the study of the CT slice `ct_slice`."""
    ct = pydicom.dcmread(ct_slice, stop_before_pixels=True)
    subject = Subject(str(ct.StudyInstanceUID), str(ct.PatientName), str(ct.PatientID))
    image_ref = (str(ct.SOPClassUID), str(ct.SOPInstanceUID))
    paths = {
        "comprehensive": make_measurement_report(root / "sr-comprehensive.dcm", subject, image_ref=image_ref),
        "enhanced": make_measurement_report(
            root / "sr-enhanced.dcm", subject, sop_class=EnhancedSRStorage, image_ref=image_ref
        ),
        "kos": make_key_objects(root / "kos.dcm", subject, [(*image_ref, str(ct.SeriesInstanceUID))]),
    }
    paths["pdf"], pdf = make_pdf_document(root / "pdf.dcm", subject, title=PDF_TITLE, text=PDF_TEXT)
    for name, (sample, drop_pixels) in SAMPLES.items():
        source = Path(get_testdata_file(sample))
        paths[name] = into_study(source, root / f"{name}.dcm", subject, drop_pixels=drop_pixels)
    assert pydicom.dcmread(paths["comprehensive"]).SOPClassUID == ComprehensiveSRStorage
    return DocumentFiles(subject, paths, pdf, image_ref[1])


def store_documents(pacs: Context, files: DocumentFiles) -> dict[str, str]:
    """Store every file; the SOP Instance UID of each, by name."""
    return {name: pacs.archive.store(path).sop_uid for name, path in files.paths.items()}


def document_url(study: str, sop: str, suffix: str = "") -> str:
    return f"/studies/{study}/documents/{sop}{suffix}"


_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_INLINE = {"a", "span", "b", "i", "em", "strong", "code", "small"}


@dataclass
class Outline:
    """The elements (tag, attributes) of an HTML text in order, its headings, its text (spaces collapsed)."""

    elements: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    headings: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""

    def having_class(self, css: str) -> list[dict[str, str]]:
        """The attributes of every element with the class `css`."""
        return [attrs for _, attrs in self.elements if css in attrs.get("class", "").split()]

    def tags(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.elements if name == tag]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.outline = Outline()
        self.parts: list[str] = []
        self.heading: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.outline.elements.append((tag, {name: value or "" for name, value in attrs}))
        self._boundary(tag)
        if tag in _HEADINGS:
            self.heading = (tag, [])

    def _boundary(self, tag: str) -> None:
        """Text on either side of a block element reads as separate words, as a browser shows it."""
        if tag not in _INLINE:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        self._boundary(tag)
        if self.heading is not None and tag == self.heading[0]:
            self.outline.headings.append((tag, " ".join("".join(self.heading[1]).split())))
            self.heading = None

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
        if self.heading is not None:
            self.heading[1].append(data)


def outline(page: str) -> Outline:
    """What `page` shows (the text of scripts and styles included, which the pages here have none of)."""
    reader = _Reader()
    reader.feed(page)
    reader.close()
    reader.outline.text = re.sub(r"\s+", " ", "".join(reader.parts)).strip()
    return reader.outline
