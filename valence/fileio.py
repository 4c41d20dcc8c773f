"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
import contextlib
import glob
import os
import re
import socket
import tempfile
import time
from pathlib import Path

# A temporary's name says which process on which machine writes it: one whose process is
# gone (SIGKILL, a crash) is removed by the next save at once. One whose writer cannot be
# checked (another machine sharing the folder) is removed once older than this, when no
# save could still be running.
STALE_SECONDS = 600
HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"
WRITER = re.compile(r"\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>[0-9]+)-[^.]*\.tmp$")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success move it over `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    # Same directory, so os.replace is a rename on one file system, never a copy.
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{HOST}-{os.getpid()}-", suffix=".tmp",
                                         dir=path.parent)
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
    """Delete the temporaries of `path` that a killed save left behind; return how many.

    A temporary written by a process of this machine that no longer runs is stale at once;
    any other is stale once older than `older_than` seconds.
    """
    path = Path(path)
    cutoff = time.time() - older_than
    removed = 0
    for stray in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if stray.is_file() and (writer_is_gone(stray.name[len(path.name) + 1:])
                                    or stray.stat().st_mtime < cutoff):
                stray.unlink()
                removed += 1
        except OSError:  # gone already, or not ours to delete: it is harmless where it is
            pass
    return removed


def writer_is_gone(suffix):
    """Return whether the temporary named `.<file><suffix>` was written by a process of this machine that has ended."""
    writer = WRITER.match(suffix)
    if writer is None or writer["host"] != HOST:
        return False
    pid = int(writer["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it runs, as another user
        return False
    return False


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
