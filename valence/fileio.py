"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
import contextlib
import glob
import os
import tempfile
import time
from pathlib import Path

# A temporary older than this was left by a process that died mid-save (SIGKILL, power
# loss); younger ones may belong to a save still running in another process.
STALE_SECONDS = 600


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success move it over `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    # Same directory, so os.replace is a rename on one file system, never a copy.
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, _mode_for(path))  # mkstemp made it 0600: readable by this user only
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _mode_for(path):
    """The permissions a replaced file keeps, or those open() would give a new one (0666 less the umask)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def remove_stale_temporaries(path, older_than=STALE_SECONDS):
    """Delete the temporaries of `path` that a killed save left behind; return how many."""
    path = Path(path)
    cutoff = time.time() - older_than
    removed = 0
    for stray in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if stray.is_file() and stray.stat().st_mtime < cutoff:
                stray.unlink()
                removed += 1
        except OSError:  # gone already, or not ours to delete: it is harmless where it is
            pass
    return removed


def write_text_atomic(path, text):
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def unwritable_folder(folder):
    """Return why files cannot be created in `folder` (made on demand), or None when they can."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:  # the folder the save would create it in
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def unwritable_file(path):
    """Return why `path` cannot be written atomically, or None when it can."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder, not a file"
    return unwritable_folder(path.parent)
