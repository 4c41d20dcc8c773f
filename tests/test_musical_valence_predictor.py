"""The command-line tool end to end, on generated data."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import musical_valence_predictor as cli
from valence.config import EXPLANATION_GROUPS, PROJ_ROOT, bundle_path, metrics_path


def run_cli(*args):
    """Run the tool as a user would; return the finished process."""
    return subprocess.run([sys.executable, str(PROJ_ROOT / "musical_valence_predictor.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cli_models(tmp_path_factory, demo_csv):
    """Train both kinds through the real command line once."""
    model_dir = tmp_path_factory.mktemp("cli-models")
    done = run_cli("--data", demo_csv, "--model-dir", model_dir, "--model", "both", "--epochs", "3", "--quiet")
    assert done.returncode == 0, done.stderr
    return model_dir, done


@pytest.mark.slow
def test_training_saves_bundles_and_metrics(cli_models, demo_csv):
    model_dir, done = cli_models
    assert "loaded 3,000 of 3,000 rows" in done.stdout
    for kind in ("regression", "classification"):
        assert bundle_path(model_dir, kind).stat().st_size > 0
    metrics = json.loads(metrics_path(model_dir, "regression").read_text())
    assert metrics["test_mae"] < metrics["baseline_mae"]
    assert metrics["rows"] == metrics["test_rows"] == 3000  # every row is a test row of one fold model
    assert len(metrics["data_sha256"]) == 64
    classification = json.loads(metrics_path(model_dir, "classification").read_text())
    assert 0 <= classification["test_macro_f1"] <= 1
    assert sum(map(sum, classification["test_confusion_matrix"])) == classification["test_rows"]
    assert "regression fold 1/10 epoch 1/3" in done.stdout  # one line per epoch when not on a terminal


@pytest.mark.slow
def test_skip_training_evaluates_the_saved_model_to_the_same_figures(cli_models, demo_csv):
    model_dir, _ = cli_models
    done = run_cli("--data", demo_csv, "--model-dir", model_dir, "--skip-training")
    assert done.returncode == 0, done.stderr
    saved = json.loads(metrics_path(model_dir, "regression").read_text())
    assert f"{saved['test_mae']:.4f}" in done.stdout


@pytest.mark.slow
def test_predict_scores_a_csv_without_valence(cli_models, demo_csv, tmp_path):
    model_dir, _ = cli_models
    songs = pd.read_csv(demo_csv).drop(columns=["valence"]).head(50)
    songs.to_csv(tmp_path / "in.csv", index=False)
    done = run_cli("--model-dir", model_dir, "--predict", tmp_path / "in.csv", "--output", tmp_path / "out.csv")
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(tmp_path / "out.csv")
    assert list(scored.columns) == ["track_id", "artist_name", "track_name", "genre",
                                    "predicted_valence", "valence_low", "valence_high", "predicted_mood", "reason"]
    assert ((scored["valence_low"] <= scored["predicted_valence"])
            & (scored["predicted_valence"] <= scored["valence_high"])).all()
    assert list(scored["track_id"]) == list(songs["track_id"])
    assert scored["predicted_valence"].between(0, 1).all()
    assert set(scored["predicted_mood"]) <= {"sad", "neutral", "happy"}


@pytest.mark.slow
def test_predict_with_explain_adds_contributions_that_add_up_to_the_prediction(cli_models, demo_csv, tmp_path):
    model_dir, _ = cli_models
    pd.read_csv(demo_csv).head(20).to_csv(tmp_path / "in.csv", index=False)
    done = run_cli("--model-dir", model_dir, "--predict", tmp_path / "in.csv", "--explain")
    assert done.returncode == 0, done.stderr
    assert "(with moods and explanations)" in done.stdout
    scored = pd.read_csv(tmp_path / "in.predictions.csv")
    contributions = [c for c in scored.columns if c.startswith("contribution_")]
    assert contributions == [f"contribution_{group}" for group in EXPLANATION_GROUPS]  # version included
    total = scored[contributions].sum(axis=1) + scored["base_value"]
    assert (total - scored["predicted_valence"]).abs().max() < 0.001


@pytest.mark.slow
def test_predict_refuses_to_overwrite_its_input(cli_models, demo_csv, tmp_path):
    model_dir, _ = cli_models
    copy = tmp_path / "songs.csv"
    copy.write_bytes(demo_csv.read_bytes())
    done = run_cli("--model-dir", model_dir, "--predict", copy, "--output", copy)
    assert done.returncode == 2
    assert "is the input file" in done.stderr
    assert copy.read_bytes() == demo_csv.read_bytes()


@pytest.mark.slow
def test_missing_data_file_says_where_to_get_it(tmp_path):
    done = run_cli("--data", tmp_path / "nope.csv", "--model-dir", tmp_path)
    assert done.returncode == 2
    assert "kaggle.com" in done.stderr and "--demo" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_command_returns_mains_status_with_what_is_left_frozen_for_the_interpreters_exit(tmp_path, capsys,
                                                                                            unfrozen):
    import gc

    assert cli.command_line(["--data", str(tmp_path / "nope.csv"), "--model-dir", str(tmp_path)]) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert gc.get_freeze_count() > 0  # the exit's collections have nothing to walk


@pytest.mark.slow
def test_missing_column_names_file_and_column_and_keeps_the_old_model(cli_models, demo_csv, tmp_path):
    model_dir, _ = cli_models
    before = bundle_path(model_dir, "regression").read_bytes()
    broken = tmp_path / "broken.csv"
    pd.read_csv(demo_csv).drop(columns=["energy"]).to_csv(broken, index=False)
    done = run_cli("--data", broken, "--model-dir", model_dir)
    assert done.returncode == 2
    assert "energy" in done.stderr and "broken.csv" in done.stderr
    assert "Traceback" not in done.stderr
    assert bundle_path(model_dir, "regression").read_bytes() == before


@pytest.mark.slow
def test_skip_training_without_a_model_is_a_clear_error(demo_csv, tmp_path):
    done = run_cli("--data", demo_csv, "--model-dir", tmp_path, "--skip-training")
    assert done.returncode == 2
    assert "no saved regression model" in done.stderr


def test_print_batch_prints_encoded_rows_and_trains_nothing(demo_csv, tmp_path, capsys):
    assert cli.main(["--data", str(demo_csv), "--model-dir", str(tmp_path), "--print-batch",
                     "--batch-size", "300"]) == 0
    out = capsys.readouterr().out
    assert "first training batch of fold model 1 of 10: 300 rows" in out and "danceability" in out
    assert list(tmp_path.iterdir()) == []


def test_every_option_documents_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--help"])
    assert exit_info.value.code == 0
    parser_actions = [a for a in cli.build_parser()._actions if a.help and a.dest != "help"]
    assert len(parser_actions) >= 20
    for action in parser_actions:
        assert action.help.rstrip().endswith(")") and "(default: " in action.help, action.dest


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--patience", "-1"], "--patience must be 0 (automatic) or more"),
    (["--folds", "1"], "--folds must be 0 (automatic) or from 2 to 50"),
    (["--output", "x.csv"], "--output needs --predict"),
    (["--explain"], "--explain needs --predict"),
    (["--demo", "--data", "x.csv"], "leave out --data"),
])
def test_bad_option_values_exit_2_with_a_usage_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_entry_file_builds_the_app_that_flask_and_gunicorn_serve(trained, served_catalog):
    app = cli.create_app({"TESTING": True, "VALENCE_CATALOG": str(served_catalog), "VALENCE_MODEL_DIR": str(trained[0]),
                          "VALENCE_THREADS": None})
    answer = app.test_client().get("/predict", query_string={"track_id": "POLKA00000000000000001"})
    assert answer.status_code == 200 and answer.json["genres"] == ["Polka"]


# ---- issue 13: argument checks -------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", str(2 ** 32), str(10 ** 30)])
def test_seed_outside_0_to_2_to_the_32_is_refused_by_argparse(seed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--seed", seed])
    assert exit_info.value.code == 2
    assert "--seed must be from 0 to 4294967295" in capsys.readouterr().err


def test_largest_seed_is_accepted():
    assert cli.parse_args(["--seed", str(2 ** 32 - 1)]).seed == 2 ** 32 - 1


@pytest.mark.parametrize("args, message", [
    (["--plots", "--skip-training"], "--plots does nothing with --skip-training"),
    (["--skip-training", "--seed", "3"], "--seed does nothing with --skip-training"),
    (["--skip-training", "--epochs", "3"], "--epochs does nothing with --skip-training"),
    (["--predict", "in.csv", "--plots"], "--plots does nothing with --predict"),
    (["--predict", "in.csv", "--data", "x.csv"], "--data does nothing with --predict"),
    (["--predict", "in.csv", "--skip-training"], "--skip-training does nothing with --predict"),
    (["--print-batch", "--epochs", "3"], "--epochs does nothing with --print-batch"),
    (["--demo-rows", "500"], "--demo-rows does nothing without --demo"),
    (["--plots-dir", "figs"], "--plots-dir does nothing without --plots"),
])
def test_flags_that_do_nothing_in_a_combination_are_refused(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ["--skip-training", "--demo", "--seed", "3", "--demo-rows", "500"],  # the seed and size of the demo data
    ["--print-batch", "--seed", "3", "--batch-size", "8", "--val-fraction", "0.2"],
    ["--predict", "in.csv", "--model-dir", "m", "--output", "o.csv", "--quiet"],
    ["--plots", "--plots-dir", "figs", "--seed", "0"],  # a default named on purpose is still a choice
])
def test_combinations_that_work_are_accepted(args):
    cli.parse_args(args)


def test_defaults_are_filled_in_when_options_are_not_named():
    args = cli.parse_args([])
    assert (args.seed, args.demo_rows, args.plots_dir, args.epochs) == (0, 30_000, None, cli.TRAIN_DEFAULTS.epochs)


@pytest.mark.parametrize("job", [[], ["--demo"]])
def test_model_dir_that_is_a_file_stops_before_any_work(job, demo_csv, tmp_path, capsys):
    blocker = tmp_path / "models.txt"
    blocker.write_text("not a folder")
    data = [] if job else ["--data", str(demo_csv)]
    for model_dir in (blocker, blocker / "sub"):
        assert cli.main([*job, *data, "--model-dir", str(model_dir), "--epochs", "1"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""  # nothing loaded, generated or trained
        assert f"--model-dir {model_dir}: {blocker} is a file, not a folder" in captured.err
    assert blocker.read_text() == "not a folder"


def test_read_only_model_dir_stops_before_any_work(demo_csv, tmp_path, monkeypatch, capsys):
    # Tests run as root, whom chmod does not stop: the refusal is simulated as the kernel gives it.
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == read_only
                        else real_access(path, mode, **kw))
    assert cli.main(["--data", str(demo_csv), "--model-dir", str(read_only / "new")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"--model-dir {read_only / 'new'}: {read_only} is not writable" in captured.err
    assert list(read_only.iterdir()) == []


def test_bundle_path_that_is_a_folder_stops_before_any_work(demo_csv, tmp_path, capsys):
    (tmp_path / "classification.safetensors").mkdir()
    assert cli.main(["--data", str(demo_csv), "--model-dir", str(tmp_path), "--model", "both"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"{tmp_path / 'classification.safetensors'} is a folder, not a file" in captured.err


def test_plots_dir_that_is_a_file_stops_before_any_work(demo_csv, tmp_path, capsys):
    blocker = tmp_path / "figures"
    blocker.write_text("")
    assert cli.main(["--data", str(demo_csv), "--model-dir", str(tmp_path / "m"), "--plots",
                     "--plots-dir", str(blocker)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"--plots-dir {blocker}: {blocker} is a file, not a folder" in captured.err


def test_predict_output_that_cannot_be_written_stops_before_scoring(demo_csv, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    out = blocker / "scores.csv"
    assert cli.main(["--model-dir", str(tmp_path / "no-models"), "--predict", str(demo_csv),
                     "--output", str(out)]) == 2
    assert f"--output {out}: {blocker} is a file, not a folder" in capsys.readouterr().err
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == read_only
                        else real_access(path, mode, **kw))
    out = read_only / "scores.csv"
    assert cli.main(["--model-dir", str(tmp_path / "no-models"), "--predict", str(demo_csv),
                     "--output", str(out)]) == 2
    # Checked before the models are loaded: the missing model is not what it reports.
    assert f"--output {out}: {read_only} is not writable" in capsys.readouterr().err
    assert cli.main(["--model-dir", str(tmp_path / "no-models"), "--predict", str(demo_csv),
                     "--output", str(tmp_path)]) == 2
    assert f"--output {tmp_path}: {tmp_path} is a folder, not a file" in capsys.readouterr().err


# ---- --predict with the models asked for ---------------------------------------------------

@pytest.fixture
def songs_csv(demo_csv, tmp_path):
    path = tmp_path / "in.csv"
    pd.read_csv(demo_csv).drop(columns=["valence"]).head(30).to_csv(path, index=False)
    return path


def saved_models(trained, folder, kinds):
    """Copy the session's saved bundles of `kinds` into `folder`; return it."""
    folder.mkdir()
    for kind in kinds:
        shutil.copy(bundle_path(trained[0], kind), bundle_path(folder, kind))
    return folder


