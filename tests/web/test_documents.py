"""Reports and documents of a study in the web viewer: SR reports, encapsulated PDFs, RT and other objects.

Every kind is rendered by the server, as a page and as the viewer's panel; who may see them,
what is audited, and the headers (the PDF alone may be framed, by this origin, sandboxed).
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.data.make_documents import (
    IMPRESSION,
    KEY_OBJECT_NOTE,
    LONG_AXIS_MM,
    REPORT_TITLE,
    Subject,
    make_measurement_report,
)
from tests.web.dicomweb_helpers import ACCESSED, CT_PATIENT, Study, store_one
from tests.web.documents_helpers import (
    PDF_TITLE,
    DocumentFiles,
    document_url,
    make_document_files,
    outline,
    store_documents,
)
from tests.web.web_helpers import ADMIN, Browser, Web, details
from webviewer.security import CSP


@pytest.fixture(scope="module")
def document_files(tmp_path_factory: pytest.TempPathFactory, ct_dir: Path) -> DocumentFiles:
    return make_document_files(tmp_path_factory.mktemp("documents"), sorted(ct_dir.glob("*.dcm"))[0])


@pytest.fixture
def docs(web: Web, ct: Study, document_files: DocumentFiles) -> dict[str, str]:
    """Every kind of document stored in the CT's study: its SOP Instance UID by name."""
    assert document_files.image_sop == ct.sop(0)
    return store_documents(web.pacs, document_files)


def _url(ct: Study, docs: dict[str, str], name: str, suffix: str = "") -> str:
    return document_url(ct.uid, docs[name], suffix)


# SR reports.


@pytest.mark.parametrize("name", ["comprehensive", "enhanced"])
def test_a_measurement_report_reads_as_a_report_with_sections_and_measurements_with_units(
    doc: Browser, ct: Study, docs: dict[str, str], name: str
) -> None:
    response = doc.get(_url(ct, docs, name))
    assert response.status_code == 200 and response.mimetype == "text/html"
    shown = outline(response.text)
    assert shown.headings == [
        ("h1", REPORT_TITLE),
        ("h2", "Findings"),
        ("h3", "Liver lesion"),
        ("h2", "Impressions"),
    ]
    for text in (
        "Comprehensive SR Storage" if name == "comprehensive" else "Enhanced SR Storage",
        "Completion Complete",
        "Verification Verified",
        "Status Final",
        "Verified by HOLMES, Sherlock (Baker Street Radiology), 2024-01-15 10:30:00",
        "Content date 2024-01-15 10:30:00",
        "Person Observer Name: WATSON, John H",
        f"Long Axis: {LONG_AXIS_MM} mm",
        "Short Axis: 8 mm",
        "Attenuation Coefficient: 14 Hounsfield unit",
        "Finding Site: Liver",
        "Study Date: 2024-01-15",
        "Study Time: 09:30:00",
        "Source of Measurement: CT Image Storage (in this study)",
        f"Impression: {IMPRESSION}",
        "Patient QUIXOTE, Dulcinea",
    ):
        assert text in shown.text, text
    (image,) = shown.having_class("sr-image")
    assert image["data-sop"] == ct.sop(0)
    (article,) = shown.tags("article")
    assert article["class"] == "document document-kind-report" and article["data-sop"] == docs[name]


def test_a_basic_text_sr_shows_its_flags_context_and_headings(
    doc: Browser, ct: Study, docs: dict[str, str]
) -> None:
    shown = outline(doc.get(_url(ct, docs, "basic")).text)
    assert shown.headings == [("h1", "Document Title"), ("h2", "Section Heading")]
    for text in (
        "Basic Text SR Storage",
        "Completion Partial",
        "Verification Unverified",
        "Recording Observer's Name: Enter text",
        "Report Text: Enter text",
        "Image Reference: Unknown SOP Class (0)",
    ):
        assert text in shown.text, text
    assert shown.having_class("sr-image") and all("data-sop" not in a for a in shown.having_class("sr-image"))


