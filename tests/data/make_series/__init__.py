"""Generate realistic *synthetic* DICOM Part-10 files for tests and benchmarks.

This package owns the creation of fake-but-valid imaging series: a CT
volume, an MR volume and an ultrasound multi-frame cine loop. Every file is
a proper DICOM Part-10 file (128-byte preamble, ``DICM`` prefix, group
``0x0002`` File Meta Information) encoded with Explicit VR Little Endian,
with the Patient, General Study, General Series, Frame of Reference (CT/MR),
General Equipment, General Image, Image Plane (CT/MR), Image Pixel,
modality-specific and SOP Common attributes filled in. Pixel data are
simple procedural phantoms computed with vectorised :mod:`numpy`, so they
look like anatomy, differ from slice to slice (or frame to frame) and are
deterministic for a given ``seed``. UIDs are not deterministic: unless
supplied, each call generates fresh ones with
:func:`pydicom.uid.generate_uid`.

No real patient data is involved. Output file names are neutral
(``CT000001.dcm``, ``MR000001.dcm``, ``US000001.dcm``) and never contain
patient names, identifiers or UIDs. Files with the same name in *outdir*
are overwritten, so write different series to different directories.

Every generator takes the keyword arguments ``patient_name`` ((0010,0010)
*Patient's Name*; may be non-ASCII, UTF-8 encoded), ``patient_id``
((0010,0020) *Patient ID*), ``study_uid`` and ``series_uid`` (generated if
``None``), ``study_date`` (``YYYYMMDD``; also the series, content and
acquisition date), ``accession`` ((0008,0050) *Accession Number*) and
``seed`` (the pixel data are reproducible for a given seed, UIDs are not).

Modules: :mod:`.ct`, :mod:`.mr` and :mod:`.us` make the three kinds of
series, from the shared modules of :mod:`.dataset`, the argument checks of
:mod:`.checks` and the drawing helpers of :mod:`.phantoms`; :mod:`.cli` is
the command line::

    python -m tests.data.make_series ct OUTDIR --slices 500
    python -m tests.data.make_series us OUTDIR --frames 60 --patient-id X1
"""

from tests.data.make_series.cli import main
from tests.data.make_series.ct import make_ct_series
from tests.data.make_series.mr import make_mr_series
from tests.data.make_series.us import make_us_cine

__all__ = ["main", "make_ct_series", "make_mr_series", "make_us_cine"]
