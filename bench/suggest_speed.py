"""Close-name suggestions: rapidfuzz (the catalog's) against the earlier difflib + trigram code.

    python bench/suggest_speed.py [--rows 232725] [--queries 400] [--seed 0]

Builds a catalog of generated rows (the Kaggle file's size; a stand-in predictor,
since only the names matter here) plus a prolific artist with 1,000 long, similar
track names (a composer's movements), then times not-found lookups (p50 and max
per lookup, both implementations on the same queries, interleaved) and measures
quality on misspelt names: transposed letters, dropped letters, changed case, in
the track name, the artist name or both. A lookup is what the API does: an exact
(case- and space-folded) name match first, the suggestions when there is none;
top-1 / top-5 count a track of the intended artist and title among the first
one / five tracks answered.
"""
import argparse
import difflib
import heapq
import os
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from memory_catalog import Catalog  # noqa: E402
from valence.catalog.names import MAX_FUZZY, MAX_FUZZY_TRACKS, SUGGESTIONS, normalise  # noqa: E402
from valence.data.synthetic import generate_dataset  # noqa: E402

PROLIFIC = "Johann Sebastian Bach"
WORDS = "Symphony Concerto Sonata No. in C Minor Major Op. Allegro Andante Adagio Presto con brio".split()


class ZeroPredictor:
    """Predict 0.5 for every row, without moods: building the catalog costs no model."""

    def predict(self, frame):
        return SimpleNamespace(valence=np.full(len(frame), 0.5), mood_probabilities=None,
                               warnings=[[] for _ in range(len(frame))])


# ---- the earlier code (valence/catalog.py before rapidfuzz), kept here as the baseline --------

def _trigrams(text):
    padded = f"  {text} "
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


class DifflibSuggest:
    """Artists: trigram postings, then difflib on the 50 best; tracks: 20 by trigrams, then difflib."""

    def __init__(self, catalog):
        self.catalog = catalog
        self.names = sorted(catalog.by_artist)
        postings = {}
        for i, name in enumerate(self.names):
            for gram in _trigrams(name):
                postings.setdefault(gram, []).append(i)
        self.postings = {gram: np.array(ids, dtype=np.int32) for gram, ids in postings.items()}

    def close_artists(self, query, n=3, cutoff=0.6, rarest=20, candidates=50):
        lists = sorted((self.postings[g] for g in _trigrams(query) if g in self.postings), key=len)[:rarest]
        if not lists:
            return []
        hits = np.bincount(np.concatenate(lists))
        top = np.argsort(-hits, kind="stable")[:candidates]
        return difflib.get_close_matches(query, [self.names[i] for i in top if hits[i]], n=n, cutoff=cutoff)

    def close_tracks(self, track, candidates):
        names = {normalise(self.catalog.track_names[i])[:MAX_FUZZY]: i for i in reversed(candidates)}
        grams = _trigrams(track)
        shortlist = heapq.nlargest(20, names, key=lambda name: len(grams & _trigrams(name)))
        return [names[name] for name in difflib.get_close_matches(track, shortlist, n=SUGGESTIONS, cutoff=0.5)]

    def __call__(self, artist_name, track_name):
        catalog = self.catalog
        artist, track = normalise(artist_name)[:MAX_FUZZY], normalise(track_name)[:MAX_FUZZY]
        found = list(catalog.by_track_name.get(track, ())[:SUGGESTIONS])
        artists = [artist] if artist in catalog.by_artist else self.close_artists(artist)
        for close in artists:
            found.extend(self.close_tracks(track, catalog.by_artist[close][:MAX_FUZZY_TRACKS]))
        return [catalog.brief(i) for i in list(dict.fromkeys(found))[:SUGGESTIONS]]


# ---- data and queries ---------------------------------------------------------------------------

def build_catalog(rows, seed):
    """Return a Catalog of `rows` generated rows plus 1,000 long, similar tracks of one artist."""
    import pandas as pd

    frame = generate_dataset(rows, seed=seed)
    rng = random.Random(seed)
    prolific = frame.iloc[:1000].copy()
    prolific["artist_name"] = PROLIFIC
    prolific["track_name"] = [" ".join(rng.choice(WORDS) for _ in range(10)) + f" {i}" for i in range(1000)]
    prolific["track_id"] = [f"BACH{i:018d}" for i in range(1000)]
    return Catalog(pd.concat([frame, prolific], ignore_index=True), ZeroPredictor())


def transpose(text, rng):
    spots = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()
             and text[i].lower() != text[i + 1].lower()]
    if not spots:
        return None
    i = rng.choice(spots)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def drop(text, rng):
    spots = [i for i, c in enumerate(text) if c.isalpha()]
    if len(spots) < 4:
        return None
    i = rng.choice(spots)
    return text[:i] + text[i + 1:]


def change_case(text, rng):
    changed = "".join(c.swapcase() if rng.random() < 0.5 else c for c in text)
    return changed if changed != text else text.swapcase()


MUTATIONS = {"transposed letters": transpose, "dropped letter": drop, "changed case": change_case}
FIELDS = ("track", "artist", "both")


