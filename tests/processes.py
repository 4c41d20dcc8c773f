"""Processes seen through Linux's /proc: a process's live children, whether one still runs."""
from pathlib import Path


def live_children(pid):
    """Return the pids of a process's live children (Linux's /proc; none elsewhere)."""
    return {int(status.parent.name) for status in Path("/proc").glob("[0-9]*/status") if _status(status, "PPid") ==
            str(pid) and _status(status, "State")[:1] not in ("Z", "X", "")}


def is_alive(pid):
    """Return whether a process runs (a zombie has ended: it waits only to be reaped)."""
    return _status(Path(f"/proc/{pid}/status"), "State")[:1] not in ("Z", "X", "")


def _status(path, field):
    """Return a field of a /proc status file, or "" when the process is gone."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":\t", 1)[1].strip() for line in lines if line.startswith(field + ":\t")), "")
