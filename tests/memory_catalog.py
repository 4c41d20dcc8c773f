"""The in-memory catalog: the reference the SQLite and PostgreSQL stores are tested against."""
import bisect

import numpy as np
import pandas as pd
import threadpoolctl

from valence import config
from valence.catalog.names import (ARTIST_CUTOFF, CLOSE_ARTISTS, MAX_FUZZY, MAX_FUZZY_TRACKS, SEARCH_RESULTS,
                                   SUGGESTIONS, TRACK_CUTOFF, closest, normalise, rank_pairs)

PREDICT_CHUNK = 20_000  # rows per forward pass: bounds the activations' memory


def _name_key(artist_name, track_name):
    """Return the index key of an (artist, track) pair."""
    return f"{normalise(artist_name)}\n{normalise(track_name)}"


def predict_rows(predictor, frame):
    """Predict every row of a frame in chunks, honestly as a catalog does (tracks the model learned from by a
    model that did not); return (valence, probabilities|None, warnings, sigma, group)."""
    # The track name too: the encoder reads its version marker (remix, live, ...); track_id and valence
    # tell the rows the model learned from.
    features = frame[[*config.FEATURE_COLUMNS, "artist_name",
                      *(name for name in ("track_name", "track_id", "valence") if name in frame)]]
    valence, probabilities, warnings, sigma, group = [], [], [], [], []
    for start in range(0, len(frame), PREDICT_CHUNK):
        with threadpoolctl.threadpool_limits(1, user_api="blas"):  # as a build predicts (catalog/build.py)
            result = predictor.predict(features.iloc[start:start + PREDICT_CHUNK], honest=True)
        valence.append(np.asarray(result.valence, dtype=np.float64))
        sigma.append(np.asarray(result.sigma, dtype=np.float64))
        group.append(np.asarray(result.group, dtype=np.int64))
        if result.mood_probabilities is not None:
            probabilities.append(np.asarray(result.mood_probabilities, dtype=np.float64))
        warnings.extend(result.warnings)
    joined = np.concatenate(probabilities) if probabilities else None
    return np.concatenate(valence), joined, warnings, np.concatenate(sigma), np.concatenate(group)


