import pytest

from valence.training.plots import write_training_figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # matplotlib's import and five renderings: 2.4 s of a default run that must stay under 60 s
def test_training_figures_are_real_pngs(trained, tmp_path):
    _, run = trained
    paths = write_training_figures(run, tmp_path / "figures")
    assert sorted(p.name for p in paths) == sorted([
        "numerical_feature_correlation_heatmap.png", "regression_learning_curves.png",
        "regression_predicted_vs_actual.png", "classification_learning_curves.png",
        "classification_confusion_matrix.png"])
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, path.name
