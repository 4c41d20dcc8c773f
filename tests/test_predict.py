import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from valence.config import CLASS_NAMES, FEATURE_COLUMNS, MODEL_KINDS, PROJ_ROOT, ValenceError
from valence.model.predictor import Predictor

TRAINING = ("valence.training.trainer", "valence.data.load", "valence.data.csvread", "valence.data.rows", "valence.training.pipeline",
            "valence.model.predict_file", "valence.training.metrics")


@pytest.fixture(scope="module")
def songs(demo_csv):
    return pd.read_csv(demo_csv).head(40)


def test_predicts_valence_and_mood_for_every_row(predictor, songs):
    result = predictor.predict(songs)
    assert result.valence.shape == (40,)
    assert np.all((result.valence >= 0) & (result.valence <= 1))
    assert result.mood_probabilities.shape == (40, 3)
    np.testing.assert_allclose(result.mood_probabilities.sum(axis=1), 1, atol=1e-5)
    assert result.mood == [("sad", "neutral", "happy")[i] for i in result.mood_probabilities.argmax(axis=1)]
    assert result.warnings == [[] for _ in range(40)]


def test_unknown_genre_is_predicted_with_a_warning(predictor, songs):
    odd = songs.head(3).copy()
    odd.loc[odd.index[1], "genre"] = "Polka"
    result = predictor.predict(odd[list(FEATURE_COLUMNS)])  # no artist_name: an unknown artist
    assert np.isfinite(result.valence).all()
    assert result.warnings[0] == [] and result.warnings[2] == []
    assert result.warnings[1] == ["unknown genre 'Polka': predicted as an unseen genre"]


def test_without_a_classifier_there_is_no_mood(trained, tmp_path, songs):
    shutil.copy(trained[0] / "regression.safetensors", tmp_path / "regression.safetensors")
    predictor = Predictor.from_model_dir(tmp_path)
    assert predictor.classification is None
    assert predictor.predict(songs).mood is None
    assert set(predictor.metadata()) == {"regression"}


def test_with_only_a_classifier_there_is_no_valence(trained, tmp_path, songs):
    shutil.copy(trained[0] / "classification.safetensors", tmp_path / "classification.safetensors")
    predictor = Predictor.from_model_dir(tmp_path, required=(), optional=MODEL_KINDS)
    assert predictor.regression is None
    result = predictor.predict(songs)
    assert result.valence is None
    assert result.mood == [CLASS_NAMES[i] for i in result.mood_probabilities.argmax(axis=1)]
    assert result.warnings == [[] for _ in range(40)]
    assert set(predictor.metadata()) == {"classification"}


def test_by_default_every_saved_kind_is_loaded_and_one_is_enough(trained, tmp_path):
    shutil.copy(trained[0] / "classification.safetensors", tmp_path / "classification.safetensors")
    predictor = Predictor.from_model_dir(tmp_path)  # as a folder trained with --model classification is served
    assert predictor.regression is None and predictor.classification.kind == "classification"
    with pytest.raises(ValenceError, match=r"no saved model in .*regression\.safetensors or "
                                           r".*classification\.safetensors"):
        Predictor.from_model_dir(tmp_path / "empty")


def test_only_the_required_kinds_are_loaded_when_nothing_is_optional(trained):
    predictor = Predictor.from_model_dir(trained[0], required=("classification",), optional=())
    assert predictor.regression is None and predictor.classification.kind == "classification"


def test_an_empty_model_dir_names_the_files_looked_for(tmp_path):
    with pytest.raises(ValenceError, match=r"no saved model in .*regression\.safetensors or "
                                           r".*classification\.safetensors"):
        Predictor.from_model_dir(tmp_path, required=(), optional=MODEL_KINDS)


def test_metadata_is_plain_and_names_the_features(predictor):
    meta = predictor.metadata()
    assert meta["regression"]["kind"] == "regression"
    assert "danceability" in meta["regression"]["features"]["numeric"]
    assert len(meta["classification"]["data"]["sha256"]) == 64


