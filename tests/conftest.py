"""Shared fixtures: generated data in the Kaggle schema and models trained on it."""
import dataclasses

import pytest

from valence.pipeline import RunOptions, SplitConfig, run_training
from valence.synthetic import generate_dataset, write_csv
from valence.trainer import TrainConfig


@pytest.fixture(scope="session")
def demo_csv(tmp_path_factory):
    """Return a generated 3,000-row CSV in the exact Kaggle schema."""
    path = tmp_path_factory.mktemp("data") / "demo.csv"
    write_csv(generate_dataset(3000, seed=7), path)
    return path


def quick_options(data, model_dir, kinds=("regression", "classification"), epochs=3):
    """Return run options for a fast training run."""
    return RunOptions(data=data, model_dir=model_dir, kinds=kinds,
                      train=dataclasses.replace(TrainConfig(), epochs=epochs),
                      split=SplitConfig(seed=0))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, demo_csv):
    """Train both model kinds once on the demo data; return (model_dir, results)."""
    model_dir = tmp_path_factory.mktemp("models")
    results = run_training(quick_options(demo_csv, model_dir), log=lambda message: None)
    return model_dir, results
