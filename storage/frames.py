"""Reading one frame, or the header before Pixel Data, of a stored object without decrypting the rest.

:class:`FrameReader` looks up an instance's :class:`~storage.framemap.FrameMap` (kept in
``instances.frame_map``; for a row indexed before the map existed it is found by one
streaming walk of the blob and stored) and decrypts only the chunks of the blob that hold
the bytes asked for (:meth:`storage.blobs.BlobStore.read_range`). A deflated object's
positions are in its inflated data set, so its bytes are inflated as they stream, up to the
last byte wanted; memory stays bounded either way. The maps last used are kept in memory, within
:data:`MAPS_BUDGET` bytes (a map is counted at :data:`MAP_COST` and :data:`FRAGMENT_COST` a fragment).
"""

from __future__ import annotations

import io
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator

import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian
from sqlalchemy import select, update

from storage.blobs import BlobStore
from storage.db import Database
from storage.errors import NotFoundError
from storage.framemap import FrameMap, unpack
from storage.models import Instance
from storage.records import InstanceInfo
from storage.walker import Part10Walker

MAPS_BUDGET = 32 * 2**20
MAP_COST, FRAGMENT_COST = 512, 200  # bytes of a map, of a fragment with its offsets (measured: 460, 213)
_INFLATE_STEP = 1 << 20


class FrameReader:
    """Frames and headers of stored objects, read in bounded memory; see the module docstring."""

    def __init__(self, database: Database, blobs: BlobStore, max_header_bytes: int) -> None:
        self._database = database
        self._blobs = blobs
        self._max_header_bytes = max_header_bytes
        self._maps: OrderedDict[str, tuple[FrameMap, int]] = OrderedDict()
        self._maps_size = 0
        self._lock = threading.Lock()

    def frame_map(self, info: InstanceInfo) -> FrameMap:
        """The frame map of `info`: remembered, from the index, or found by walking its blob (then stored)."""
        blob_id = info.ref.blob_id
        with self._lock:
            kept = self._maps.get(blob_id)
            if kept is not None:
                self._maps.move_to_end(blob_id)
                return kept[0]
        with self._database.read() as session:
            packed = session.scalar(select(Instance.frame_map).where(Instance.blob_id == blob_id))
        found = unpack(packed) if packed is not None else self._walk(info)
        self._keep(blob_id, found)
        return found

    def _keep(self, blob_id: str, found: FrameMap) -> None:
        """Remember `found`, forgetting the maps least recently used beyond :data:`MAPS_BUDGET`."""
        size = MAP_COST + FRAGMENT_COST * (len(found.fragments) + len(found.extended_offsets) // 2)
        with self._lock:
            old = self._maps.pop(blob_id, None)
            self._maps_size += size - (old[1] if old is not None else 0)
            self._maps[blob_id] = (found, size)
            while self._maps_size > MAPS_BUDGET:
                self._maps_size -= self._maps.popitem(last=False)[1][1]

    def _walk(self, info: InstanceInfo) -> FrameMap:
        """The frame map of an object indexed without one, from one pass over its blob; stored."""
        walker = Part10Walker(max_header=self._max_header_bytes)
        for chunk in self._plaintext(info, 0, info.size):
            walker.feed(chunk)
        found = walker.close().frame_map
        with self._database.write() as session:
            query = update(Instance).where(Instance.blob_id == info.ref.blob_id)
            session.execute(query.values(frame_map=found.pack()))
        return found

    def frame_bytes(self, info: InstanceInfo, number: int) -> bytes:
        """The stored bytes of frame `number` (1-based): native samples, or the fragments joined.

        Raises :class:`~storage.framemap.NoSuchFrameError` for a frame the object does not
        have and :class:`~storage.framemap.FrameMapError` when its frames cannot be told apart.
        """
        found = self.frame_map(info)
        runs = found.runs(number)
        start, end = runs[0][0], runs[-1][0] + runs[-1][1]
        span = b"".join(self._dataset_bytes(info, found, start, end))
        if len(runs) == 1:
            data = span
        else:
            data = b"".join(span[offset - start : offset - start + length] for offset, length in runs)
        shift = found.bit_shift(number)
        if shift or found.frame_bits % 8:
            size = -(-found.frame_bits // 8)
            value = (int.from_bytes(data, "little") >> shift) & ((1 << found.frame_bits) - 1)
            data = value.to_bytes(size, "little")
        return data

    def dataset_without_pixels(self, info: InstanceInfo) -> Dataset:
        """The object's data set up to (not including) Pixel Data, with its file meta."""
        found = self.frame_map(info)
        if info.transfer_syntax != DeflatedExplicitVRLittleEndian:
            head = b"".join(self._plaintext(info, 0, found.dataset_start + found.pixel_start))
            return pydicom.dcmread(io.BytesIO(head))
        meta = b"".join(self._plaintext(info, 0, found.dataset_start))
        ds = read_dataset(
            io.BytesIO(b"".join(self._dataset_bytes(info, found, 0, found.pixel_start))),
            is_implicit_VR=False,
            is_little_endian=True,
        )
        ds.file_meta = pydicom.dcmread(io.BytesIO(meta)).file_meta
        return ds

    def _dataset_bytes(self, info: InstanceInfo, found: FrameMap, start: int, end: int) -> Iterator[bytes]:
        """The data set's bytes `start` .. `end` (inflated first for a deflated object)."""
        if info.transfer_syntax != DeflatedExplicitVRLittleEndian:
            yield from self._plaintext(info, found.dataset_start + start, found.dataset_start + end)
            return
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        at = 0
        for chunk in self._plaintext(info, found.dataset_start, info.size):
            pending: bytes = chunk
            while at < end and not inflater.eof:
                inflated = inflater.decompress(pending, _INFLATE_STEP)
                pending = inflater.unconsumed_tail
                if at + len(inflated) > start:
                    yield inflated[max(0, start - at) : end - at]
                at += len(inflated)
                if not pending and len(inflated) < _INFLATE_STEP:
                    break  # this chunk is all inflated
            if at >= end or inflater.eof:
                return

    def _plaintext(self, info: InstanceInfo, start: int, end: int) -> Iterator[bytes]:
        """Bytes `start` .. `end` of the stored object, authenticated; NotFoundError if the blob is gone."""
        try:
            yield from self._blobs.read_range(info.ref, start, end)
        except FileNotFoundError:
            raise NotFoundError(f"the stored object of {info.sop_uid} is missing") from None
