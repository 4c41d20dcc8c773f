"""One normal form for names (config.normalise_name: Unicode NFKC, case folded, whitespace collapsed).

A name typed composed ("Céline", U+00E9) and decomposed ("Ce" U+0301 "line", as macOS file names and
some copy-and-paste give it) is one name everywhere names are matched: artist and song statistics,
genres, catalog lookups, suggestions and search, warnings, --predict and the Python API. Bundles and
catalogs whose names were folded by the earlier rule are refused, saying what to run.
"""
import json
import shutil
import sqlite3
import unicodedata

import numpy as np
import pandas as pd
import pytest

from valence import ValenceModel
from valence.catalog.build import build_catalog
from valence.catalog.sql import CATALOG_FORMAT, CatalogMissing
from valence.catalog.store import open_store
from valence.config import BUNDLE_FORMAT, NAME_RULE, ValenceError, bundle_path, normalise_name
from valence.data.synthetic import generate_dataset, write_csv
from valence.model import bundlefile
from valence.model.bundle import load_bundle
from valence.model.encoder import FeatureEncoder
from valence.model.versions import song_title, title_version

COMPOSED = "Céline Dion"
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)
TRACK = "Une île de Noël"
TRACK_DECOMPOSED = unicodedata.normalize("NFD", TRACK)


def test_the_spellings_differ_as_strings():
    assert COMPOSED != DECOMPOSED and len(DECOMPOSED) == len(COMPOSED) + 1
    assert TRACK != TRACK_DECOMPOSED


@pytest.mark.parametrize("spelling, same_as", [
    (DECOMPOSED, COMPOSED),
    ("CE\u0301LINE DION", COMPOSED),  # the mark after an upper-case letter
    ("Céline\u00a0Dion", COMPOSED),  # a non-breaking space
    ("Céline\u202fDion", COMPOSED),  # a narrow non-breaking space
    ("\u3000Céline  Dion ", COMPOSED),  # an ideographic space, and spaces around
    ("Ｑｕｅｅｎ", "queen"),  # full-width letters
    ("\ufb01ve", "five"),  # the fi ligature
    ("Stra\u00dfe", "STRASSE"),  # casefold, not lower
])
def test_every_spelling_of_a_name_has_one_normal_form(spelling, same_as):
    assert normalise_name(spelling) == normalise_name(same_as)


@pytest.mark.parametrize("text", [COMPOSED, DECOMPOSED, "\u01f0", "\u01f0\u0323", "\u00b4x", "x \u00b4", "\u1e9b\u0323",
                                  "\u0390", "ΣΑΣ", "\u00a0\u0301a", "\u2126hm", "\u212bngstr\u00f6m", ""])
def test_the_normal_form_is_a_fixed_point(text):
    once = normalise_name(text)
    assert normalise_name(once) == once
    assert once == " ".join(once.split()) and unicodedata.is_normalized("NFKC", once)


def test_a_song_title_and_its_version_read_either_spelling():
    assert song_title(TRACK_DECOMPOSED + " - Live") == song_title(TRACK) == "une île de noël"
    # Full-width brackets, and a dash between non-breaking spaces, are qualifiers as plain ones are.
    assert title_version(TRACK + " \uff08Live at Bercy\uff09") == "live"
    assert title_version(TRACK + "\u00a0-\u00a0Remix") == "remix"


@pytest.fixture(scope="module")
def songs():
    """Generated songs: the first artist's tracks renamed to COMPOSED, its first track to TRACK."""
    frame = generate_dataset(400, seed=5)
    first = frame["artist_name"].iloc[0]
    frame.loc[frame["artist_name"] == first, "artist_name"] = COMPOSED
    frame.loc[0, "track_name"] = TRACK
    return frame


def test_the_encoder_matches_an_artist_genre_and_song_in_either_spelling(songs):
    encoder = FeatureEncoder(n_folds=3).fit(songs, songs["valence"].to_numpy())
    row = songs.iloc[[0]]
    other = row.assign(artist_name=DECOMPOSED, track_name=TRACK_DECOMPOSED,
                       genre=unicodedata.normalize("NFKC", row["genre"].iloc[0]).upper().replace(" ", "\u00a0  "))
    for part in ("numeric", "categorical"):
        np.testing.assert_array_equal(encoder.transform(other)[part], encoder.transform(row)[part])
    assert not encoder.unknown_artists(other)[0]
    assert encoder.known(row.assign(genre="\uff32\uff06\uff22"), "genre")[0]  # Ｒ＆Ｂ, full width


