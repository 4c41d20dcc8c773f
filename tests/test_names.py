"""Tests of name matching (valence.catalog.names) and of the in-memory reference catalog (memory_catalog):
grouping of listings by track_id and close-name suggestions.

A stand-in predictor with a known rule replaces the trained model, so expected answers follow from the inputs.
"""
import random

import numpy as np
import pandas as pd
import pytest

import memory_catalog as catalog_module
from memory_catalog import Catalog, load_catalog, predict_rows
from valence.catalog.names import closest, normalise
from valence.config import CLASS_NAMES, ValenceError
from valence.data.synthetic import generate_dataset, write_csv
from songs import RulePredictor, expected_valence, hand_made_listings

@pytest.fixture(scope="module")
def frame():
    """Twelve generated songs, then hand-made listings: one track under three genres, two same-named tracks."""
    songs = generate_dataset(12, seed=2).drop_duplicates("track_id").reset_index(drop=True)
    songs["genre"] = "Pop"
    return pd.concat([songs, hand_made_listings(songs)], ignore_index=True)


@pytest.fixture(scope="module")
def catalog(frame):
    return Catalog(frame, RulePredictor())


def test_normalise_folds_case_and_whitespace():
    assert normalise("  The   BEATLES\t") == "the beatles"
    assert normalise("Straße") == normalise("STRASSE")  # casefold, not lower
    assert normalise("") == ""


def test_a_track_under_several_genres_is_one_entry_with_the_mean_prediction(catalog, frame):
    assert catalog.n_rows == len(frame) and len(catalog) == frame["track_id"].nunique()
    answer = catalog.by_track_id("MULTI")
    per_genre = {g: expected_valence(0.4, g) for g in ("Pop", "Rock", "Polka")}
    assert answer["genres"] == ["Pop", "Rock", "Polka"]
    assert answer["genre_predictions"] == pytest.approx(per_genre)
    assert answer["prediction"] == pytest.approx(sum(per_genre.values()) / 3)
    assert answer["expected"] == pytest.approx(0.25)
    assert answer["warnings"] == ["unknown genre 'Polka'"]  # one listing's warning belongs to the track
    assert answer["mood"] in CLASS_NAMES
    assert sum(answer["mood_probabilities"].values()) == pytest.approx(1)
    assert catalog.by_track_id("NO-SUCH-ID") is None


def test_moods_are_the_argmax_of_the_mean_probabilities(catalog):
    for i in range(len(catalog)):
        probabilities = catalog.mood_probabilities[i]
        assert catalog.moods[i] == CLASS_NAMES[int(np.argmax(probabilities))]
    high = catalog.by_track_id("SAMETIE")  # Rock 0.3 + 0.8 / 2 = 0.7: happy weight 0.7 beats sad 0.3 and 0.5
    assert high["mood"] == "happy"


def test_a_regression_only_predictor_gives_no_moods(frame):
    catalog = Catalog(frame, RulePredictor(moods=False))
    answer = catalog.by_track_id("MULTI")
    assert "mood" not in answer and "mood_probabilities" not in answer
    assert catalog.moods is None


def test_names_match_ignoring_case_and_spaces_most_popular_first_then_by_id(catalog):
    answer = catalog.by_names("TWIN artist", "same   SONG")
    assert answer["track_id"] == "SAMEHIGH"  # popularity 90
    assert [m["track_id"] for m in answer["other_matches"]] == ["SAMELOW", "SAMETIE"]  # both 10: by track_id
    assert answer["other_matches"][0] == {"track_id": "SAMELOW", "artist_name": "Twin Artist",
                                          "track_name": "Same Song", "genres": ["Pop"]}
    assert catalog.by_names("Twin Artist", "Other Song") is None
    assert catalog.by_names("Multi Act", "Many Genres")["other_matches"] == []


def test_suggestions_find_a_misspelt_track_or_artist(catalog):
    assert [s["track_id"] for s in catalog.suggest("Multi Act", "Many Genre")] == ["MULTI"]
    assert [s["track_id"] for s in catalog.suggest("Muti Act", "Many Genres")] == ["MULTI"]
    # The right song by an unknown artist: every same-named track, most popular first.
    assert [s["track_id"] for s in catalog.suggest("Nobody", "same song")] == ["SAMEHIGH", "SAMELOW", "SAMETIE"]
    assert catalog.suggest("Zzzz Qqqq", "Xxxxxxxx") == []


def test_closest_ranks_by_similarity_keeps_the_given_order_on_ties_and_drops_unrelated_names():
    names = ["the beat", "the beatles", "rolling stones", "beatles tribute band", "the beatles"]
    assert closest("the beatels", names, 5, 60) == [1, 4, 0]  # 91, 91, 84; the rest under 60
    assert closest("the beatels", names, 1, 60) == [1]
    assert closest("rolling stone", names, 5, 60) == [2]
    assert closest("qqq", names, 5, 60) == []
    assert closest("the beatles", names, 5, 85) == [1, 4]  # exact, both: the earlier first


