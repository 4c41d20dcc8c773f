"""Score a data file into a catalog: streamed in chunks, one entry per track, swapped in whole.

The file is never held in memory: each chunk of rows is predicted (while the chunk
before it is written) and stored as listings, one per row: their features in the
catalog's listings table, their predictions in a scratch file beside it. The
predictions are then read back sorted by track_id, in batches grouped with numpy,
so a track listed under several genres in different parts of the file still
becomes one entry (per-genre predictions and their mean), with no Python loop
over the tracks; ranges of track_ids are grouped at once, each into a file of its
own that is copied in. Indexes are built once the rows are in.
"""
import collections
import datetime
import functools
import json
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import threadpoolctl

from valence.config import CLASS_NAMES, ValenceError
from valence.data.load import IF_PRESENT, LoadReport, iter_feature_chunks
from valence.fileio import atomic_path
from valence.forks import FORKS, frozen_heap, start_forked
from valence.model.predictor import load_models
from valence.catalog.sql import CATALOG_FILE, LISTING_COLUMNS, is_postgres, normalise, shown_target
from valence.catalog.sqlite import APP_ID, NUMBERS, SCORED, SqliteWriter, scored_by_track, scratch_path, write_tracks

CHUNK_ROWS = 50_000  # rows read, predicted and stored at a time: bounds the memory of a build
PREDICTING_PROCESSES = 2  # the chunks a build predicts at once (the next chunk's, while one is written)
GROUPING_PROCESSES = 2  # the ranges of track_ids grouped into tracks at once (while the listings are indexed)
SAMPLE_EVERY = 64  # of the listings' track_ids, those sampled for the ranges' bounds
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
            report = write_catalog(data_path, models, staged, chunk_rows, loaded, staged=True)
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


def write_catalog(data_path, models, path, chunk_rows=CHUNK_ROWS, frame_and_report=None, staged=False):
    """Write the catalog file at `path` (a new file); return its BuildReport. `staged`: the file is only copied
    into PostgreSQL (SqliteWriter)."""
    report = BuildReport(target=str(path), model_version=models.version)
    if frame_and_report is None:
        loaded = LoadReport(path=str(data_path))
        chunks = (chunk for chunk, _bad in iter_feature_chunks(data_path, chunksize=chunk_rows, report=loaded,
                                                               require_valence=IF_PRESENT))
    else:
        frame, loaded = frame_and_report
        chunks = (frame.iloc[i:i + chunk_rows] for i in range(0, len(frame), chunk_rows))
    writer = SqliteWriter(path, staged)
    try:
        sample = []  # every SAMPLE_EVERY-th track_id, where the grouping processes split the tracks
        for chunk, result in predicted(chunks, models.predictor):
            writer.add_listings(*listing_rows(chunk, result, report.rows))
            sample += chunk["track_id"].iloc[::SAMPLE_EVERY].tolist()
            report.rows += len(chunk)
        report.skipped, report.bad_lines = dict(loaded.skipped), list(loaded.bad_lines)
        if report.rows == 0:
            raise ValenceError(f"no usable rows in {data_path} ({loaded.summary()}); "
                               "the catalog was not written")
        report.tracks = add_tracks(writer, sample)
        writer.finish({
            "model_version": models.version, "rows": report.rows, "tracks": report.tracks,
            "skipped": sum(report.skipped.values()), "data": Path(data_path).name, "data_sha256": loaded.sha256,
            "moods": "yes" if models.predictor.classification is not None else "no",
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        })
    finally:
        writer.close()
    return report


