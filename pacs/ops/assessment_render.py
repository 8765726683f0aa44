"""The assessment report as a document: self-contained HTML from a Jinja2 template, and PDF.

The template (``pacs/ops/templates/assessment.html``) holds its CSS inline and no script,
so the one file opens anywhere and prints as it shows. PDF is rendered from that HTML by
WeasyPrint, imported only when a PDF is asked for.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from pacs.ops.assessment import Assessment
from storage.errors import PacsError

TEMPLATES = Path(__file__).parent / "templates"
_ENVIRONMENT = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class PdfUnavailableError(PacsError):
    """No PDF renderer is installed."""


def render_html(assessment: Assessment) -> str:
    """The report as one HTML document."""
    findings_by_check: dict[str, int] = {}
    for finding in assessment.report.findings:
        findings_by_check[finding.check] = findings_by_check.get(finding.check, 0) + 1
    return _ENVIRONMENT.get_template("assessment.html").render(
        a=assessment, findings_by_check=findings_by_check
    )


def render_pdf(html: str) -> bytes:
    """The report `html` as a PDF (A4, numbered pages)."""
    try:
        import weasyprint  # heavy, and needed only for a PDF
    except (ImportError, OSError):  # not installed, or its Pango library is missing
        raise PdfUnavailableError(
            "a PDF needs WeasyPrint (pip install weasyprint, and Debian's libpango-1.0-0); "
            "write the report as HTML instead"
        ) from None
    return bytes(weasyprint.HTML(string=html).write_pdf())