def test_a_comprehensive_sr_with_every_value_type_shows_each_of_them(
    doc: Browser, ct: Study, docs: dict[str, str]
) -> None:
    shown = outline(doc.get(_url(ct, docs, "offis")).text)
    for text in (
        "Diagnosis",
        "Complete (This document is completed!)",
        "Verified by Riesmeier, Jörg (OFFIS e.V.), 2001-02-13 18:47:46",
        "Some UID: 1.2.3.4.5",
        "Text Code: A mass of",
        "has concept mod Code: Sample Code 1",
        "Diameter: 3 Length Unit",
        "inferred from Code: Inferred Sample Text",
        "SCoord Code: circle, 2 point(s)",
        "TCoord Code: segment",
        "selected from see content item 1.3.2",
        "Date: 2000-12-06",
        "Time: 12:00:00",
        "DateTime: 2000-12-06 12:00:00",
        "CT Image Storage, frames 5, 2",
        "Key Image: MR Image Storage",
        "Hemodynamic Waveform Storage",
    ):
        assert text in shown.text, text


def test_text_from_the_object_is_escaped(web: Web, doc: Browser, ct: Study, tmp_path: Path) -> None:
    subject = Subject(ct.uid, CT_PATIENT[0], CT_PATIENT[1])
    path = make_measurement_report(tmp_path / "sr.dcm", subject)
    ds = pydicom.dcmread(path)
    ds.ConceptNameCodeSequence[0].CodeMeaning = "<script>alert(1)</script>"
    ds.ContentSequence[2].ContentSequence[0].TextValue = '<img src=x onerror="alert(2)">'
    ds.save_as(path)
    sop = store_one(web.pacs, path).sop_uid
    for suffix in ("", "/panel"):
        page = doc.get(document_url(ct.uid, sop, suffix)).text
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert outline(page).tags("img") == []


def test_a_key_object_selection_lists_its_note_and_images(
    doc: Browser, ct: Study, docs: dict[str, str]
) -> None:
    shown = outline(doc.get(_url(ct, docs, "kos")).text)
    assert shown.headings[0] == ("h1", "Of Interest")
    for text in (
        "Key Object Selection Document Storage",
        f"Key Object Description: {KEY_OBJECT_NOTE}",
        "Image: CT Image Storage (in this study)",
        "Objects selected 1",
        "Of the kinds CT Image Storage",
    ):
        assert text in shown.text, text
    assert [a["data-sop"] for a in shown.having_class("sr-image")] == [ct.sop(0)]


# PDF, RT and other objects.


def test_an_encapsulated_pdf_is_offered_to_open_and_download_and_its_bytes_are_the_pdf(
    doc: Browser, ct: Study, docs: dict[str, str], document_files: DocumentFiles
) -> None:
    pdf_url = _url(ct, docs, "pdf", "/pdf")
    shown = outline(doc.get(_url(ct, docs, "pdf")).text)
    assert shown.headings == [("h1", PDF_TITLE)]
    assert "Encapsulated PDF Storage" in shown.text and "Document type application/pdf" in shown.text
    (opener,) = shown.having_class("document-open")
    assert opener["href"] == pdf_url and opener["target"] == "_blank" and opener["rel"] == "noopener"
    (download,) = shown.having_class("document-download")
    assert download["href"] == pdf_url and download["download"] == "document.pdf"
    assert f"Download the PDF ({len(document_files.pdf):,} bytes)" in shown.text
    assert f"Document size {len(document_files.pdf):,} bytes" in shown.text  # without the padding
    assert shown.tags("iframe") == shown.tags("object") == shown.tags("embed") == []

    response = doc.get(pdf_url)
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    # The padding byte of the odd-length PDF is not part of it.
    assert len(document_files.pdf) % 2 == 1 and response.data == document_files.pdf