def test_metadata_names_the_training_file_but_not_the_server_folders(predictor, trained):
    meta = predictor.metadata()["regression"]
    assert meta["data"]["path"] == "demo.csv"
    assert meta["metrics"]["data_path"] == "demo.csv"


@pytest.mark.slow  # a fresh interpreter, which imports torch at the end (about 5 s): in the slow run, which CI runs
def test_a_worker_serves_and_explains_without_torch_training_code_or_captum(trained, served_catalog, demo_csv):
    # A fresh interpreter: this test process has imported everything already. Creating the app
    # and answering lookups, predictions and explanations is a worker's start-up and work: torch
    # costs 1.6 to 1.9 s to import, captum and the matplotlib it pulls in about 0.7 s, and none of
    # them is needed (network.py predicts and explain.py explains with numpy).
    song = pd.read_csv(demo_csv).head(1)[list(FEATURE_COLUMNS)].to_dict("records")
    code = ("import json, sys\n"
            "import valence.model.predictor\n"
            "first = sorted(m for m in {TRAINING} if m in sys.modules)\n"
            "import valence.api.app\n"
            "second = sorted(m for m in {TRAINING} if m in sys.modules)\n"
            "from musical_valence_predictor import create_app\n"
            "app = create_app({SETTINGS})\n"
            "client = app.test_client()\n"
            "answers = [client.get('/health').status_code,\n"
            "           client.get('/predict', query_string={'artist_name': 'twin artist', 'track_name': 'same song'}).status_code,\n"
            "           client.post('/predict', json={SONG}).status_code]\n"
            "loaded = sorted(m for m in ('torch', 'captum', 'matplotlib', 'sklearn') if m in sys.modules)\n"
            "answers.append(client.get('/explain', query_string={'track_id': 'TWINHIGH00000000000001'}).status_code)\n"
            "print(json.dumps([first, second, loaded, answers, 'torch' in sys.modules]))\n"
            ).replace("{TRAINING}", repr(TRAINING)).replace("{SONG}", repr(json.loads(json.dumps(song, default=str))))
    code = code.replace("{SETTINGS}", repr({"VALENCE_METRICS": False, "VALENCE_LOG_REQUESTS": False,
                                            "VALENCE_MODEL_DIR": str(trained[0]), "VALENCE_CATALOG": str(served_catalog)}))
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJ_ROOT, capture_output=True, text=True, check=True)
    first, second, loaded, answers, torch_at_the_end = json.loads(out.stdout.strip().splitlines()[-1])
    assert (first, second, loaded) == ([], [], [])
    assert answers == [200, 200, 200, 200] and not torch_at_the_end  # the explanation worked without torch


@pytest.mark.slow  # two fresh interpreters: in the slow run, which CI runs
def test_predict_and_build_catalog_never_import_torch(trained, demo_csv, tmp_path):
    # They predict with numpy (network.py); torch would add 1.6 to 1.9 s to every --predict and --build-catalog.
    code = ("import sys\n"
            "import musical_valence_predictor as cli\n"
            "status = cli.main(sys.argv[1:])\n"
            "print('torch imported:', 'torch' in sys.modules, 'status:', status)\n")
    jobs = (["--predict", str(demo_csv), "--output", str(tmp_path / "scored.csv")],
            ["--build-catalog", "--data", str(demo_csv), "--catalog", str(tmp_path / "catalog.sqlite")])
    for job in jobs:
        out = subprocess.run([sys.executable, "-c", code, *job, "--model-dir", str(trained[0])], cwd=PROJ_ROOT,
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] == "torch imported: False status: 0", (job, out.stdout, out.stderr)
    assert (tmp_path / "scored.csv").stat().st_size > 0 and (tmp_path / "catalog.sqlite").stat().st_size > 0