class Catalog:
    """Tracks of the catalog CSV, one entry per track_id, with their predictions."""

    def __init__(self, frame, predictor):
        """Group rows by track_id, predict each row once and index the tracks by name and id."""
        frame = frame.reset_index(drop=True)
        self.n_rows = len(frame)
        valence, probabilities, row_warnings, sigma, group = predict_rows(predictor, frame)
        self.intervals = getattr(getattr(predictor, "regression", None), "intervals", None)
        codes, track_ids = pd.factorize(frame["track_id"])
        first_rows = np.unique(codes, return_index=True)[1]
        self.track_ids = track_ids.tolist()
        self.artist_names = frame["artist_name"].to_numpy()[first_rows].tolist()
        self.track_names = frame["track_name"].to_numpy()[first_rows].tolist()
        self.popularity = frame["popularity"].to_numpy()[first_rows].tolist()
        counts = np.bincount(codes)
        self.expected = (np.bincount(codes, weights=frame["valence"].to_numpy()) / counts).tolist()
        # A track listed under several genres has the same features and valence
        # in each listing, but genre is a model input: its prediction is the
        # mean of its per-genre predictions, and so are its mood probabilities.
        self.prediction = (np.bincount(codes, weights=valence) / counts).tolist()
        self.interval_parts = list(zip((np.bincount(codes, weights=sigma) / counts).tolist(),
                                       group[first_rows].tolist()))
        genres = [{} for _ in self.track_ids]
        for code, genre, value in zip(codes.tolist(), frame["genre"].tolist(), valence.tolist()):
            genres[code][genre] = value
        self.genre_predictions = genres
        self.warnings = [()] * len(self.track_ids)
        for row in (i for i, found in enumerate(row_warnings) if found):
            self.warnings[codes[row]] = tuple(sorted(set(self.warnings[codes[row]]) | set(row_warnings[row])))
        self.mood_probabilities = self.moods = None
        if probabilities is not None:
            sums = np.zeros((len(self.track_ids), len(config.CLASS_NAMES)))
            np.add.at(sums, codes, probabilities)
            self.mood_probabilities = (sums / counts[:, None]).tolist()
            self.moods = [config.CLASS_NAMES[k] for k in sums.argmax(axis=1).tolist()]
        self.by_id = {track_id: i for i, track_id in enumerate(self.track_ids)}
        # The listings' features, for explaining a track: numbers in one array, texts as codes into
        # their distinct values (a few MB on the full catalog; a pandas frame costs 20 ms a lookup).
        self.numeric_features = frame[list(config.NUMERIC_FEATURES)].to_numpy(dtype=np.float64)
        self.text_features = {column: pd.factorize(frame[column]) for column in (*config.CATEGORICAL_FEATURES,
                                                                                 "artist_name")}
        self.track_of_row = codes
        self._build_name_indexes()

    def _build_name_indexes(self):
        """Index tracks by normalised (artist, track), artist and track name, best match first."""
        # Most popular first, then by track_id: the same answer on every start.
        order = np.lexsort((np.array(self.track_ids), -np.array(self.popularity))).tolist()
        folded = {name: normalise(name) for name in set(self.artist_names)}
        artists = [folded[name] for name in self.artist_names]
        tracks = [normalise(name) for name in self.track_names]
        self.by_name, self.by_artist, self.by_track_name = {}, {}, {}
        for i in order:
            artist, track = artists[i], tracks[i]
            self.by_name.setdefault(f"{artist}\n{track}", []).append(i)
            self.by_artist.setdefault(artist, []).append(i)
            self.by_track_name.setdefault(track, []).append(i)
        self.folded_artist_names, self.folded_track_names = artists, tracks
        self.artist_search = SubstringIndex(sorted(self.by_artist))
        self.artist_search_names = [artist[:MAX_FUZZY] for artist in self.artist_search.names]
        self.sorted_track_names = sorted(self.by_track_name)

    def __len__(self):
        """Return the number of distinct tracks."""
        return len(self.track_ids)

    def entry(self, i):
        """Return the JSON-able answer for track number i."""
        answer = {
            "track_id": self.track_ids[i],
            "artist_name": self.artist_names[i],
            "track_name": self.track_names[i],
            "genres": list(self.genre_predictions[i]),
            "popularity": self.popularity[i],
            "expected": self.expected[i],
            "prediction": self.prediction[i],
            "genre_predictions": dict(self.genre_predictions[i]),
            "warnings": list(self.warnings[i]),
            "interval_parts": self.interval_parts[i],
        }
        if self.moods is not None:
            answer["mood"] = self.moods[i]
            answer["mood_probabilities"] = dict(zip(config.CLASS_NAMES, self.mood_probabilities[i]))
        return answer

    def served(self, answer, level=0.9):
        """Return a store's answer as GET /predict serves it: the interval at `level` made of its parts."""
        answer = dict(answer)
        sigma, group = answer.pop("interval_parts")
        low, high = self.intervals.bounds([answer["prediction"]], [sigma], [group], level)
        answer["interval"] = {"level": level, "low": float(low[0]), "high": float(high[0])}
        return answer

    def brief(self, i):
        """Return the short form of track number i used in match and suggestion lists."""
        return {"track_id": self.track_ids[i], "artist_name": self.artist_names[i],
                "track_name": self.track_names[i], "genres": list(self.genre_predictions[i])}

    def by_track_id(self, track_id):
        """Return the answer for a track_id, or None."""
        i = self.by_id.get(track_id)
        return None if i is None else self.entry(i)

    def by_names(self, artist_name, track_name):
        """Return the answer for the best-matching track with its other matches, or None."""
        matches = self.by_name.get(_name_key(artist_name, track_name))
        if not matches:
            return None
        answer = self.entry(matches[0])
        answer["other_matches"] = [self.brief(i) for i in matches[1:]]
        return answer

    def suggest(self, artist_name, track_name):
        """Return up to a few known tracks whose names are close to the ones asked for, closest first."""
        artist, track = normalise(artist_name)[:MAX_FUZZY], normalise(track_name)[:MAX_FUZZY]
        found = list(self.by_track_name.get(track, ())[:SUGGESTIONS])  # right song, other artist
        if artist in self.by_artist:
            artists = [artist]
        else:
            close = closest(artist, self.artist_search_names, CLOSE_ARTISTS, ARTIST_CUTOFF)
            artists = [self.artist_search.names[position] for position in close]
        for close_artist in artists:
            # The artist's most popular tracks are enough to find a misspelt one.
            found.extend(self._close_tracks(track, self.by_artist[close_artist][:MAX_FUZZY_TRACKS]))
        found = list(dict.fromkeys(found))
        pairs = [(self.folded_artist_names[i][:MAX_FUZZY], self.folded_track_names[i][:MAX_FUZZY]) for i in found]
        return [self.brief(found[position]) for position in rank_pairs(artist, track, pairs)[:SUGGESTIONS]]

    def _close_tracks(self, track, candidates):
        """Return up to SUGGESTIONS of the candidate tracks whose names are close to track, best first."""
        first = {}  # one track per name: the most popular
        for i in candidates:
            first.setdefault(self.folded_track_names[i][:MAX_FUZZY], i)
        names = list(first)
        return [first[names[position]] for position in closest(track, names, SUGGESTIONS, TRACK_CUTOFF)]

    def song_rows(self, track_id):
        """Return the features of a track's listings (one row per genre), or None when it is unknown."""
        i = self.by_id.get(track_id)
        if i is None:
            return None
        rows = np.flatnonzero(self.track_of_row == i)
        columns = {name: self.numeric_features[rows, j] for j, name in enumerate(config.NUMERIC_FEATURES)}
        columns.update({name: values[codes[rows]] for name, (codes, values) in self.text_features.items()})
        return pd.DataFrame(columns)

    def search(self, query, limit=SEARCH_RESULTS):
        """Return up to limit songs for a partly typed artist or track name, best matches first.

        Artists whose name starts with the query come first, then those containing it, then tracks
        whose name starts with it; each artist's most popular songs first, one artist after another.
        """
        text = normalise(query)[:MAX_FUZZY]
        if not text:
            return []
        artists = _starting_with(self.artist_search.names, text)
        artists += [name for name in self.artist_search.containing(text) if not name.startswith(text)]
        artists.sort(key=lambda name: (not name.startswith(text), -self.popularity[self.by_artist[name][0]]))
        found = _round_robin([self.by_artist[name] for name in artists[:limit]], limit)
        for name in _starting_with(self.sorted_track_names, text):
            if len(found) >= limit:
                break
            found.extend(i for i in self.by_track_name[name] if i not in found)
        return [self.brief(i) for i in found[:limit]]


