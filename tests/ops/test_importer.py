"""``pacs import``'s expansion of folders: patient CDs (DICOMDIR) anywhere in the tree."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet

from pacs.cli import main
from pacs.core.config import Settings
from pacs.ops.importer import collect
from tests.data.make_series import make_ct_series


@pytest.fixture(scope="session")
def other_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, smaller CT series of another patient (3 slices)."""
    out = tmp_path_factory.mktemp("other")
    make_ct_series(out, slices=3, rows=32, columns=32, patient_name="PANZA^SANCHO", patient_id="PID-P-0042")
    return out


def _write_cd(series: Path, cd: Path) -> Path:
    """Write `series` as a patient CD in `cd`: a DICOMDIR, its files, and a viewer's files."""
    fileset = FileSet()
    for path in sorted(series.glob("*.dcm")):
        fileset.add(pydicom.dcmread(path))
    fileset.write(cd)
    (cd / "AUTORUN.INF").write_text("[autorun]\nopen=VIEWER.EXE\n")
    (cd / "VIEWER.EXE").write_bytes(b"MZ" + b"\0" * 100)
    return cd


def _uids(paths: Iterable[Path]) -> list[str]:
    return [str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths]


def _series_uids(series: Path) -> set[str]:
    return set(_uids(series.glob("*.dcm")))


def test_a_cd_one_level_down_contributes_exactly_the_files_its_dicomdir_references(
    ct_dir: Path, tmp_path: Path
) -> None:
    cd = _write_cd(ct_dir, tmp_path / "import" / "cd1")
    files, failures = collect([tmp_path / "import"])
    assert failures == []
    assert len(files) == 6
    assert set(_uids(files)) == _series_uids(ct_dir)
    assert all(path.is_relative_to(cd) and path.name.upper() != "DICOMDIR" for path in files)
    assert not {"AUTORUN.INF", "VIEWER.EXE"} & {path.name for path in files}


def test_a_cd_several_levels_down_with_a_lower_case_dicomdir_is_read_through_it(
    ct_dir: Path, tmp_path: Path
) -> None:
    cd = _write_cd(ct_dir, tmp_path / "import" / "2024" / "march" / "cd")
    (cd / "DICOMDIR").rename(cd / "dicomdir")
    files, failures = collect([tmp_path / "import"])
    assert failures == []
    assert sorted(_uids(files)) == sorted(_series_uids(ct_dir))


def test_two_cds_side_by_side_each_contribute_their_own_files(
    ct_dir: Path, other_dir: Path, tmp_path: Path
) -> None:
    _write_cd(ct_dir, tmp_path / "import" / "cd1")
    _write_cd(other_dir, tmp_path / "import" / "cd2")
    files, failures = collect([tmp_path / "import"])
    assert failures == []
    assert len(files) == 9
    assert set(_uids(files)) == _series_uids(ct_dir) | _series_uids(other_dir)
    assert [path.relative_to(tmp_path / "import").parts[0] for path in files] == ["cd1"] * 6 + ["cd2"] * 3


