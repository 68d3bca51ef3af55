"""Output paths checked before the work, and folders deleted only when the tool made them (common.outputs)."""

from __future__ import annotations

import pathlib

import pytest

from common.errors import FileError
from common.outputs import (MARKER, check_output_dir, check_output_file, is_marked, make_output_dir,
                            remove_output_dir)

UNWRITABLE = pathlib.Path("/proc/lrm-robot-test")  # no process creates files in /proc, root included


def test_a_new_or_empty_folder_is_marked_a_folder_with_files_is_not(tmp_path):
    made = make_output_dir(tmp_path / "a" / "b", "test")
    assert made == tmp_path / "a" / "b" and is_marked(made)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_marked(make_output_dir(empty, "test"))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine\n")
    make_output_dir(theirs, "test")
    assert not is_marked(theirs)


def test_remove_deletes_only_a_marked_folder(tmp_path):
    ours = make_output_dir(tmp_path / "ours", "test")
    (ours / "result.json").write_text("{}")
    remove_output_dir(ours, "--restart")
    assert not ours.exists()

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work\n")
    with pytest.raises(FileError, match=f"--restart {theirs}: has no {MARKER}, so lrm-robot did not make it"):
        remove_output_dir(theirs, "--restart")
    assert (theirs / "thesis.tex").read_text() == "years of work\n"


def test_remove_refuses_a_link_and_a_file_and_leaves_nothing_to_lose_alone(tmp_path):
    ours = make_output_dir(tmp_path / "ours", "test")
    (ours / "x").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(ours)
    with pytest.raises(FileError, match="is a link"):
        remove_output_dir(link, "--restart")
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(FileError, match="is a file"):
        remove_output_dir(file, "--restart")
    assert ours.exists() and file.exists()
    remove_output_dir(tmp_path / "missing", "--restart")
    (tmp_path / "empty").mkdir()
    remove_output_dir(tmp_path / "empty", "--restart")


def test_output_file_checks(tmp_path):
    assert check_output_file(tmp_path / "new" / "report.json", "--output") == tmp_path / "new" / "report.json"
    existing = tmp_path / "old.json"
    existing.write_text("kept")
    check_output_file(existing, "--output")
    assert existing.read_text() == "kept"  # checked, not truncated
    with pytest.raises(FileError, match=f"--output {tmp_path}: is a folder; name a file"):
        check_output_file(tmp_path, "--output")
    with pytest.raises(FileError, match=f"{existing} is a file, not a folder"):
        check_output_file(existing / "report.json", "--output")
    with pytest.raises(FileError, match="/proc is not writable"):
        check_output_file(UNWRITABLE / "report.json", "--output")
    assert not list(tmp_path.glob(".lrm-robot-probe-*"))  # the write probe cleans up after itself


def test_output_dir_checks(tmp_path):
    check_output_dir(tmp_path / "a" / "b", "output_dir")
    assert not (tmp_path / "a").exists()  # a check creates nothing
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(FileError, match=f"output_dir {file}: is a file; name a folder"):
        check_output_dir(file, "output_dir")
    with pytest.raises(FileError, match="/proc is not writable"):
        check_output_dir(UNWRITABLE / "run", "output_dir")
    with pytest.raises(FileError, match="/proc is not writable"):
        make_output_dir(UNWRITABLE / "run", "test")