def add_tracks(writer, sample):
    """Group the writer's scored listings into tracks and add them; return how many there are.

    On Linux GROUPING_PROCESSES forked processes each group a range of track_ids (split at quantiles of the
    `sample` of track_ids) into a file of their own, while this one indexes the listings; the files are copied
    in, in track_id order. Elsewhere one thread groups them all.
    """
    sample = sorted(set(map(str, sample)))
    parts = GROUPING_PROCESSES if FORKS else 1
    splits = sorted({sample[len(sample) * k // parts] for k in range(1, parts)}) if len(sample) >= parts else []
    bounds = list(zip([None, *splits], [*splits, None]))
    part_paths = [scratch_path(writer.path, f"tracks{k}") for k in range(len(bounds))]
    if FORKS:
        context = multiprocessing.get_context("fork")
        stop = context.Event()
        pool = ProcessPoolExecutor(max_workers=len(bounds), mp_context=context, initializer=_start_grouping,
                                   initargs=(stop, os.getpid()))
    else:
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-group")
    writer.end_listings()  # the scored file is complete before anything reads it
    try:
        with frozen_heap(), pool:
            try:
                given = () if FORKS else (stop,)  # a forked process has it from _start_grouping
                futures = [pool.submit(_group_tracks, writer.scored_path, low, high, part, *given)
                           for (low, high), part in zip(bounds, part_paths)]
                writer.index_listings()
                tracks = 0
                for future, part in zip(futures, part_paths):
                    tracks += _result(future, "grouping the catalog's listings by track")
                    writer.add_tracks_from(part)
                    part.unlink()
            except BaseException:
                stop.set()  # the grouping stops at its next batch, not at the end of its range (Ctrl-C)
                raise
    finally:
        for part in part_paths:
            part.unlink(missing_ok=True)
    return tracks


_STOP = None  # in a forked grouping process: the build's stop event


def _start_grouping(stop, build_pid):
    """Start a grouping process (forks.start_forked); the build sets `stop` to stop it."""
    global _STOP
    _STOP = stop
    start_forked(build_pid)


def _group_tracks(scored_path, low, high, part_path, stop=None):
    """Write the tracks of the scored listings with track_ids from `low` up to `high` to a new file at
    `part_path`; return how many there are. Stops between batches once the build sets `stop` (given to a
    thread; a forked process has it from _start_grouping)."""
    stop = _STOP if stop is None else stop

    def batches():
        for batch in scored_by_track(scored_path, low, high):
            if stop.is_set():
                raise ValenceError(f"the build stopped before the tracks in {part_path} were grouped")
            yield batch
    return write_tracks(part_path, _track_batches(batches()))


def _track_batches(batches):
    """Yield the track rows of sorted batches of scored listings, a track whose listings go on in the next
    batch held back until its last listing is read."""
    pending = []  # the listings of the last track read, which may go on in the next batch
    for batch in batches:
        listings = pending + batch
        cut = len(listings) - 1
        while cut > 0 and listings[cut - 1][0] == listings[-1][0]:
            cut -= 1
        pending = listings[cut:]
        yield track_rows(listings[:cut])
    yield track_rows(pending)


def predicted(chunks, predictor):
    """Yield (chunk, its predictions) for the non-empty chunks, in order, predicted while the chunks before
    them are written. On Linux two forked processes predict (each the next chunk in turn), as in a thread the
    prediction's Python parts (the encoder's lookups) and the writer's take turns on the GIL; elsewhere one
    thread does. At most three chunks are held at a time.
    """
    if FORKS:
        workers = PREDICTING_PROCESSES
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_adopt, initargs=(predictor, os.getpid()))
        predict = _predict_adopted
    else:
        workers = 1
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="catalog-predict")
        predict = functools.partial(predictor.predict, honest=True)
    # One BLAS thread predicts (forked processes inherit the setting), as in an API worker (VALENCE_THREADS): the
    # build's processes keep every core busy, and a second thread per process only waited for the first (0.15 to
    # 0.28 s more CPU for each 50,000-row chunk); a product's last bit depends on the threads, so a catalog's
    # numbers are those of one thread wherever it is built.
    with frozen_heap(), threadpoolctl.threadpool_limits(1, user_api="blas"), pool:
        waiting = collections.deque()
        for chunk in chunks:
            if not len(chunk):
                continue
            if len(waiting) == workers:
                done, future = waiting.popleft()
                yield done, _result(future)
            # Tracks the models learned from are predicted by a model that did not (honest.py).
            waiting.append((chunk, pool.submit(predict, chunk)))
        while waiting:
            done, future = waiting.popleft()
            yield done, _result(future)


def _result(future, work="predicting the catalog's rows"):
    """A process's result; one that died (killed, out of memory) is a ValenceError."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise ValenceError(f"a process {work} ended without a result (killed, or out of memory?); the catalog "
                           "was not written") from None


_ADOPTED = None  # the predictor of a forked prediction process (each build forks its own)


def _adopt(predictor, build_pid):
    """Start a prediction process (forks.start_forked): its predictor inherited by the fork, not pickled."""
    global _ADOPTED
    _ADOPTED = predictor
    start_forked(build_pid)


def _predict_adopted(chunk):
    return _ADOPTED.predict(chunk, honest=True)


def listing_rows(chunk, result, first_seq):
    """Return a chunk's listings (rows of LISTING_COLUMNS) and their scored parts (seq, then SCORED),
    numbered from first_seq."""
    n = len(chunk)
    seq = range(first_seq, first_seq + n)
    listings = zip(*(seq if name == "seq" else _column(chunk, name) for name in LISTING_COLUMNS))
    numbers = np.full((n, len(NUMBERS)), np.nan)
    if "valence" in chunk:  # a file without valence (songs of one's own) is listed without an expected value
        numbers[:, 0] = chunk["valence"].to_numpy(dtype=np.float64)
    if result.valence is not None:  # a classification-only model: moods and no valence
        numbers[:, 1] = result.valence
        numbers[:, 5] = result.sigma
        numbers[:, 7] = result.group
    if result.mood_probabilities is not None:
        numbers[:, 2:5] = result.mood_probabilities
    numbers[:, 6] = chunk["popularity"].to_numpy(dtype=np.float64)
    packed = np.ascontiguousarray(numbers, dtype="<f8").tobytes()
    width = 8 * len(NUMBERS)
    blobs = [packed[i:i + width] for i in range(0, len(packed), width)]
    # A track's warnings are the sorted union of its listings': a listing keeps its own in that form.
    warnings = _json_lists(result.warnings)
    scored = zip(seq, *(_column(chunk, name) for name in SCORED[:4]), warnings, blobs)
    return listings, scored


def _column(chunk, name):
    """Return a column of a chunk as a list, or Nones where the file has no such column."""
    return chunk[name].tolist() if name in chunk else [None] * len(chunk)


def track_rows(listings):
    """Return the catalog rows (TRACK_COLUMNS) of the tracks whose scored listings (rows of SCORED, sorted by
    track_id, in file order within a track) these are, every listing of each track included.

    A track listed under several genres has the same features and valence in each
    listing, but genre is a model input: its prediction is the mean of its per-genre
    predictions, and so are its mood probabilities; names and popularity are the
    first listing's. Sums run in file order (np.bincount adds one listing after another, as the in-memory
    catalog does), so the means are those of a loop over the listings. Without a regression model the
    predictions are None and the moods are averaged all the same. The interval's difficulty is the
    listings' mean too; its group (artist unseen) is the same in every listing.
    """
    if not listings:
        return []
    track_ids, genres, artists, names, warnings, blobs = zip(*listings)
    numbers = np.frombuffer(b"".join(blobs), dtype="<f8").reshape(len(listings), len(NUMBERS))
    ids = np.array(track_ids, dtype=object)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, len(ids)])
    codes = np.repeat(np.arange(len(starts)), counts)
    present = ~np.isnan(numbers)
    # Sums of the listings that have each number, divided by all of the track's listings; None where its
    # first listing has none (a file without valence, a model without moods or without valence).
    sums = np.stack([np.bincount(codes, weights=np.where(present[:, k], numbers[:, k], 0.0), minlength=len(starts))
                     for k in range(6)], axis=1)
    means = sums / counts[:, None]
    first = numbers[starts]
    mood = np.array(CLASS_NAMES, dtype=object)[np.argmax(sums[:, 2:5], axis=1)]  # the first of equal sums
    columns = [np.where(np.isnan(first[:, k]), None, means[:, k]).tolist() for k in range(6)]
    columns.append(np.where(np.isnan(first[:, 2]), None, mood).tolist())
    expected, prediction, p_sad, p_neutral, p_happy, sigma, mood = columns
    popularity = np.where(np.isnan(first[:, 6]), None, first[:, 6]).tolist()
    unseen = np.where(np.isnan(first[:, 7]), None, np.nan_to_num(first[:, 7]).astype(np.int64)).tolist()
    per_genre = _genre_predictions(genres, numbers[:, 1], starts, counts)
    track_warnings = _track_warnings(warnings, starts, counts)
    first_of = starts.tolist()
    track_ids, artists, names = ([column[i] for i in first_of] for column in (track_ids, artists, names))
    artist_keys = {artist: normalise(artist) for artist in set(artists)}
    return list(zip(track_ids, artists, names, [artist_keys[artist] for artist in artists], map(normalise, names),
                    popularity, expected, prediction, per_genre, track_warnings, mood, p_sad, p_neutral, p_happy,
                    sigma, unseen))


def _genre_predictions(genres, predictions, starts, counts):
    """Return each track's {genre: prediction} as JSON, genres in file order (a genre listed twice: its last),
    written as json.dumps writes the dict: each listing's `"genre":prediction`, joined."""
    keys = {genre: json.dumps(genre) for genre in set(genres)}
    values = ["null" if value is None else repr(value)
              for value in np.where(np.isnan(predictions), None, predictions).tolist()]
    pairs = [f"{keys[genre]}:{value}" for genre, value in zip(genres, values)]
    text = []
    for start, count in zip(starts.tolist(), counts.tolist()):
        end = start + count
        if count > 1 and len(set(genres[start:end])) < count:  # listed twice under one genre: the dict's pairs
            last = dict(zip(genres[start:end], pairs[start:end]))
            text.append("{" + ",".join(last.values()) + "}")
        else:
            text.append("{" + ",".join(pairs[start:end]) + "}")
    return text


