"""Reading one frame, or the header before Pixel Data, of a stored object without decrypting the rest.

:class:`FrameReader` looks up an instance's :class:`~storage.framemap.FrameMap` (kept in
``instances.frame_map``; for a row indexed before the map existed it is found by one
streaming walk of the blob and stored) and decrypts only the chunks of the blob that hold
the bytes asked for (:meth:`storage.blobs.BlobStore.read_range`). A deflated object's
positions are in its inflated data set, so its bytes are inflated as they stream, up to the
last byte wanted; memory stays bounded either way. The maps last used are kept in memory, within
:data:`MAPS_BUDGET` bytes (a map is counted at :data:`MAP_COST` and :data:`FRAGMENT_COST` a fragment).

For many objects at once (a series' metadata), :meth:`FrameReader.frame_maps` looks their maps
up with one query per :data:`QUERY_BATCH` objects, and :meth:`FrameReader.data_sets` reads their
headers on :data:`HEADER_READERS` threads, at most :data:`HEADERS_AHEAD` ahead of the caller, so
at most that many decrypted chunks are held at once.
"""

from __future__ import annotations

import io
import threading
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
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
QUERY_BATCH = 500
HEADER_READERS = 2
HEADERS_AHEAD = 8


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

    def frame_maps(self, infos: Sequence[InstanceInfo]) -> list[FrameMap]:
        """The frame maps of `infos`, in order, as :meth:`frame_map` finds them, but those not
        remembered are fetched from the index together, one query per :data:`QUERY_BATCH`.
        """
        found: dict[str, FrameMap] = {}
        with self._lock:
            for info in infos:
                kept = self._maps.get(info.ref.blob_id)
                if kept is not None:
                    self._maps.move_to_end(info.ref.blob_id)
                    found[info.ref.blob_id] = kept[0]
        missing = list({info.ref.blob_id: info for info in infos if info.ref.blob_id not in found}.values())
        for first in range(0, len(missing), QUERY_BATCH):
            batch = missing[first : first + QUERY_BATCH]
            query = select(Instance.blob_id, Instance.frame_map).where(
                Instance.blob_id.in_([info.ref.blob_id for info in batch])
            )
            with self._database.read() as session:
                packed = {blob_id: value for blob_id, value in session.execute(query).all()}
            for info in batch:
                value = packed.get(info.ref.blob_id)
                found[info.ref.blob_id] = unpack(value) if value is not None else self._walk(info)
                self._keep(info.ref.blob_id, found[info.ref.blob_id])
        return [found[info.ref.blob_id] for info in infos]

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

    def data_sets(self, infos: Sequence[InstanceInfo]) -> Iterator[Dataset]:
        """The data sets of `infos` before Pixel Data, in order, without their file meta (the transfer
        syntax is ``info.transfer_syntax``): the maps from :meth:`frame_maps`, each header's chunks
        read, decrypted and parsed on the reader threads ahead of the caller (see the module docstring).
        Raises NotFoundError when a blob is gone.
        """
        maps = self.frame_maps(infos)
        with ThreadPoolExecutor(HEADER_READERS, thread_name_prefix="headers") as pool:
            ahead: deque[Future[Dataset]] = deque()
            try:
                for info, found in zip(infos, maps, strict=True):
                    ahead.append(pool.submit(self._data_set, info, found))
                    if len(ahead) > HEADERS_AHEAD:
                        yield ahead.popleft().result()
                while ahead:
                    yield ahead.popleft().result()
            finally:
                for future in ahead:
                    future.cancel()

    def _data_set(self, info: InstanceInfo, found: FrameMap) -> Dataset:
        """The data set of `info` before Pixel Data, parsed from those bytes alone (no file meta)."""
        syntax = UID(info.transfer_syntax)
        head = b"".join(self._dataset_bytes(info, found, 0, found.pixel_start))
        return read_dataset(
            io.BytesIO(head),
            is_implicit_VR=syntax.is_implicit_VR if syntax.is_transfer_syntax else False,
            is_little_endian=syntax.is_little_endian if syntax.is_transfer_syntax else True,
        )

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
