"""The DICOM JSON text of a stored instance (PS3.18 F.2), as WADO-RS ``/metadata`` answers it.

:func:`instance_text` writes it from the data set before Pixel Data with
:func:`storage.dicomjson.instance_dict`: large binary values by a ``BulkDataURI`` under the
instance's ``bulkdata/``, and Pixel Data by ``bulkdata/7FE00010``. Each URI begins with
:data:`ROOT`, a NUL character, which each answer replaces with its request's DICOMweb root;
no value can bring one in, since ``json.dumps`` escapes every control character in a string.

The text is written at ingest from the data set bytes the walk kept (:func:`text_from_head`)
and kept in ``instances.dicom_json`` sealed beside the blob (:data:`PURPOSE`,
:func:`storage.crypto.seal_beside`), so a series' metadata is read rather than built. An
object whose head was too large to keep, a new version made by a correction and a re-indexed
object get theirs at the first request for it.
"""

from __future__ import annotations

import io
import json
import secrets

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from storage.dicomjson import instance_dict

ROOT = "\x00"
PURPOSE = "dicom json"
PIXEL_DATA = "7FE00010"


def instance_path(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """The path of an instance under the DICOMweb root."""
    return f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"


def has_pixels(ds: Dataset) -> bool:
    """Whether the object (of which `ds` is the header) is an image, so has Pixel Data after it."""
    return all(keyword in ds for keyword in ("Rows", "Columns", "BitsAllocated"))


def instance_text(ds: Dataset, transfer_syntax: str, path: str) -> str:
    """The DICOM JSON text of the data set `ds` (before Pixel Data) of the instance at `path`."""
    mark = secrets.token_hex(16)  # stands for ROOT until the text is written
    base = f"{mark}{path}/bulkdata/"
    item = instance_dict(ds, base)
    if has_pixels(ds):
        compressed = UID(transfer_syntax).is_compressed
        vr = "OB" if compressed or int(ds.BitsAllocated) <= 8 else "OW"
        item[PIXEL_DATA] = {"vr": vr, "BulkDataURI": base + PIXEL_DATA}
    return json.dumps(item, separators=(",", ":")).replace(mark, ROOT)


def text_from_head(head: bytes, transfer_syntax: str, path: str) -> str:
    """:func:`instance_text` of the data set bytes `head` (inflated, for a deflated object)."""
    syntax = UID(transfer_syntax)
    known = syntax.is_transfer_syntax
    ds = read_dataset(
        io.BytesIO(head),
        is_implicit_VR=syntax.is_implicit_VR if known else False,
        is_little_endian=syntax.is_little_endian if known else True,
    )
    return instance_text(ds, transfer_syntax, path)