def _track_warnings(warnings, starts, counts):
    """Return each track's warnings: the sorted union of its listings' as JSON, or None when there are none."""
    text, unions, parsed = [], {}, {}
    for start, count in zip(starts.tolist(), counts.tolist()):
        listed = warnings[start:start + count]
        if count == 1 or listed.count(listed[0]) == count:  # alike, as an unseen artist's listings are
            text.append(listed[0])
        else:
            for listing in listed:
                if listing not in parsed:
                    parsed[listing] = json.loads(listing) if listing else ()
            unions[len(text)] = {found for listing in listed for found in parsed[listing]}
            text.append(None)
    for place, union in zip(unions, _json_lists(unions.values())):
        text[place] = union
    return text


def _json_lists(lists):
    """Return each list of strings as json.dumps(sorted(set(strings)), separators=(",", ":")) writes it, or None
    for an empty one. Each distinct list and string is encoded once: a catalog of new artists has a warning on
    almost every listing (the same ones on an artist's listings), and a json.dumps per listing took a sixth of a
    build's time."""
    encoded, texts, out = {}, {}, []
    for strings in lists:
        if not strings:
            out.append(None)
            continue
        key = tuple(strings)
        text = texts.get(key)
        if text is None:
            for string in strings:
                if string not in encoded:
                    encoded[string] = json.dumps(string)
            text = texts[key] = "[" + ",".join([encoded[string] for string in sorted(set(strings))]) + "]"
        out.append(text)
    return out