def test_loose_files_beside_a_cd_folder_are_collected_once_each(
    ct_dir: Path, other_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "import"
    shutil.copytree(other_dir, folder / "loose")
    shutil.copy(next(other_dir.glob("*.dcm")), folder / "top.dcm")
    _write_cd(ct_dir, folder / "cd1")
    files, failures = collect([folder])
    assert failures == []
    assert len(files) == len(set(files)) == 6 + 3 + 1
    assert {path for path in files if not path.is_relative_to(folder / "cd1")} == {
        *(folder / "loose").glob("*.dcm"),
        folder / "top.dcm",
    }
    assert set(_uids(files)) == _series_uids(ct_dir) | _series_uids(other_dir)


def test_a_dicomdir_nested_inside_a_cd_is_ignored_in_favour_of_the_outer_one(
    ct_dir: Path, other_dir: Path, tmp_path: Path
) -> None:
    outer = _write_cd(ct_dir, tmp_path / "import" / "cd1")
    _write_cd(other_dir, outer / "EXTRA" / "OLDCD")
    files, failures = collect([tmp_path / "import"])
    assert failures == []
    assert sorted(_uids(files)) == sorted(_series_uids(ct_dir))
    assert not any(path.is_relative_to(outer / "EXTRA") for path in files)


def test_a_cd_at_the_top_of_the_named_folder_hides_dicomdirs_below_it(
    ct_dir: Path, other_dir: Path, tmp_path: Path
) -> None:
    cd = _write_cd(ct_dir, tmp_path / "cd")
    _write_cd(other_dir, cd / "OLDCD")
    files, failures = collect([cd])
    assert failures == []
    assert sorted(_uids(files)) == sorted(_series_uids(ct_dir))


def test_an_unreadable_dicomdir_in_a_sub_folder_is_a_failure_and_its_folder_is_not_walked(
    ct_dir: Path, other_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "import"
    shutil.copytree(other_dir, folder / "loose")
    cd = _write_cd(ct_dir, folder / "cd1")
    (cd / "DICOMDIR").write_bytes(b"not a DICOMDIR")
    files, failures = collect([folder])
    assert files == sorted((folder / "loose").glob("*.dcm"))
    assert [failure.path for failure in failures] == [cd / "DICOMDIR"]
    assert failures[0].reason.startswith("unreadable DICOMDIR")


def test_a_plain_folder_still_contributes_every_non_hidden_file_below_it_in_path_order(
    ct_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "import"
    shutil.copytree(ct_dir, folder / "b" / "series")
    (folder / "a.txt").write_text("not dicom")
    (folder / "c").mkdir()
    (folder / "c" / "notes.txt").write_text("not dicom either")
    (folder / ".hidden").write_text("skipped")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.dcm").write_bytes(b"skipped")
    (folder / "b" / ".DS_Store").write_bytes(b"skipped")
    files, failures = collect([folder])
    assert failures == []
    assert files == [
        folder / "a.txt",
        *sorted((folder / "b" / "series").glob("*.dcm")),
        folder / "c" / "notes.txt",
    ]


def test_a_symbolic_link_to_a_folder_is_not_followed(ct_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "import"
    folder.mkdir()
    (folder / "linked").symlink_to(ct_dir, target_is_directory=True)
    (folder / "one.dcm").symlink_to(next(ct_dir.glob("*.dcm")))
    assert collect([folder]) == ([folder / "one.dcm"], [])


def test_an_unreadable_sub_folder_is_reported_and_the_walk_carries_on(
    ct_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "import"
    shutil.copytree(ct_dir, folder / "good")
    (folder / "locked").mkdir()
    real_iterdir = Path.iterdir

    def iterdir(self: Path) -> Iterator[Path]:
        if self == folder / "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    files, failures = collect([folder])
    assert files == sorted((folder / "good").glob("*.dcm"))
    assert [(f.path, f.reason) for f in failures] == [
        (folder / "locked", "unreadable folder: Permission denied")
    ]


def test_import_of_a_folder_holding_a_cd_one_level_down_stores_it_without_failures(
    settings: Settings, ct_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_cd(ct_dir, tmp_path / "import" / "cd1")
    code = main(["import", str(tmp_path / "import"), "--data", str(settings.data_dir), "--quiet"], environ={})
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "6 stored, 0 already present, 0 new versions, 0 failed, in 1 studies" in out


def test_import_of_two_cds_and_loose_files_stores_each_object_once(
    settings: Settings, ct_dir: Path, other_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "import"
    _write_cd(ct_dir, folder / "cd1")
    _write_cd(other_dir, folder / "cd2")
    shutil.copy(next(other_dir.glob("*.dcm")), folder / "loose.dcm")
    code = main(["import", str(folder), "--data", str(settings.data_dir), "--quiet"], environ={})
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "9 stored, 1 already present, 0 new versions, 0 failed, in 2 studies" in out