@pytest.fixture(scope="module")
def celine_models(trained, tmp_path_factory):
    """The session's trained models with their best-known artist renamed to COMPOSED (as training on
    songs by Céline Dion would key them) in the artist and song tables of both bundles."""
    folder = tmp_path_factory.mktemp("celine")
    for kind in ("regression", "classification"):
        payload = bundlefile.read(bundle_path(trained[0], kind))
        tables = payload["encoder"]
        names = tables["artist_table"]["names"]
        counts = np.asarray(tables["artist_table"]["rows"]).reshape(len(names), -1)[:, 0]
        old = names[int(np.argmax(counts))]
        names[names.index(old)] = normalise_name(COMPOSED)
        tables["song_table"]["names"] = [normalise_name(COMPOSED) + key[len(old):] if key.startswith(old + "\x1f")
                                         else key for key in tables["song_table"]["names"]]
        bundlefile.write(bundle_path(folder, kind), payload)
    return folder


@pytest.fixture(scope="module")
def celine_app(make_app, celine_models, songs, tmp_path_factory):
    """The app serving the renamed models and a catalog of the songs (COMPOSED's spelt composed)."""
    csv = write_csv(songs, tmp_path_factory.mktemp("celine_data") / "songs.csv")
    build_catalog(csv, celine_models, celine_models / "catalog.sqlite", log=lambda message: None)
    return make_app(catalog=celine_models / "catalog.sqlite", model_dir=celine_models)


def test_a_post_prediction_is_the_same_for_either_spelling(celine_app, songs):
    song = json.loads(songs.drop(columns=["valence", "track_id"]).iloc[[0]].to_json(orient="records"))[0]
    client = celine_app.test_client()
    composed = client.post("/predict", json=dict(song, artist_name=COMPOSED))
    decomposed = client.post("/predict", json=dict(song, artist_name=DECOMPOSED, track_name=TRACK_DECOMPOSED))
    unknown = client.post("/predict", json=dict(song, artist_name="Nobody Known"))
    assert composed.status_code == decomposed.status_code == 200
    assert decomposed.json["prediction"] == composed.json["prediction"]
    assert decomposed.json["mood_probabilities"] == composed.json["mood_probabilities"]
    assert not any("unknown artist_name" in w for w in decomposed.json["warnings"])
    assert any("unknown artist_name" in w for w in unknown.json["warnings"])
    assert unknown.json["prediction"] != composed.json["prediction"]  # the artist's statistics count


def test_a_lookup_and_a_search_find_the_track_in_either_spelling(celine_app, songs):
    client = celine_app.test_client()
    wanted = songs["track_id"].iloc[0]
    for artist, track in ((COMPOSED, TRACK), (DECOMPOSED, TRACK_DECOMPOSED), (COMPOSED.upper(), TRACK_DECOMPOSED)):
        answer = client.get("/predict", query_string={"artist_name": artist, "track_name": track})
        assert answer.status_code == 200, answer.json
        assert answer.json["track_id"] == wanted and answer.json["artist_name"] == COMPOSED
    found = client.get("/search", query_string={"q": unicodedata.normalize("NFD", "Célin")}).json
    assert wanted in [song["track_id"] for song in found["results"]]


def test_the_store_finds_and_suggests_in_either_spelling(celine_models, songs):
    store = open_store(celine_models / "catalog.sqlite")
    try:
        wanted = songs["track_id"].iloc[0]
        assert store.by_names(DECOMPOSED, TRACK_DECOMPOSED)["track_id"] == wanted
        assert store.by_names(COMPOSED, TRACK)["track_id"] == wanted
        # A misspelt decomposed title: suggested as the composed one would be.
        misspelt = unicodedata.normalize("NFD", "Une île de Noé")
        assert wanted in [song["track_id"] for song in store.suggest(DECOMPOSED, misspelt)]
        assert store.suggest(DECOMPOSED, misspelt) == store.suggest(COMPOSED, "Une île de Noé")
        assert wanted in [song["track_id"] for song in store.search(DECOMPOSED[:6])]
    finally:
        store.close()


