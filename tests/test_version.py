"""The version marker read off track names, end to end: learned in training, scored into the catalog,
explained as its own group for a catalog track and for a posted song."""
import pytest

from conftest import quick_options
from valence.catalog.build import build_catalog
from valence.model.explain import GROUPS
from valence.training.pipeline import run_training
from valence.data.synthetic import generate_dataset, write_csv

pytestmark = pytest.mark.slow  # trains its own models (the shared ones never saw a marker)

SONG = {"genre": "Pop", "popularity": 50, "acousticness": 0.1, "danceability": 0.8, "duration_ms": 200000,
        "energy": 0.7, "instrumentalness": 0.0, "key": "C", "liveness": 0.1, "loudness": -5.0, "mode": "Major",
        "speechiness": 0.05, "tempo": 120.0, "time_signature": "4/4"}


@pytest.fixture(scope="module")
def remix_app(tmp_path_factory, make_app):
    """An app whose model learned that remixes are happier, serving a catalog with remixed titles."""
    folder = tmp_path_factory.mktemp("remix")
    frame = generate_dataset(1500, seed=21)
    remixed = frame["track_id"].isin(frame["track_id"].unique()[::4])  # every listing of a quarter of the tracks
    frame.loc[remixed, "track_name"] = frame.loc[remixed, "track_name"] + " - Club Remix"
    frame.loc[remixed, "valence"] = (frame.loc[remixed, "valence"] + 0.3).clip(upper=1.0).round(3)
    write_csv(frame, folder / "songs.csv")
    run_training(quick_options(folder / "songs.csv", folder / "models", kinds=("regression",), epochs=20),
                 log=lambda message: None)
    build_catalog(folder / "songs.csv", folder / "models", folder / "catalog.sqlite", log=lambda message: None)
    return make_app(catalog=folder / "catalog.sqlite", model_dir=folder / "models"), frame[remixed].iloc[0]


def test_a_remixed_catalog_track_is_explained_with_its_version(remix_app):
    app, track = remix_app
    client = app.test_client()
    answer = client.get(f"/explain?track_id={track['track_id']}").get_json()
    lookup = client.get(f"/predict?track_id={track['track_id']}").get_json()
    assert list(answer["contributions"]) == list(GROUPS)
    assert answer["prediction"] == pytest.approx(lookup["prediction"], abs=1e-5)
    assert answer["contributions"]["version"] > 0.05  # the background song is no remix
    assert abs(sum(answer["contributions"].values()) + answer["base_value"] - answer["prediction"]) < 1e-5


def test_a_posted_title_with_a_marker_moves_the_prediction_through_the_version_group(remix_app):
    client = remix_app[0].test_client()
    plain = client.post("/explain", json=dict(SONG, track_name="Night Drive")).get_json()
    remix = client.post("/explain", json=dict(SONG, track_name="Night Drive - Club Remix")).get_json()
    nameless = client.post("/explain", json=SONG).get_json()
    assert plain["contributions"]["version"] == nameless["contributions"]["version"] == 0.0
    assert remix["contributions"]["version"] > 0.05
    assert remix["prediction"] - plain["prediction"] == pytest.approx(remix["contributions"]["version"], abs=0.02)
    predicted = client.post("/predict", json=dict(SONG, track_name="Night Drive - Club Remix")).get_json()
    assert predicted["prediction"] == pytest.approx(remix["prediction"], abs=1e-5)
