import os
import stat

import pytest

from valence.fileio import atomic_path, unwritable_file, unwritable_folder, write_text_atomic


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


def test_unwritable_folder_finds_the_first_existing_ancestor(tmp_path):
    assert unwritable_folder(tmp_path / "new" / "deeper") is None
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert unwritable_folder(blocker) == f"{blocker} is a file, not a folder"
    assert unwritable_folder(blocker / "a" / "b") == f"{blocker} is a file, not a folder"
    assert unwritable_file(tmp_path) == f"{tmp_path} is a folder, not a file"
    assert unwritable_file(blocker / "out.csv") == f"{blocker} is a file, not a folder"
    assert unwritable_file(tmp_path / "out.csv") is None


def test_unwritable_folder_asks_the_kernel(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: mode & os.W_OK == 0)
    assert unwritable_folder(tmp_path / "new") == f"{tmp_path} is not writable"


def test_a_killed_saves_temporary_is_removed_by_the_next_save_however_young(tmp_path):
    import subprocess
    import sys

    from valence import fileio

    path = tmp_path / "model.safetensors"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)  # a process of this machine that has ended, as a killed save has
    stray = tmp_path / f".{path.name}.{fileio.HOST}-{dead_pid}-abc123.tmp"
    stray.write_bytes(b"half a model")
    running = tmp_path / f".{path.name}.{fileio.HOST}-{os.getppid()}-def456.tmp"
    running.write_bytes(b"a save still running")  # its writer runs: kept while young
    other_host = tmp_path / f".{path.name}.elsewhere-{dead_pid}-ghi789.tmp"
    other_host.write_bytes(b"another machine's save")  # cannot be checked from here: kept while young
    write_text_atomic(path, "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, running.name, other_host.name])
    old = os.stat(other_host).st_mtime - fileio.STALE_SECONDS - 1
    os.utime(other_host, (old, old))
    write_text_atomic(path, "newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, running.name])
