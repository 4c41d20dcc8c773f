"""Read users' messy Spotify CSVs into the clean frame of docs/design.md; split by track."""
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from valence.data import cells
from valence.config import (FEATURE_COLUMNS, KAGGLE_COLUMNS, KAGGLE_URL, NUMERIC_FEATURES, TARGET, SplitConfig, ValenceError,
                     counted)
from valence.data.csvread import Framer, ReadStats, header_fields, parse_fields, utf8_pieces
from valence.data.rows import build_clean_frame

BAD_LINES_KEPT = 20
BLOCK_BYTES = 8 << 20  # iter_feature_chunks reads this much at a time
CHUNK_ROWS = 50_000  # rows per chunk that iter_feature_chunks yields
# Names other exports give a Kaggle column; used only when the Kaggle name is absent.
ALIASES = {"id": "track_id", "name": "track_name", "artists": "artist_name"}
# Files that users pass instead of the CSV (the Kaggle download is a ZIP archive).
BINARY_FORMATS = ((b"PK\x03\x04", "a ZIP archive (or an .xlsx workbook)"), (b"PK\x05\x06", "an empty ZIP archive"),
                  (b"\x1f\x8b", "gzip-compressed"), (b"BZh", "bzip2-compressed"),
                  (b"\xfd7zXZ\x00", "xz-compressed"), (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
                  (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"\xd0\xcf\x11\xe0", "an .xls workbook"),
                  (b"PAR1", "a Parquet file"))
BINARY_ADVICE = "extract the CSV from the archive (or export the sheet as CSV) and pass that file"
# Fewer validation or test rows than this, and early stopping and the test figures are mostly noise.
MIN_SPLIT_ROWS = 100
COPIES_SHARE = 0.01  # exact copies above this share of the rows are worth a warning (the Kaggle file has none)
# require_valence=IF_PRESENT: every column but valence is required; a valence column, when there, is
# checked as in training (a row with a bad valence is skipped).
IF_PRESENT = "if present"
IDENTIFIED = tuple(c for c in KAGGLE_COLUMNS if c != TARGET)
IDENTITY_COLUMNS = ("track_id", "artist_name", "track_name", "genre")  # what names a row in an output
TRUNCATED, TOO_MANY, OPEN_QUOTE = ("truncated row", "row with too many fields",
                                   "row with an unterminated quote")


@dataclass
class LoadReport:
    """What loading a file found: counts of kept and skipped rows, repairs and notes."""
    path: str
    sha256: str = ""
    encoding: str = "utf-8"
    rows_read: int = 0
    rows_kept: int = 0
    skipped: dict = field(default_factory=dict)   # reason -> rows
    repaired_time_signatures: int = 0
    converted: dict = field(default_factory=dict)  # column -> cells read in Spotify API form
    bad_lines: list = field(default_factory=list)  # first (line, reason) pairs
    notes: list = field(default_factory=list)

    def summary(self):
        """Return one line: rows kept of rows read, and why the others were skipped."""
        parts = [f"{count:,} {_plural(reason, count)}" for reason, count in self.skipped.items()]
        details = [f"skipped: {', '.join(parts) if parts else 'none'}"]
        if self.repaired_time_signatures:
            details.append(f"repaired {self.repaired_time_signatures:,} time signatures")
        return (f"loaded {self.rows_kept:,} of {counted(self.rows_read, 'row')} from {self.path} "
                f"({'; '.join(details)})")

    def _add(self, bad, counts):
        for reason, count in counts.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        room = BAD_LINES_KEPT - len(self.bad_lines)
        self.bad_lines.extend(bad[:max(room, 0)])


def _plural(reason, count):
    return reason if count == 1 else re.sub(r"\b(row|line)\b", r"\1s", reason, count=1)


def counted_reason(reason, count):
    """Return "1 truncated row", "3 rows with an unknown key": a reason for skipping, counted."""
    return f"{count:,} {_plural(reason, count)}"


def _readable(path):
    """Return `path` as a Path, or say clearly why it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise ValenceError(
            f"data file not found: {path}\n"
            f"Download the Kaggle data set 'Ultimate Spotify Tracks DB' from {KAGGLE_URL} and save "
            f"its SpotifyFeatures.csv as {path}, or run with --demo to try the whole pipeline "
            f"on generated data.")
    if path.is_dir():
        raise ValenceError(f"{path} is a directory, not a CSV file")
    return path


def _refuse_binary(path, handle):
    """Say clearly when the file is an archive or a workbook rather than CSV text."""
    head = handle.read(8)
    handle.seek(0)
    for magic, what in BINARY_FORMATS:
        if head.startswith(magic):
            raise ValenceError(f"{path} is {what}, not a CSV text file: {BINARY_ADVICE}")


def _column_plan(names, path, require_valence, report):
    """Return {Kaggle column: position in the file}, or say which columns are missing."""
    normal = [n.replace("\ufeff", "").strip().lower().replace(" ", "_") for n in names]
    positions = {}
    for i, name in enumerate(normal):
        positions.setdefault(name, i)
    # Two copies of a column may disagree, and which one a reader takes is a guess: refused, not picked.
    repeated = [c for c in KAGGLE_COLUMNS if normal.count(c) > 1] + [
        alias for alias, column in ALIASES.items() if column not in positions and normal.count(alias) > 1]
    if repeated:
        raise ValenceError(f"{path}: column(s) {', '.join(repeated)} appear more than once in the header; "
                           f"keep one copy of each (or rename the others) and try again")
    for alias, column in ALIASES.items():
        if column not in positions and alias in positions:
            positions[column] = positions[alias]
            report.notes.append(f"using column {alias!r} as {column}")
    # Scoring needs only what the model reads; names, track_id and valence are carried when present.
    # A catalog needs each row's track and names; valence, when the file has it, is what it shows as expected.
    wanted = {True: KAGGLE_COLUMNS, IF_PRESENT: IDENTIFIED}.get(require_valence, FEATURE_COLUMNS)
    missing = [c for c in wanted if c not in positions]
    if missing:
        line = ",".join(names)
        for delimiter, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            known = {n.strip().lower() for n in line.split(delimiter)} & set(KAGGLE_COLUMNS)
            if len(names) < 3 and len(known) >= 2:
                raise ValenceError(f"{path}: expected comma-separated values, but the header is "
                                   f"{label}-separated; save the file as CSV with commas")
        found = ", ".join(repr(n if len(n) <= 40 else n[:37] + "...") for n in names[:20])
        raise ValenceError(f"{path} is missing required column(s): {', '.join(missing)} "
                           f"(found: {found}{', ...' if len(names) > 20 else ''})")
    plan = {c: positions[c] for c in KAGGLE_COLUMNS if c in positions}
    extra = [names[i] for i in range(len(names)) if i not in plan.values()]
    if extra:
        report.notes.append(f"ignored {len(extra)} extra column(s): {', '.join(extra[:10])}"
                            + (", ..." if len(extra) > 10 else ""))
    if list(plan.values()) != sorted(plan.values()):
        report.notes.append("columns are in a different order from the Kaggle file; matched by name")
    return plan, [names[p].strip() for p in plan.values()]


def _malformed(records, indexes, n_fields):
    """Return (line, reason) for records whose field count or quoting is wrong."""
    bad = []
    for i in indexes:
        if records.open_quote[i]:
            reason = f"{OPEN_QUOTE}: a quoted field never ends"
        elif records.fields[i] < n_fields:
            reason = f"{TRUNCATED}: {records.fields[i]} of {n_fields} fields"
        else:
            reason = f"{TOO_MANY}: {records.fields[i]} of {n_fields}"
        bad.append((int(records.lines[i]), reason))
    return bad


def _identities(records, lo, hi, bad, plan, n_fields):
    """Return a frame of the skipped rows' lines and IDENTITY columns, as far as each record holds them.

    A record with too many fields (an unquoted comma in a name) has its fields shifted, and one longer than
    any row of names (a runaway quote) is no row: neither names its song. A truncated one keeps its first fields.
    """
    columns = [c for c in IDENTITY_COLUMNS if c in plan]
    at = {int(line): i for i, line in enumerate(records.lines[lo:hi], lo)}
    rows = []
    for line, _reason in bad:
        i = at.get(line)
        whole = i is not None and records.fields[i] <= n_fields and records.ends[i] - records.starts[i] < 65_536
        fields = header_fields(records.text(i)) if whole else []
        rows.append([line, *(fields[plan[c]].strip() if plan[c] < len(fields) else "" for c in columns)])
    return pd.DataFrame(rows, columns=["line", *columns]).astype({c: object for c in columns})


def _records_chunk(records, lo, hi, header, require_valence, report, identities=False):
    """Validate records[lo:hi]; return (clean frame, [(line, reason)]), and with `identities` the
    skipped rows' names and track_id (see _identities) third."""
    plan, names, n_fields = header
    fields, length = records.fields[lo:hi], records.ends[lo:hi] - records.starts[lo:hi]
    blank = length == fields - 1  # nothing but commas: a spreadsheet's empty row
    for i in np.flatnonzero(~blank & (fields == 1) & (length < 256)):  # whitespace-only lines
        blank[i] = not records.text(lo + i).strip()
    good = (fields == n_fields) & ~records.open_quote[lo:hi] & ~blank
    malformed = _malformed(records, np.flatnonzero(~good & ~blank) + lo, n_fields)
    raw = parse_fields(records, lo, hi, good, n_fields, sorted(plan.values()),
                       numeric=[plan[c] for c in NUMERIC_FEATURES + (TARGET,) if c in plan])
    try:
        frame, bad, counts, hows = build_clean_frame(raw, records.lines[lo:hi][good], plan, names,
                                                     require_valence)
    except ValenceError as error:
        raise ValenceError(f"{report.path}, {error}") from None
    counts.update(reason.split(":")[0] for _, reason in malformed)
    bad = sorted(malformed + bad)
    report.rows_read += int(hi - lo - blank.sum())
    report.rows_kept += len(frame)
    report.repaired_time_signatures += hows.pop("time_signature:" + cells.REPAIRED, 0)
    for key, count in hows.items():
        column = key.split(":")[0]
        report.converted[column] = report.converted.get(column, 0) + count
    report._add(bad, counts)
    return (frame, bad, _identities(records, lo, hi, bad, plan, n_fields)) if identities else (frame, bad)


def _first_nonblank(records):
    """Return [index of the first record with more than blanks], or [] when there is none."""
    for i in np.flatnonzero(records.ends > records.starts):
        if records.text(i).strip():
            return [i]
    return []


def _chunks(path, chunksize, require_valence, report, identities=False):
    """Yield (clean frame, bad rows) for each run of `chunksize` records (all when None)."""
    path = _readable(path)
    stats, framer, header, yielded = ReadStats(), Framer(), None, False
    block = None if chunksize is None else BLOCK_BYTES
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise ValenceError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        _refuse_binary(path, handle)
        try:
            for piece, last in utf8_pieces(handle, stats, block):
                records = framer.feed(piece, last)
                first = 0
                if header is None:
                    nonblank = _first_nonblank(records)
                    if not nonblank:
                        if last:
                            raise ValenceError(f"{path} is empty: expected a CSV file whose first "
                                               f"line is the header {','.join(KAGGLE_COLUMNS)}")
                        continue
                    names = header_fields(records.text(nonblank[0]))
                    plan, normal = _column_plan(names, path, require_valence, report)
                    header, first = (plan, normal, len(names)), nonblank[0] + 1
                step = chunksize or max(len(records) - first, 1)
                stop = len(records) if last else first + (len(records) - first) // step * step
                for lo in range(first, stop, step):
                    yielded = True
                    yield _records_chunk(records, lo, min(lo + step, stop), header,
                                         require_valence, report, identities)
                if not last:
                    framer.keep(records, stop)
        except OSError as error:
            raise ValenceError(f"cannot read {path}: {error.strerror}") from None
    _finish(report, stats)
    if not yielded:  # a header and nothing else: one empty chunk, so callers see the columns
        yield _records_chunk(records, len(records), len(records), header, require_valence, report, identities)


def _finish(report, stats):
    report.sha256 = stats.sha256.hexdigest()
    report.encoding = "+".join(stats.encodings) or "utf-8"
    others = [e for e in stats.encodings if e != "utf-8"]
    if others and not others[0].startswith("utf-16"):
        report.notes.append(f"{report.path} is not valid UTF-8; decoded {stats.fallback_lines:,} "
                            f"{'line' if stats.fallback_lines == 1 else 'lines'} as "
                            f"{' or '.join(others)}")
    elif others:
        report.notes.append(f"{report.path} is UTF-16 text; decoded it")
    if stats.nul_bytes:
        report.notes.append(f"removed {stats.nul_bytes:,} NUL bytes")
    for column, count in report.converted.items():
        report.notes.append(f"converted {count:,} {column} values to the Kaggle spelling "
                            f"(e.g. Spotify API key 0-11, mode 1/0, time_signature 4)")


def load_dataset(path, require_valence=True):
    """Load a Kaggle-schema CSV into the clean frame; return (frame, LoadReport)."""
    report = LoadReport(path=str(path))
    frames = [frame for frame, _ in _chunks(path, None, require_valence, report)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if report.rows_kept == 0:
        why = "it has a header but no data rows" if report.rows_read == 0 else (
            f"{report.summary()}; first problem: line {report.bad_lines[0][0]}: "
            f"{report.bad_lines[0][1]}")
        raise ValenceError(f"no usable rows in {path}: {why}")
    return frame, report


def iter_feature_chunks(path, chunksize=CHUNK_ROWS, report=None, require_valence=False, identities=False):
    """Yield (clean frame, [(line, reason)]) for each `chunksize` rows; valence optional unless required
    (True: required; IF_PRESENT: the other Kaggle columns are, and a valence column is checked when there).

    Reads the file block by block, so a large file is never held twice. A file with
    a header and no rows yields one empty frame. `report`, when given, is filled in. With `identities`,
    each chunk also yields a frame of its skipped rows' line, track_id, artist_name and track_name (those
    the file has), so that an output can keep every row's identity.
    """
    if chunksize < 1:
        raise ValueError("chunksize must be at least 1")
    report = report if report is not None else LoadReport(path=str(path))
    yield from _chunks(path, chunksize, require_valence, report, identities)


def split_by_track(frame, split=SplitConfig()):
    """Split rows into (train, val, test) so that all rows of one track_id go to one split."""
    seed, val_fraction, test_fraction = split.seed, split.val_fraction, split.test_fraction
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValenceError(f"split fractions must be >= 0 and add up to less than 1, got "
                           f"validation {val_fraction} and test {test_fraction}")
    # Sorted: the split ignores row order. Each row finds its track by its factorize code, an integer
    # gather (a binary search of every row's id among the sorted ids took 0.7 s on 232,725 rows).
    codes, uniques = pd.factorize(frame["track_id"].to_numpy(), use_na_sentinel=False)
    by_id = np.argsort(uniques, kind="stable")
    tracks = uniques[by_id]
    wanted = [f > 0 for f in (val_fraction, test_fraction)]
    if len(tracks) < 1 + sum(wanted):
        raise ValenceError(f"need at least {1 + sum(wanted)} distinct tracks to split, "
                           f"got {len(tracks)}")
    # Each split asked for gets at least one track; train keeps at least one.
    n_val = min(max(round(val_fraction * len(tracks)), int(wanted[0])), len(tracks) - 1 - wanted[1])
    n_test = min(max(round(test_fraction * len(tracks)), int(wanted[1])), len(tracks) - 1 - n_val)
    order = np.random.default_rng(seed).permutation(len(tracks))
    split = np.zeros(len(tracks), dtype=np.int8)
    split[order[:n_test]] = 2
    split[order[n_test:n_test + n_val]] = 1
    rank = np.empty(len(tracks), dtype=np.int64)
    rank[by_id] = np.arange(len(tracks))
    which = split[rank[codes]]
    return tuple(frame[which == k].reset_index(drop=True) for k in (0, 1, 2))


def data_warnings(frame, val, test):
    """Return warnings about data too small or suspicious for the test figures to mean much."""
    warnings = []
    copies = int(frame.duplicated(subset=[c for c in KAGGLE_COLUMNS if c in frame]).sum())
    if copies and copies >= COPIES_SHARE * len(frame):
        warnings.append(f"{copies:,} of {len(frame):,} rows are exact copies of an earlier row (every column the "
                        f"same; a file appended to itself?): copies count twice in training and in the test figures")
    small = [f"{len(part):,} {name} {'row' if len(part) == 1 else 'rows'}"
             for name, part in (("validation", val), ("test", test)) if len(part) < MIN_SPLIT_ROWS]
    if small:
        warnings.append(f"only {' and '.join(small)}: too few for early stopping and the test figures to mean "
                        f"much (at least {MIN_SPLIT_ROWS} each); use more data or a larger --val-fraction")
    return warnings