@pytest.mark.parametrize("saved, model, columns", [
    (("regression", "classification"), None, ["predicted_valence", "valence_low", "valence_high", "predicted_mood"]),
    (("classification",), None, ["predicted_mood"]),
    (("regression",), None, ["predicted_valence", "valence_low", "valence_high"]),
    (("regression", "classification"), "classification", ["predicted_mood"]),
    (("regression", "classification"), "regression", ["predicted_valence", "valence_low", "valence_high"]),
    (("regression", "classification"), "both", ["predicted_valence", "valence_low", "valence_high", "predicted_mood"]),
])
def test_predict_uses_the_asked_for_models_or_every_saved_one(trained, songs_csv, tmp_path, saved, model, columns):
    models = saved_models(trained, tmp_path / "models", saved)
    asked = ["--model", model] if model else []
    assert cli.main(["--model-dir", str(models), "--predict", str(songs_csv), "--output", str(tmp_path / "out.csv"),
                     *asked]) == 0
    scored = pd.read_csv(tmp_path / "out.csv")
    assert list(scored.columns) == ["track_id", "artist_name", "track_name", "genre", *columns, "reason"]
    assert len(scored) == 30


@pytest.mark.parametrize("saved, asked, message", [
    (("classification",), ["--model", "regression"], "no saved regression model at "),
    (("regression",), ["--model", "classification"], "no saved classification model at "),
    (("regression",), ["--model", "both"], "no saved classification model at "),
    ((), [], "no saved model in "),
    (("classification",), ["--explain"], "no saved regression model at "),
    (("regression", "classification"), ["--model", "classification", "--explain"],
     "--explain explains predicted_valence, so it needs the regression model"),
])
def test_predict_without_the_asked_for_model_exits_2(trained, songs_csv, tmp_path, capsys, saved, asked, message):
    models = saved_models(trained, tmp_path / "models", saved)
    assert cli.main(["--model-dir", str(models), "--predict", str(songs_csv), "--output", str(tmp_path / "out.csv"),
                     *asked]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
    assert not (tmp_path / "out.csv").exists()


def test_predict_summary_counts_bad_rows_and_songs_of_an_unseen_genre_or_artist(trained, demo_csv, tmp_path, capsys):
    from valence.model.bundle import load_bundle_from_dir

    known = sorted(load_bundle_from_dir(trained[0], "regression").encoder.artist_table_)[0]
    songs = pd.read_csv(demo_csv).drop(columns=["valence"]).head(6)
    songs["artist_name"] = [known.upper(), "Nobody Heard Of", known, "Nobody Heard Of", known, known]
    songs["energy"] = songs["energy"].astype(object)
    songs.loc[2, "energy"] = "loud"
    songs.loc[0, "genre"] = "Polka"
    songs.to_csv(tmp_path / "in.csv", index=False)
    assert cli.main(["--model-dir", str(trained[0]), "--predict", str(tmp_path / "in.csv"),
                     "--output", str(tmp_path / "out.csv")]) == 0
    out = capsys.readouterr().out
    assert "scored 5 songs" in out
    assert "1 row could not be scored (kept in the output with an empty prediction and the reason):\n  line 4: " in out
    assert "warning: 1 song has a genre the model never saw (predicted as an unseen genre)" in out
    assert "warning: 2 songs have an artist the model never saw (predicted without artist statistics)" in out
    assert len(pd.read_csv(tmp_path / "out.csv")) == 6


def test_messages_say_1_row_and_1_song(demo_csv, tmp_path, capsys, monkeypatch):
    assert cli.main(["--data", str(demo_csv), "--print-batch", "--batch-size", "1"]) == 0
    assert "first training batch of fold model 1 of 10: 1 row; numeric (1, " in capsys.readouterr().out
    from valence.training import commands
    commands.make_demo(tmp_path / "demo.csv", 1, seed=0)
    assert capsys.readouterr().out == f"wrote 1 generated song (not real data) to {tmp_path / 'demo.csv'}\n"


def test_cuda_asked_for_without_one_is_refused_before_training(tmp_path, demo_csv, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: --device cuda is valid here")
    status = cli.main(["--device", "cuda", "--data", str(demo_csv), "--model-dir", str(tmp_path)])
    assert status == 2
    assert "--device cuda was asked for, but PyTorch sees no CUDA device here" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_jobs_that_run_no_torch_model_never_look_for_a_device(monkeypatch):
    def no(requested):
        raise AssertionError(f"resolve_device({requested!r}) called")
    monkeypatch.setattr(cli, "resolve_device", no)
    for job in (["--build-catalog"], ["--predict", "songs.csv"], ["--download"], ["--print-batch"]):
        assert cli.build_options(cli.parse_args(job)).train.device == "cpu"  # --device auto is never resolved
