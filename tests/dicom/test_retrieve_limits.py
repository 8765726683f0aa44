"""Decompression bombs on retrieve: an object that may not be decoded fails its sub-operation, quickly.

pydicom's ``JPEG2000-embedded-sequence-delimiter.dcm`` is a 1024 x 256 image whose JPEG 2000
codestream claims 14,540,801 tiles. Transcoded for a requestor that takes only uncompressed
syntaxes, it fails its C-GET sub-operation with the reason in Error Comment before any
decoder runs, and the good object beside it still arrives; so do the viewer's bombs (65,025
tiles, RLE runs past the frame, a frame above ``[dicom] max_frame_mb``, here 1 MiB). Each
retrieve runs in a thread joined with a timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from tests.conftest import RunningDicom, running_dicom
from tests.dicom.test_retrieve_transcode import Samples, _get, _with_fresh_uid
from tests.web.test_frame_limits import j2k_tiles_bomb, rle_bomb, rle_runs_bomb

SUB_OPERATIONS_FAILED, SOME_FAILED = 0xA702, 0xB000
GIVE_UP_SECONDS = 120  # only a hang reaches it: each retrieve here takes well under a second


@pytest.fixture(scope="module")
def dicom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDicom]:
    with running_dicom(tmp_path_factory.mktemp("limits"), max_frame_mb=1) as running:
        yield running


def _sample(name: str) -> Callable[[Path], Path]:
    """A maker of pydicom's sample `name` under a fresh SOP Instance UID."""

    def make(path: Path) -> Path:
        _with_fresh_uid(Path(get_testdata_file(name)), path)
        return path

    return make


def _stored(dicom: RunningDicom, make: Callable[[Path], Path], name: str) -> tuple[str, Path]:
    """The object `make` writes, stored: (its SOP Instance UID, its file)."""
    path = make(dicom.tmp / f"stored-{name}.dcm")
    return dicom.pacs.archive.store(path).sop_uid, path


def _get_in_time(samples: Samples, uids: list[str]) -> tuple[list[Dataset], list[Dataset]]:
    """C-GET of `uids` by an uncompressed-only requestor, in a thread: (responses, received)."""
    sop_classes = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in samples.stored.values()
    }
    found: list[tuple[list[Dataset], list[Dataset]]] = []
    worker = threading.Thread(
        target=lambda: found.append(_get(samples, uids, sorted(sop_classes))), daemon=True
    )
    worker.start()
    worker.join(GIVE_UP_SECONDS)
    assert not worker.is_alive(), f"the C-GET had not finished after {GIVE_UP_SECONDS} s"
    assert found, "the C-GET raised (see the thread's exception above)"
    return found[0]


def test_c_get_of_a_jpeg_2000_stream_of_millions_of_tiles_fails_its_sub_operation_and_the_other_arrives(
    dicom: RunningDicom,
) -> None:
    bomb, bomb_path = _stored(dicom, _sample("JPEG2000-embedded-sequence-delimiter.dcm"), "tiles-millions")
    good, good_path = _stored(dicom, _sample("JPEG2000.dcm"), "good")

    responses, received = _get_in_time(Samples(dicom, {bomb: bomb_path, good: good_path}, {}), [bomb, good])

    final = responses[-1]
    assert final.Status == SOME_FAILED
    assert (final.NumberOfFailedSuboperations, final.NumberOfCompletedSuboperations) == (1, 1)
    assert final.ErrorComment == "the JPEG 2000 stream has 14,540,801 tiles (at most 1024 decoded)"
    assert [str(ds.SOPInstanceUID) for ds in received] == [good]


@pytest.mark.parametrize(
    ("make", "comment"),  # what Error Comment starts with (64 characters at most)
    [
        (j2k_tiles_bomb, "the JPEG 2000 stream has 65,025 tiles (at most 1024 decoded)"),
        (
            lambda path: rle_bomb(path, 1024, 1024),
            "a frame would decode to 2.0 MiB; [dicom] max_frame_mb allows 1.0",
        ),
        (rle_runs_bomb, "cannot decode RLE Lossless pixel data: "),
    ],
    ids=["65025-j2k-tiles", "frame-above-max-frame-mb", "rle-runs-past-the-frame"],
)
def test_c_get_of_a_bomb_fails_with_0xa702_and_the_reason(
    dicom: RunningDicom, make: Callable[[Path], Path], comment: str
) -> None:
    bomb, path = _stored(dicom, make, comment[:12].replace(" ", "-"))

    responses, received = _get_in_time(Samples(dicom, {bomb: path}, {}), [bomb])

    final = responses[-1]
    assert (final.Status, final.NumberOfFailedSuboperations) == (SUB_OPERATIONS_FAILED, 1)
    assert str(final.ErrorComment).startswith(comment)
    assert received == []