def test_a_misspelt_title_of_a_prolific_artist_is_suggested():
    # 2,000 long, similar titles by one artist (a composer's movements); bench/suggest_speed.py times it.
    rng = random.Random(0)
    words = "Symphony Concerto Sonata No. in C Minor Major Op. Allegro Andante Adagio Presto con brio".split()
    frame = generate_dataset(2000, seed=3)
    frame["artist_name"] = "Johann Sebastian Bach"
    frame["track_name"] = [" ".join(rng.choice(words) for _ in range(10)) + f" {i}" for i in range(len(frame))]
    frame["track_id"] = [f"BACH{i:018d}" for i in range(len(frame))]
    catalog = Catalog(frame, RulePredictor())
    wanted = catalog.by_artist["johann sebastian bach"][500]
    for artist, title in [("Johann Sebastian Bach", catalog.track_names[wanted][:-3] + "xyz"),
                          ("Johann Sebastain Bach", catalog.track_names[wanted][:-3] + "xyz"),
                          ("johann sebastian bach", catalog.track_names[wanted].replace("o", "", 1))]:
        suggested = [s["track_id"] for s in catalog.suggest(artist, title)]
        assert suggested[0] == catalog.track_ids[wanted], (artist, title)


def test_predict_rows_keeps_row_order_across_chunks(frame, monkeypatch):
    monkeypatch.setattr(catalog_module, "PREDICT_CHUNK", 4)
    predictor = RulePredictor()
    valence, probabilities, warnings, _sigma, _group = predict_rows(predictor, frame)
    assert len(predictor.calls) > 1  # several chunks, so their order matters
    expected = [expected_valence(d, g) for d, g in zip(frame["danceability"], frame["genre"])]
    np.testing.assert_allclose(valence, expected)
    assert probabilities.shape == (len(frame), len(CLASS_NAMES)) and len(warnings) == len(frame)


def test_load_catalog_reads_a_csv_and_refuses_one_without_rows(tmp_path):
    songs = generate_dataset(20, seed=9)
    path = write_csv(songs, tmp_path / "catalog.csv")
    catalog = load_catalog(path, RulePredictor())
    assert len(catalog) == songs["track_id"].nunique() and catalog.n_rows == len(songs)
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(songs.columns) + "\n")
    with pytest.raises(ValenceError, match="empty.csv"):
        load_catalog(empty, RulePredictor())


def test_search_finds_an_artist_by_the_start_of_a_name_their_most_popular_songs_first(catalog):
    found = catalog.search("TWIN ar")
    assert [s["track_id"] for s in found] == ["SAMEHIGH", "SAMELOW", "SAMETIE"]
    assert found[0] == {"track_id": "SAMEHIGH", "artist_name": "twin   ARTIST", "track_name": " same song ",
                        "genres": ["Rock"]}


def test_search_finds_a_name_containing_the_text_and_tracks_by_name(catalog, frame):
    assert [s["track_id"] for s in catalog.search("artist")][:3] == ["SAMEHIGH", "SAMELOW", "SAMETIE"]
    assert [s["track_id"] for s in catalog.search("many gen")] == ["MULTI"]  # a track name's start
    assert catalog.search("ulti a")[0]["track_id"] == "MULTI"  # inside an artist's name
    assert catalog.search("") == [] and catalog.search("   ") == [] and catalog.search("zzqqxx") == []


def test_search_takes_one_song_of_each_matching_artist_before_a_second(frame):
    songs = frame.iloc[[0] * 6].copy()
    songs["artist_name"] = ["Abba", "Abba", "Abba", "Abbey Road Band", "Abbey Road Band", "Abbot"]
    songs["track_id"] = [f"T{i}" for i in range(6)]
    songs["popularity"] = [50, 40, 30, 90, 80, 10]
    catalog = Catalog(songs, RulePredictor())
    # Artists by their best song's popularity; each one's songs by popularity.
    assert [s["track_id"] for s in catalog.search("abb")] == ["T3", "T0", "T5", "T4", "T1", "T2"]
    assert [s["track_id"] for s in catalog.search("abb", limit=4)] == ["T3", "T0", "T5", "T4"]


def test_song_rows_are_a_tracks_listings_with_their_features(catalog, frame):
    rows = catalog.song_rows("MULTI")
    assert rows["genre"].tolist() == ["Pop", "Rock", "Polka"]
    assert rows["artist_name"].tolist() == ["Multi Act"] * 3
    assert rows["danceability"].tolist() == [0.4] * 3
    source = frame[frame["track_id"] == "MULTI"].iloc[0]
    assert rows.iloc[0]["tempo"] == source["tempo"] and rows.iloc[0]["key"] == source["key"]
    assert catalog.song_rows("NO-SUCH-ID") is None
