"""--download: kagglehub replaced by stand-ins (these machines have no internet)."""
import kagglehub
import pytest

import musical_valence_predictor as cli
from valence.config import ValenceError
from valence.data.download import KAGGLE_CSV, KAGGLE_HANDLE, download_dataset, find_csv
from valence.data.synthetic import generate_dataset, write_csv


@pytest.fixture
def kaggle_folder(tmp_path):
    """A folder laid out like kagglehub's download: the data set's CSV, generated."""
    folder = tmp_path / "cache" / "datasets" / "versions" / "3"
    folder.mkdir(parents=True)
    write_csv(generate_dataset(200, seed=3), folder / KAGGLE_CSV)
    return folder


@pytest.fixture
def fake_download(monkeypatch, kaggle_folder):
    """Replace kagglehub.dataset_download with a stand-in that returns the folder; record its calls."""
    calls = []

    def stand_in(handle, *args, **kwargs):
        calls.append(handle)
        return str(kaggle_folder)
    monkeypatch.setattr(kagglehub, "dataset_download", stand_in)
    return calls


def failing_download(monkeypatch, error):
    def stand_in(handle, *args, **kwargs):
        raise error
    monkeypatch.setattr(kagglehub, "dataset_download", stand_in)


def test_download_places_the_csv_byte_for_byte(fake_download, kaggle_folder, tmp_path):
    target = tmp_path / "data" / "spotify_features.csv"
    lines = []
    assert download_dataset(target, log=lines.append) == target
    assert fake_download == [KAGGLE_HANDLE]
    assert target.read_bytes() == (kaggle_folder / KAGGLE_CSV).read_bytes()
    assert "200 usable rows of 200" in lines[0]
    assert [p.name for p in target.parent.iterdir()] == ["spotify_features.csv"]  # no temporary left


def test_an_existing_file_is_kept_unless_forced(fake_download, kaggle_folder, tmp_path):
    target = tmp_path / "spotify_features.csv"
    target.write_text("mine\n")
    lines = []
    download_dataset(target, log=lines.append)
    assert target.read_text() == "mine\n" and fake_download == []
    assert "kept it" in lines[0]
    download_dataset(target, force=True, log=lines.append)
    assert target.read_bytes() == (kaggle_folder / KAGGLE_CSV).read_bytes()


def test_a_failed_download_says_what_failed_and_how_to_download_by_hand(monkeypatch, tmp_path):
    failing_download(monkeypatch, ConnectionError("Failed to resolve 'www.kaggle.com'"))
    target = tmp_path / "spotify_features.csv"
    target.write_text("mine\n")
    with pytest.raises(ValenceError) as caught:
        download_dataset(target, force=True, log=lambda m: None)
    message = str(caught.value)
    assert "ConnectionError: Failed to resolve 'www.kaggle.com'" in message
    assert "kaggle.com/datasets/zaheenhamidani/ultimate-spotify-tracks-db" in message
    assert f"save {KAGGLE_CSV} as {target}" in message
    assert target.read_text() == "mine\n"  # the user's file survives


def test_a_download_training_could_not_read_replaces_nothing(monkeypatch, fake_download, kaggle_folder, tmp_path):
    (kaggle_folder / KAGGLE_CSV).write_text("name,colour\nx,red\n")
    target = tmp_path / "spotify_features.csv"
    target.write_text("mine\n")
    with pytest.raises(ValenceError, match="valence"):
        download_dataset(target, force=True, log=lambda m: None)
    assert target.read_text() == "mine\n"


def test_find_csv_prefers_the_kaggle_name_and_refuses_ambiguity(tmp_path):
    (tmp_path / "other.csv").write_text("a\n")
    (tmp_path / KAGGLE_CSV).write_text("a\n")
    assert find_csv(tmp_path) == tmp_path / KAGGLE_CSV
    (tmp_path / KAGGLE_CSV).unlink()
    assert find_csv(tmp_path) == tmp_path / "other.csv"
    (tmp_path / "third.csv").write_text("a\n")
    with pytest.raises(ValenceError, match="2 CSV files"):
        find_csv(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValenceError, match="no CSV file"):
        find_csv(tmp_path / "empty")


def test_cli_download_writes_the_data_path_and_exits_0(fake_download, kaggle_folder, tmp_path, capsys):
    target = tmp_path / "data.csv"
    assert cli.main(["--download", "--data", str(target)]) == 0
    assert target.read_bytes() == (kaggle_folder / KAGGLE_CSV).read_bytes()
    assert f"saved as {target}" in capsys.readouterr().out


def test_cli_download_failure_is_one_message_and_exit_2(monkeypatch, tmp_path, capsys):
    failing_download(monkeypatch, PermissionError("401 Unauthorized"))
    assert cli.main(["--download", "--data", str(tmp_path / "data.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download the Kaggle data set") and err.count("error:") == 1
    assert "401 Unauthorized" in err and "by hand" in err
    assert not (tmp_path / "data.csv").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--force"], "--force does nothing without --download"),
    (["--download", "--demo"], "--demo does nothing with --download"),
    (["--download", "--epochs", "3"], "--epochs does nothing with --download"),
])
def test_cli_refuses_download_combinations_that_make_no_sense(argv, expected, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.parse_args(argv)
    assert caught.value.code == 2
    assert expected in capsys.readouterr().err
