"""Score a data file into a catalog: streamed in chunks, one entry per track, swapped in whole.

The file is never held in memory: each chunk of rows is predicted and stored as
listings (one per row) in SQLite's temporary table; the listings are then read
back sorted by track_id, so a track listed under several genres in different
parts of the file still becomes one entry (per-genre predictions and their mean).
"""
import datetime
import itertools
import json
import tempfile
import time
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import numpy as np

from valence.config import CLASS_NAMES, ValenceError
from valence.data.load import IF_PRESENT, LoadReport, iter_feature_chunks
from valence.fileio import atomic_path
from valence.model.predictor import load_models
from valence.catalog.sql import CATALOG_FILE, is_postgres, normalise, shown_target
from valence.catalog.sqlite import APP_ID, OTHER_FEATURES, SCORED, SqliteWriter

CHUNK_ROWS = 50_000  # rows read, predicted and stored at a time: bounds the memory of a build
TRACK_BATCH = 10_000
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class BuildReport:
    """What a build wrote: where, with which model, how many rows and tracks, what was skipped."""

    target: str
    model_version: str
    rows: int = 0
    tracks: int = 0
    skipped: dict = field(default_factory=dict)
    bad_lines: list = field(default_factory=list)
    seconds: float = 0.0

    def summary(self):
        """Return one line saying what was built."""
        skipped = sum(self.skipped.values())
        return (f"catalog: {self.tracks:,} tracks from {self.rows:,} rows (skipped {skipped:,}), scored with "
                f"model {self.model_version}, written to {self.target} in {self.seconds:.1f} s")


def default_catalog(model_dir):
    """Return the catalog file a model directory's models are served with."""
    return Path(model_dir) / CATALOG_FILE


def build_catalog(data_path, model_dir, target=None, log=print, chunk_rows=CHUNK_ROWS, models=None, loaded=None):
    """Score `data_path` with the models in `model_dir` into the catalog at `target`; return a BuildReport.

    `loaded`, the (clean frame, LoadReport) that load_dataset already read from `data_path` (a training
    run holds them), is scored instead of reading the file again: the same rows, parsed once.

    A file target is written beside itself and renamed over the old one when complete;
    a PostgreSQL target gets new tables, swapped in by one transaction. Either way the
    previous catalog serves until then, and stays if the build fails or is killed.
    """
    started = time.perf_counter()
    target = target if target is not None else default_catalog(model_dir)
    postgres = is_postgres(target)
    if postgres:
        from valence.catalog.postgres import check_writable, publish

        check_writable(str(target))  # before the scoring, which may take minutes
    else:
        _check_file_target(Path(target), data_path)
    models = models if models is not None else load_models(model_dir)
    log(f"scoring {data_path} into the catalog {shown_target(target)} with model {models.version}")
    if postgres:
        with tempfile.TemporaryDirectory(prefix="valence-catalog-") as folder:
            staged = Path(folder) / CATALOG_FILE
            report = write_catalog(data_path, models, staged, chunk_rows, loaded)
            publish(staged, str(target), log)
    else:
        with atomic_path(target) as temporary:
            report = write_catalog(data_path, models, temporary, chunk_rows, loaded)
    report.target, report.seconds = shown_target(target), time.perf_counter() - started
    return report


