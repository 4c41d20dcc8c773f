"""Unit tests of valence.config: the schema constants agree with each other, and the path helpers."""
from pathlib import Path

import pytest

from valence import config


def test_feature_columns_are_the_kaggle_columns_without_names_ids_and_valence():
    dropped = {"artist_name", "track_name", "track_id", config.TARGET}
    assert config.FEATURE_COLUMNS == tuple(c for c in config.KAGGLE_COLUMNS if c not in dropped)
    assert len(config.KAGGLE_COLUMNS) == 18 and len(set(config.KAGGLE_COLUMNS)) == 18
    assert len(config.FEATURE_COLUMNS) == 18 - len(dropped)
    assert config.TARGET not in config.FEATURE_COLUMNS


def test_numeric_and_categorical_features_split_the_feature_columns():
    numeric, categorical = set(config.NUMERIC_FEATURES), set(config.CATEGORICAL_FEATURES)
    assert not numeric & categorical
    assert numeric | categorical == set(config.FEATURE_COLUMNS)
    assert set(config.ID_COLUMNS) <= set(config.KAGGLE_COLUMNS)


def test_every_numeric_feature_has_a_nonempty_range():
    assert tuple(config.NUMERIC_RANGES) == config.NUMERIC_FEATURES
    for name, (low, high) in config.NUMERIC_RANGES.items():
        assert low < high, name
    # Shares (0..1) are bounded by 1; a duration must be positive.
    for share in ("acousticness", "danceability", "energy", "instrumentalness", "liveness", "speechiness"):
        assert config.NUMERIC_RANGES[share] == (0.0, 1.0)
    assert config.NUMERIC_RANGES["duration_ms"][0] > 0


def test_categorical_choices_are_distinct():
    assert len(config.KEYS) == 12 and len(set(config.KEYS)) == 12
    assert config.KEYS[0] == "C" and config.KEYS[-1] == "B"  # pitch class 0 is C, 11 is B
    assert set(config.MODES) == {"Major", "Minor"}
    assert all(t.endswith("/4") for t in config.TIME_SIGNATURES)
    assert len(set(config.TIME_SIGNATURES)) == len(config.TIME_SIGNATURES)


def test_mood_classes_have_one_more_name_than_edges_and_sorted_edges_inside_0_1():
    assert len(config.CLASS_NAMES) == len(config.CLASS_EDGES) + 1
    assert list(config.CLASS_EDGES) == sorted(config.CLASS_EDGES)
    assert all(0 < edge < 1 for edge in config.CLASS_EDGES)
    assert config.CLASS_NAMES[0] == "sad" and config.CLASS_NAMES[-1] == "happy"


@pytest.mark.parametrize("model_dir", ["some/models", Path("some/models")])
@pytest.mark.parametrize("kind", config.MODEL_KINDS)
def test_bundle_and_metrics_paths_are_per_kind_inside_the_model_dir(model_dir, kind):
    assert config.bundle_path(model_dir, kind) == Path("some/models") / f"{kind}.pt"
    assert config.metrics_path(model_dir, kind) == Path("some/models") / f"{kind}.metrics.json"


def test_project_paths_point_into_the_repository():
    assert (config.PROJ_ROOT / "valence" / "config.py").is_file()
    assert config.DEFAULT_DATA.parent == config.DATA_DIR == config.PROJ_ROOT / "data"
    assert config.DEMO_DATA.parent == config.DATA_DIR
    assert config.MODELS_DIR == config.PROJ_ROOT / "models"