def test_rt_objects_and_a_waveform_are_described_by_their_sop_class_and_key_attributes(
    doc: Browser, ct: Study, docs: dict[str, str]
) -> None:
    expected = {
        "rtstruct": [
            ("h1", "RT Structure Set"),
            "RT Structure Set Storage",
            "Structure set label sep30",
            "ROIs (3) patient (EXTERNAL) Isocenter 1 (ISOCENTER) Isocenter 2 (ISOCENTER)",
        ],
        "rtplan": [
            ("h1", "RT Plan"),
            "RT Plan Storage",
            "RT plan label Plan1",
            "Fractions planned 30",
            "Prescription dose (Gy) 30.826203",
            "Beams (1) Field 1 (photon)",
        ],
        "rtdose": [
            ("h1", "RT Dose"),
            "RT Dose Storage",
            "Dose units RELATIVE",
            "Dose type physical",
            "Dose summation beam",
            "Pixels none: no dose grid to show",
        ],
        "ecg": [
            ("h1", "12-lead ECG Waveform"),
            "Waveform groups (2) 12 channel(s), 10000 samples at 1000 Hz",
        ],
    }
    for name, (heading, *texts) in expected.items():
        for suffix in ("", "/panel"):
            response = doc.get(_url(ct, docs, name, suffix))
            assert response.status_code == 200, (name, suffix)
            shown = outline(response.text)
            level = "h1" if suffix == "" else "h2"
            assert shown.headings == [(level, heading[1])], name
            for text in (*texts, "This object has no image or report to show"):
                assert text in shown.text, (name, text)


def test_the_page_of_an_image_says_so_and_its_panel_is_404(doc: Browser, ct: Study) -> None:
    shown = outline(doc.get(document_url(ct.uid, ct.sop())).text)
    assert shown.headings == [("h1", "CT Image")]
    assert "This object is an image: open the study in the viewer" in shown.text
    assert doc.get(document_url(ct.uid, ct.sop(), "/panel")).status_code == 404
    assert doc.get(document_url(ct.uid, ct.sop(), "/pdf")).status_code == 404


# The panel fragment.


@pytest.mark.parametrize("name", ["comprehensive", "kos", "pdf", "rtstruct"])
def test_the_panel_is_the_page_s_document_as_a_fragment_without_layout_or_script(
    doc: Browser, ct: Study, docs: dict[str, str], name: str
) -> None:
    panel = doc.get(_url(ct, docs, name, "/panel"))
    assert panel.status_code == 200 and panel.mimetype == "text/html"
    fragment = outline(panel.text)
    assert panel.text.lstrip().startswith('<article class="document document-kind-')
    assert panel.text.rstrip().endswith("</article>")
    tags = {tag for tag, _ in fragment.elements}
    assert tags.isdisjoint(
        {"html", "head", "body", "script", "link", "style", "main", "nav", "form", "object"}
    )
    assert all(
        "style" not in attrs and not any(a.startswith("on") for a in attrs) for _, attrs in fragment.elements
    )
    page = outline(doc.get(_url(ct, docs, name)).text)
    # The page is the fragment (its title one heading level up) in the layout, with the patient.
    assert fragment.headings[0][0] == "h2" and page.headings[0][0] == "h1"
    assert [text for _, text in fragment.headings] == [text for _, text in page.headings]
    assert fragment.text in page.text
    assert "QUIXOTE" not in fragment.text


# Who may see documents, and which.