def _check_file_target(target, data_path):
    """Refuse a target that is a directory, the data file, or a file that is not a catalog (it would be lost)."""
    if target.is_dir():
        raise ValenceError(f"--catalog {target} is a directory; give a file path such as {target / CATALOG_FILE}")
    if not target.exists() or target.stat().st_size == 0:
        return
    if target.resolve() == Path(data_path).resolve():
        raise ValenceError(f"--catalog {target} is the data file; choose another path so the data is kept")
    with open(target, "rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC or not _is_catalog(target):
        raise ValenceError(f"--catalog {target} exists and is not a catalog; choose another path "
                           "(it is left as it is)")


def _is_catalog(path):
    """Return whether a SQLite file is (or was meant to be) a catalog of this tool."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = 'app'").fetchone()
    except sqlite3.DatabaseError as error:
        return "malformed" in str(error)  # a damaged catalog may be rebuilt
    return row is not None and row[0] == APP_ID


def write_catalog(data_path, models, path, chunk_rows=CHUNK_ROWS, frame_and_report=None):
    """Write the catalog file at `path` (a new file); return its BuildReport."""
    report = BuildReport(target=str(path), model_version=models.version)
    if frame_and_report is None:
        loaded = LoadReport(path=str(data_path))
        chunks = (chunk for chunk, _bad in iter_feature_chunks(data_path, chunksize=chunk_rows, report=loaded,
                                                               require_valence=IF_PRESENT))
    else:
        frame, loaded = frame_and_report
        chunks = (frame.iloc[i:i + chunk_rows] for i in range(0, len(frame), chunk_rows))
    writer = SqliteWriter(path)
    try:
        for chunk in chunks:
            if len(chunk):
                # Tracks the models learned from are predicted by a model that did not (honest.py).
                writer.add_listings(listing_rows(chunk, models.predictor.predict(chunk, honest=True), report.rows))
                report.rows += len(chunk)
        report.skipped, report.bad_lines = dict(loaded.skipped), list(loaded.bad_lines)
        if report.rows == 0:
            raise ValenceError(f"no usable rows in {data_path} ({loaded.summary()}); "
                               "the catalog was not written")
        batch = []
        for _track_id, listings in itertools.groupby(writer.listings_by_track(), key=itemgetter(1)):
            batch.append(track_row(list(listings)))
            if len(batch) == TRACK_BATCH:
                report.tracks += _flush(writer, batch)
        report.tracks += _flush(writer, batch)
        writer.finish({
            "model_version": models.version, "rows": report.rows, "tracks": report.tracks,
            "skipped": sum(report.skipped.values()), "data": Path(data_path).name, "data_sha256": loaded.sha256,
            "moods": "yes" if models.predictor.classification is not None else "no",
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        })
    finally:
        writer.close()
    return report


def _flush(writer, batch):
    """Store a batch of track rows and empty it; return how many there were."""
    writer.add_tracks(batch)
    count = len(batch)
    batch.clear()
    return count


def listing_rows(chunk, result, first_seq):
    """Return the listing rows of a chunk of the data file and its predictions, numbered from first_seq."""
    n = len(chunk)
    moods = [[None] * n] * len(CLASS_NAMES)
    if result.mood_probabilities is not None:
        moods = np.asarray(result.mood_probabilities, dtype=np.float64).T.tolist()
    valence = [None] * n  # a classification-only model: moods and no valence
    if result.valence is not None:
        valence = np.asarray(result.valence, dtype=np.float64).tolist()
    warnings = [json.dumps(list(found)) if found else None for found in result.warnings]
    sigma = unseen = [None] * n
    if result.valence is not None:
        sigma, unseen = np.asarray(result.sigma, dtype=np.float64).tolist(), np.asarray(result.group).tolist()
    # A file without valence (songs of one's own, to be predicted) is listed without an expected value.
    columns = [chunk[name].tolist() if name in chunk else [None] * n for name in SCORED[1:7]]
    others = [chunk[name].tolist() for name in OTHER_FEATURES]
    return zip(range(first_seq, first_seq + n), *columns, valence, *moods, warnings, sigma, unseen, *others)


def track_row(listings):
    """Return one track's catalog row from its listings, in file order.

    A track listed under several genres has the same features and valence in each
    listing, but genre is a model input: its prediction is the mean of its per-genre
    predictions, and so are its mood probabilities; names and popularity are the
    first listing's. (Sums run in file order, as the in-memory catalog's did.) Without a
    regression model the predictions are None and the moods are averaged all the same. The interval's
    difficulty is the listings' mean too; its group (artist unseen) is the same in every listing.
    """
    _seq, track_id, _genre, artist, track, popularity = listings[0][:6]
    genres, warnings = {}, set()
    expected = prediction = sigma = 0.0
    sums = [0.0] * len(CLASS_NAMES)
    for listing in listings:
        genres[listing[2]] = listing[7]
        if listing[6] is not None:
            expected += listing[6]
        if listing[7] is not None:
            prediction += listing[7]
            sigma += listing[12]
        if listing[8] is not None:
            sums = [total + p for total, p in zip(sums, listing[8:11])]
        if listing[11]:
            warnings.update(json.loads(listing[11]))
    n = len(listings)
    prediction = prediction / n if listings[0][7] is not None else None
    sigma = sigma / n if prediction is not None else None
    mood, means = None, [None] * len(CLASS_NAMES)
    if listings[0][8] is not None:
        mood = CLASS_NAMES[max(range(len(sums)), key=sums.__getitem__)]
        means = [total / n for total in sums]
    expected = expected / n if listings[0][6] is not None else None  # a file without valence: none measured
    return (track_id, artist, track, normalise(artist), normalise(track), popularity, expected, prediction,
            json.dumps(genres, separators=(",", ":")),
            json.dumps(sorted(warnings), separators=(",", ":")) if warnings else None, mood, *means, sigma,
            listings[0][13])