def test_predict_and_the_python_api_match_either_spelling(celine_models, songs):
    frame = pd.concat([songs.iloc[[0]].assign(artist_name=COMPOSED),
                       songs.iloc[[0]].assign(artist_name=DECOMPOSED, track_name=TRACK_DECOMPOSED)],
                      ignore_index=True)
    answer = ValenceModel(celine_models).predict(frame)
    assert answer["valence"].iloc[0] == answer["valence"].iloc[1]
    assert answer["warnings"].iloc[0] == answer["warnings"].iloc[1]
    assert "unknown artist" not in str(answer["warnings"].iloc[1])


# ---- files whose names were folded by the earlier rule are refused -------------------------------------------

def test_a_bundle_of_the_earlier_name_rule_is_refused_saying_what_to_run(trained, tmp_path):
    payload = bundlefile.read(bundle_path(trained[0], "regression"))
    assert payload["format"] == BUNDLE_FORMAT and payload["encoder"]["name_rule"] == NAME_RULE == 2
    payload["encoder"]["name_rule"] = 1
    path = tmp_path / "regression.safetensors"
    bundlefile.write(path, payload)
    with pytest.raises(ValenceError) as refused:
        load_bundle(path)
    assert str(refused.value) == (
        f"{path} matches names by name rule 1, not rule 2 that this version uses (Unicode NFKC, case folded, "
        f"whitespace collapsed), so names spelt another way would silently miss its artist statistics: train the "
        f"model again with this version: `python musical_valence_predictor.py --model regression "
        f"--model-dir {tmp_path}`")


def test_a_bundle_of_format_5_is_refused_saying_what_to_run(trained, tmp_path):
    payload = bundlefile.read(bundle_path(trained[0], "classification"))
    payload["format"] = 5
    del payload["encoder"]["name_rule"]
    path = tmp_path / "classification.safetensors"
    bundlefile.write(path, payload)
    with pytest.raises(ValenceError) as refused:
        load_bundle(path)
    assert str(refused.value) == (
        f"{path} was written in bundle format 5, older than format {BUNDLE_FORMAT} that this version reads: train "
        f"the model again with this version: `python musical_valence_predictor.py --model classification "
        f"--model-dir {tmp_path}`")


@pytest.mark.parametrize("meta, says", [
    ({"format": "2", "name_rule": None}, f"was written in catalog format 2, older than format {CATALOG_FORMAT}"),
    ({"name_rule": "1"}, "matches names by name rule '1', not rule 2 that this version uses (Unicode NFKC, case "
                         "folded, whitespace collapsed), so names spelt another way would silently miss"),
    ({"name_rule": None}, "matches names by name rule '1', not rule 2"),
])
def test_a_catalog_of_the_earlier_name_rule_is_refused_saying_what_to_run(celine_models, tmp_path, meta, says):
    path = tmp_path / "catalog.sqlite"
    shutil.copy(celine_models / "catalog.sqlite", path)
    with sqlite3.connect(path) as connection:
        assert dict(connection.execute("SELECT key, value FROM meta"))["name_rule"] == str(NAME_RULE)
        for key, value in meta.items():
            connection.execute("DELETE FROM meta WHERE key = ?", (key,))
            if value is not None:
                connection.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
    connection.close()
    with pytest.raises(CatalogMissing) as refused:
        open_store(path)
    message = str(refused.value)
    assert message.startswith(f"{path} {says}")
    assert message.endswith(f"rebuild it with: python musical_valence_predictor.py --build-catalog --catalog {path}")


@pytest.mark.slow
def test_a_postgresql_catalog_of_the_earlier_name_rule_is_refused(celine_models, postgres_url, songs, tmp_path):
    import psycopg

    from valence.catalog.postgres import POINTER

    csv = write_csv(songs, tmp_path / "songs.csv")
    build_catalog(csv, celine_models, postgres_url, log=lambda message: None)
    store = open_store(postgres_url)
    try:
        assert store.by_names(DECOMPOSED, TRACK_DECOMPOSED)["track_id"] == songs["track_id"].iloc[0]
    finally:
        store.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        meta = json.loads(connection.execute(f"SELECT meta FROM {POINTER}").fetchone()[0])
        assert meta["name_rule"] == str(NAME_RULE)
        connection.execute(f"UPDATE {POINTER} SET meta = %s", (json.dumps(dict(meta, name_rule="1")),))
    with pytest.raises(CatalogMissing, match="matches names by name rule '1', not rule 2"):
        open_store(postgres_url)