def test_only_physicians_see_documents(web: Web, ct: Study, docs: dict[str, str]) -> None:
    """Without a login, pages go to the login page; the panel the viewer's script fetches is 401."""
    boss = web.logged_in(web.user("boss", ADMIN))
    stranger = web.browser()
    for name, suffix, anonymous_status in [
        ("comprehensive", "", 302),
        ("comprehensive", "/panel", 401),
        ("pdf", "/pdf", 302),
    ]:
        url = _url(ct, docs, name, suffix)
        refused = boss.get(url)
        assert refused.status_code == 403, url
        assert b"QUIXOTE" not in refused.data and b"%PDF" not in refused.data
        anonymous = stranger.get(url)
        assert anonymous.status_code == anonymous_status, url
        assert b"QUIXOTE" not in anonymous.data and b"%PDF" not in anonymous.data
    assert web.audit(ACCESSED) == []


def test_unknown_or_foreign_objects_and_bad_uids_are_404_and_not_audited(
    web: Web, doc: Browser, ct: Study, docs: dict[str, str], mixed: Study
) -> None:
    unknown = generate_uid()
    urls = [
        document_url(unknown, docs["pdf"]),  # a study that does not exist
        document_url(ct.uid, unknown),  # an instance that does not exist
        document_url(mixed.uid, docs["pdf"]),  # an instance of another study
        document_url(ct.uid, "1.2.x"),
        document_url("not-a-uid", docs["pdf"]),
        document_url(ct.uid, "0" * 65),
    ]
    for url in urls:
        for suffix in ("", "/panel", "/pdf"):
            assert doc.get(url + suffix).status_code == 404, url + suffix
    assert doc.get(_url(ct, docs, "comprehensive", "/pdf")).status_code == 404  # not a PDF
    assert [r.study_uid for r in web.audit(ACCESSED)] == [ct.uid]  # only the last, a real object


# Auditing.


def test_opening_a_document_page_is_audited_every_time_like_the_viewer(
    web: Web, doc: Browser, ct: Study, docs: dict[str, str]
) -> None:
    for name in ("comprehensive", "pdf"):
        assert doc.get(_url(ct, docs, name)).status_code == 200
    records = web.audit(ACCESSED, user="doc")
    assert [(r.study_uid, r.patient_id, details(r)["how"]) for r in records] == [
        (ct.uid, CT_PATIENT[1], "viewer")
    ] * 2


def test_panels_and_pdfs_are_audited_once_per_session(
    web: Web, doc: Browser, ct: Study, docs: dict[str, str]
) -> None:
    for url in [
        _url(ct, docs, "kos", "/panel"),
        _url(ct, docs, "pdf", "/panel"),
        _url(ct, docs, "pdf", "/pdf"),
    ]:
        assert doc.get(url).status_code == 200
    assert [(r.study_uid, details(r)["how"]) for r in web.audit(ACCESSED, user="doc")] == [
        (ct.uid, "dicomweb")
    ]
    again = web.logged_in(web.user("doc2"))
    assert again.get(_url(ct, docs, "pdf", "/pdf")).status_code == 200
    assert [r.study_uid for r in web.audit(ACCESSED, user="doc2")] == [ct.uid]


# Headers.


def test_pages_and_panels_keep_the_strict_policy_and_are_not_cached(
    doc: Browser, ct: Study, docs: dict[str, str]
) -> None:
    for suffix in ("", "/panel"):
        response = doc.get(_url(ct, docs, "pdf", suffix))
        assert response.headers["Content-Security-Policy"] == CSP
        assert "frame-ancestors 'none'" in CSP and "object-src 'none'" in CSP
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"


def test_the_pdf_is_inline_under_the_one_csp_never_framed_and_not_cached(
    doc: Browser, ct: Study, docs: dict[str, str]
) -> None:
    response = doc.get(_url(ct, docs, "pdf", "/pdf"))
    headers = response.headers
    assert headers["Content-Security-Policy"] == CSP and "frame-ancestors 'none'" in CSP
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store" and headers["Pragma"] == "no-cache"
    assert headers["Content-Disposition"] == 'inline; filename="document.pdf"'
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    for phi in (*CT_PATIENT, "QUIXOTE", ct.uid, docs["pdf"]):
        assert phi not in headers["Content-Disposition"]
