"""Unit tests of valence.config's functions: the one rule for matching names, counts in words, model paths."""
from pathlib import Path

import pytest

from valence import config


@pytest.mark.parametrize("spelling", ["Queen", "queen", "  QUEEN ", "Queen\t", "queen\n"])
def test_names_match_whatever_their_case_and_surrounding_space(spelling):
    assert config.normalise_name(spelling) == "queen"


def test_inner_whitespace_collapses_and_case_folds_beyond_lowercase():
    assert config.normalise_name("Daft   Punk\tLive") == "daft punk live"
    assert config.normalise_name("STRASSE Straße") == "strasse strasse"  # casefold, not lower
    assert config.normalise_name("") == ""


@pytest.mark.parametrize("n, expected", [(0, "0 rows"), (1, "1 row"), (2, "2 rows"), (1000, "1,000 rows")])
def test_counted_says_the_number_with_its_noun(n, expected):
    assert config.counted(n, "row") == expected


@pytest.mark.parametrize("model_dir", ["some/models", Path("some/models")])
@pytest.mark.parametrize("kind", config.MODEL_KINDS)
def test_bundle_and_metrics_paths_are_per_kind_inside_the_model_dir(model_dir, kind):
    assert config.bundle_path(model_dir, kind).parent == Path("some/models")
    assert config.bundle_path(model_dir, kind).name.startswith(f"{kind}.")
    assert config.metrics_path(model_dir, kind) == Path("some/models") / f"{kind}.metrics.json"
