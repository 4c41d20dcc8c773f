import os
import stat

import pytest

from valence.fileio import atomic_path, write_text_atomic


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    write_text_atomic(path, "one")
    write_text_atomic(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("precious")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as temporary:
            temporary.write_text("half wri")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path):
    old_umask = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.json"
        write_text_atomic(fresh, "{}")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640  # as open() would make it, not mkstemp's 0600
        kept = tmp_path / "kept.json"
        kept.write_text("old")
        kept.chmod(0o604)
        write_text_atomic(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o604 and kept.read_text() == "new"
    finally:
        os.umask(old_umask)
