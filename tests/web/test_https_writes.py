"""The HTTPS server's writes of a streamed body (pacs/serve/https.py): gathered, in order, nothing lost."""

from __future__ import annotations

from pacs.serve import https


def test_small_chunks_of_a_body_are_gathered_into_writes_of_at_least_the_write_size() -> None:
    chunks = [bytes([number % 251]) * 1000 for number in range(3000)]
    writes = list(https._coalesced(iter(chunks)))
    assert b"".join(writes) == b"".join(chunks)
    assert all(len(piece) >= https.WRITE_BYTES for piece in writes[:-1])
    assert 0 < len(writes[-1]) <= https.WRITE_BYTES + 1000


def test_a_large_chunk_is_written_as_it_is_and_empty_chunks_are_dropped() -> None:
    large = b"x" * (2 * https.WRITE_BYTES)
    writes = list(https._coalesced(iter([b"", large, b"", b"tail"])))
    assert writes[0] is large
    assert writes[1:] == [b"tail"]


def test_a_body_without_bytes_gives_no_write() -> None:
    assert list(https._coalesced(iter([b"", b""]))) == []
