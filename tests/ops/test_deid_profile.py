"""Table E.1-1 as data, and how its combined action codes resolve, checked against rows of the standard."""

from __future__ import annotations

import pytest

from pacs.ops import deid_profile
from pacs.ops.deid import Deidentifier, Options, resolve

# (tag, Basic Profile action) as Table E.1-1 of PS3.15 lists them.
ROWS = [
    (0x00100010, "Z"),  # Patient's Name
    (0x00100030, "Z"),  # Patient's Birth Date
    (0x00080050, "Z"),  # Accession Number
    (0x00200010, "Z"),  # Study ID
    (0x00080090, "Z"),  # Referring Physician's Name
    (0x0020000D, "U"),  # Study Instance UID
    (0x0020000E, "U"),  # Series Instance UID
    (0x00080018, "U"),  # SOP Instance UID
    (0x00081155, "U"),  # Referenced SOP Instance UID
    (0x00200052, "U"),  # Frame of Reference UID
    (0x00080080, "X/Z/D"),  # Institution Name
    (0x00080081, "X"),  # Institution Address
    (0x00081030, "X"),  # Study Description
    (0x0008103E, "X"),  # Series Description
    (0x00101040, "X"),  # Patient's Address
    (0x00101000, "X"),  # Other Patient IDs
    (0x00081140, "X/Z/U*"),  # Referenced Image Sequence
    (0x00880200, "X"),  # Icon Image Sequence
    (0x04000561, "X"),  # Original Attributes Sequence
]


@pytest.mark.parametrize(("tag", "code"), ROWS, ids=[f"{tag:08x}" for tag, _ in ROWS])
def test_the_basic_profile_gives_each_row_its_action(tag: int, code: str) -> None:
    assert Deidentifier(Options(), b"k").action(tag) == code


def test_curves_and_overlay_data_and_comments_are_removed_in_every_repeating_group() -> None:
    deid = Deidentifier(Options(), b"k")
    assert [deid.action(tag) for tag in (0x50001000, 0x501E3000, 0x60003000, 0x601E4000)] == ["X"] * 4
    assert deid.action(0x60000010) is None  # Overlay Rows: the plane goes whole, not by the table


def test_the_options_change_the_temporal_and_descriptor_rows_only() -> None:
    study_date, content_date, description, name = 0x00080020, 0x00080023, 0x00081030, 0x00100010
    assert {study_date, content_date} <= deid_profile.temporal_tags()
    assert description in deid_profile.descriptor_tags()
    full = Deidentifier(Options(retain_dates=True, clean_descriptors=True), b"k")
    shifted = Deidentifier(Options(shift_dates=True), b"k")
    assert [full.action(t) for t in (study_date, content_date, description, name)] == ["K", "K", "C", "Z"]
    assert [shifted.action(t) for t in (study_date, description)] == ["C", "X"]
    assert 0x00100030 not in deid_profile.temporal_tags()  # the birth date is never kept


@pytest.mark.parametrize(
    ("code", "vr", "has_value", "action"),
    [
        ("X/Z", "LO", True, "Z"),
        ("X/D", "LO", True, "D"),
        ("X/D", "LO", False, "Z"),
        ("Z/D", "DA", True, "D"),
        ("X/Z/D", "SH", True, "D"),
        ("X/Z/U*", "UI", True, "U"),
        ("X/Z/U*", "SQ", True, "U"),
        ("X/Z/U*", "SQ", False, "Z"),
        ("X", "LO", True, "X"),
    ],
)
def test_a_combined_code_keeps_an_attribute_the_object_has(
    code: str, vr: str, has_value: bool, action: str
) -> None:
    assert resolve(code, vr, has_value) == action


def test_uids_are_the_same_within_a_copy_and_differ_between_copies() -> None:
    one, again, other = (
        Deidentifier(Options(), b"a"),
        Deidentifier(Options(), b"a"),
        Deidentifier(Options(), b"b"),
    )
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert one.uid(uid) == again.uid(uid) != other.uid(uid)
    assert one.uid(uid).startswith("2.25.") and len(one.uid(uid)) <= 64
    assert one.uid(uid) != one.uid(uid + "1")