def misspelt_queries(catalog, n, seed):
    """Yield (mutation, field, artist, track, wanted index) for n sampled tracks per mutation and field."""
    rng = random.Random(seed + 1)
    ordinary = [i for i, artist in enumerate(catalog.artist_names) if artist != PROLIFIC]
    for mutation, mutate in MUTATIONS.items():
        for field in FIELDS:
            made = 0
            while made < n:
                i = rng.choice(ordinary)
                artist, track = catalog.artist_names[i], catalog.track_names[i]
                if field in ("artist", "both"):
                    artist = mutate(artist, rng)
                if field in ("track", "both") and artist is not None:
                    track = mutate(track, rng)
                if artist is None or track is None:
                    continue
                made += 1
                yield mutation, field, artist, track, i


def prolific_queries(catalog, n, seed):
    """Return n not-found lookups of the prolific artist's long titles (artist right or misspelt)."""
    rng = random.Random(seed + 2)
    tracks = catalog.by_artist[normalise(PROLIFIC)]
    queries = []
    for k in range(n):
        i = rng.choice(tracks)
        title = catalog.track_names[i]
        title = [title[:-3] + "xyz", drop(title, rng), transpose(title, rng)][k % 3]
        queries.append((PROLIFIC if k % 2 else "Johann Sebastain Bach", title, i))
    return queries


# ---- measuring ----------------------------------------------------------------------------------

def lookup(catalog, suggest, artist, track):
    """Return the track numbers a lookup answers: the exact match and its others, or the suggestions."""
    hit = catalog.by_names(artist, track)
    if hit is not None:
        return [catalog.by_id[hit["track_id"]]] + [catalog.by_id[m["track_id"]] for m in hit["other_matches"]]
    return [catalog.by_id[s["track_id"]] for s in suggest(artist, track)]


def timed_suggestions(methods, queries):
    """Time each method's suggest() on every query, interleaved; return {name: ([wall s], [CPU s])}."""
    seconds = {name: ([], []) for name in methods}
    for artist, track, _ in queries:
        for name, suggest in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            suggest(artist, track)
            seconds[name][1].append(time.process_time() - cpu)
            seconds[name][0].append(time.perf_counter() - wall)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=232_725, help="generated rows (default: 232725)")
    parser.add_argument("--queries", type=int, default=400,
                        help="misspelt lookups per mutation and field, and prolific-artist lookups (default: 400)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the queries (default: 0)")
    args = parser.parse_args()

    started = time.perf_counter()
    catalog = build_catalog(args.rows, args.seed)
    baseline = DifflibSuggest(catalog)
    print(f"catalog: {catalog.n_rows:,} rows, {len(catalog):,} tracks, {len(catalog.by_artist):,} artists, "
          f"built in {time.perf_counter() - started:.1f} s")
    methods = {"rapidfuzz": catalog.suggest, "difflib + trigrams": baseline}

    print(f"\nspeed of not-found lookups (ms per lookup, wall and CPU; the same queries, interleaved; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    misspelt = list(misspelt_queries(catalog, args.queries, args.seed))
    not_found = [(a, t, i) for _, _, a, t, i in misspelt if catalog.by_names(a, t) is None]
    cases = {f"prolific artist, 1,000 long similar titles ({args.queries} lookups)":
             prolific_queries(catalog, args.queries, args.seed),
             f"misspelt ordinary tracks ({len(not_found):,} lookups)": not_found}
    for case, queries in cases.items():
        seconds = timed_suggestions(methods, queries)
        print(f"  {case}")
        for name, (wall, cpu) in seconds.items():
            print(f"    {name:<20} wall p50 {statistics.median(wall) * 1e3:6.2f}  max {max(wall) * 1e3:7.2f}   "
                  f"CPU p50 {statistics.median(cpu) * 1e3:6.2f}  max {max(cpu) * 1e3:7.2f}")
        ratio = statistics.median(seconds["difflib + trigrams"][1]) / statistics.median(seconds["rapidfuzz"][1])
        print(f"    CPU p50 ratio difflib / rapidfuzz: {ratio:.2f}")

    print(f"\nquality on misspelt names ({args.queries} lookups per row): top-1 / top-5 hit rate")
    print(f"  {'mutation':<20} {'field':<7} {'rapidfuzz':>15} {'difflib + trigrams':>20}")
    totals = {name: [0, 0] for name in methods}
    cells = {}
    for mutation, field, artist, track, wanted in misspelt:
        key = (normalise(catalog.artist_names[wanted]), normalise(catalog.track_names[wanted]))
        for name, suggest in methods.items():
            answer = [(normalise(catalog.artist_names[i]), normalise(catalog.track_names[i]))
                      for i in lookup(catalog, suggest, artist, track)]
            hits = cells.setdefault((mutation, field, name), [0, 0])
            hits[0] += answer[:1] == [key]
            hits[1] += key in answer[:5]
    for mutation in MUTATIONS:
        for field in FIELDS:
            figures = []
            for name in methods:
                top1, top5 = cells[(mutation, field, name)]
                totals[name][0] += top1
                totals[name][1] += top5
                figures.append(f"{top1 / args.queries:6.1%} / {top5 / args.queries:6.1%}")
            print(f"  {mutation:<20} {field:<7} {figures[0]:>15} {figures[1]:>20}")
    count = len(misspelt)
    figures = [f"{totals[name][0] / count:6.1%} / {totals[name][1] / count:6.1%}" for name in methods]
    print(f"  {'all':<28} {figures[0]:>15} {figures[1]:>20}")


if __name__ == "__main__":
    main()