def _starting_with(sorted_names, prefix, most=1000):
    """Return the names of a sorted list that start with prefix (at most `most`)."""
    start = bisect.bisect_left(sorted_names, prefix)
    out = []
    for name in sorted_names[start:start + most]:
        if not name.startswith(prefix):
            break
        out.append(name)
    return out


def _round_robin(lists, limit):
    """Return up to limit items taking the first of each list, then the second of each, and so on."""
    out = []
    for depth in range(limit):
        for items in lists:
            if depth < len(items) and len(out) < limit:
                out.append(items[depth])
    return out


class SubstringIndex:
    """Names indexed by their three-character pieces, to find those that contain a text quickly."""

    def __init__(self, names):
        """Index every name by its trigrams."""
        self.names = list(names)
        postings = {}
        for i, name in enumerate(self.names):
            for gram in {name[j:j + 3] for j in range(len(name) - 2)}:
                postings.setdefault(gram, []).append(i)
        self.postings = {gram: np.array(ids, dtype=np.int32) for gram, ids in postings.items()}

    def containing(self, text, most=1000):
        """Return up to `most` names that contain text (three characters or more), in index order."""
        grams = {text[i:i + 3] for i in range(len(text) - 2)}
        if not grams or any(gram not in self.postings for gram in grams):
            return []
        lists = sorted((self.postings[gram] for gram in grams), key=len)
        candidates = lists[0]
        for ids in lists[1:]:
            candidates = np.intersect1d(candidates, ids, assume_unique=True)
        return [self.names[i] for i in candidates[:most * 4] if text in self.names[i]][:most]


def load_catalog(path, predictor):
    """Read the catalog CSV with the project's loader and build the Catalog."""
    from valence.data.load import load_dataset  # imported here: the app works without a catalog

    frame, _report = load_dataset(path, require_valence=True)
    if frame.empty:
        raise config.ValenceError(f"{path}: no usable rows with a valence")
    return Catalog(frame, predictor)

