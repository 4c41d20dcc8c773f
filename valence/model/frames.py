"""The Python API: the saved models of a folder, loaded once; songs in a DataFrame in, one row out per row in.

    from valence import ValenceModel
    model = ValenceModel("models")          # the folder a training run saved to
    scores = model.predict(songs)           # valence and its 90 % interval, mood and its probabilities, ...
    reasons = model.explain(songs)          # prediction, base_value, one contribution_<group> per group

Songs are checked by the rules `--predict` applies to a CSV: the frame is read through the same loader
(written to a temporary CSV first), so a value the command line refuses is refused here with the same
reason, and a row that cannot be scored keeps its place with an empty prediction and that reason.
"""
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from valence.config import MODELS_DIR, ValenceError
from valence.data.load import iter_feature_chunks
from valence.model.explain import GROUPS, Explainer
from valence.model.intervals import DEFAULT_LEVEL, check_level
from valence.model.predictor import Predictor

REASON = "reason"  # why a row was not scored; "" when it was
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what the loader counts as one line end
FRAME_NAME = "the DataFrame"  # how messages name the frame (never the temporary file)


class ValenceModel:
    """The saved models of a folder (regression, classification or both), ready to score DataFrames."""

    def __init__(self, model_dir=MODELS_DIR):
        """Load every saved model kind of `model_dir`; refuse a folder without one, as the command line does."""
        self.model_dir = Path(model_dir)
        self.predictor = Predictor.from_model_dir(self.model_dir)
        self._explainer = None

    def __repr__(self):
        kinds = [kind for kind in ("regression", "classification") if getattr(self.predictor, kind) is not None]
        return f"ValenceModel({str(self.model_dir)!r}, kinds={kinds})"

    def predict(self, songs, level=DEFAULT_LEVEL):
        """Return one row per row of `songs`, in order and with its index: `valence` with its interval at `level`
        (`valence_low`, `valence_high`; regression), `mood` and `p_sad`, `p_neutral`, `p_happy`
        (classification), `warnings` (a list per row: values the model never saw) and `reason` (why a row
        could not be scored; "" when it was)."""
        level = _level(level)
        out = _empty(songs, self.predictor.output_columns())
        for positions, clean in _clean_chunks(songs, out):
            result = self.predictor.predict(clean, level)
            for name, values in result.columns().items():
                values = values if name == "mood" else np.asarray(values, dtype=np.float64)
                out.iloc[positions, out.columns.get_loc(name)] = values
            out.iloc[positions, out.columns.get_loc("warnings")] = pd.Series(result.warnings, dtype=object).values
        return out

    def explain(self, songs):
        """Return one row per row of `songs`: the regression model's `prediction`, `base_value` and one
        `contribution_<group>` per feature group (they add up to the prediction), and `reason`."""
        if self.predictor.regression is None:
            raise ValenceError(f"explanations are of the valence: {self.model_dir} has no regression model; "
                               f"train one with `python musical_valence_predictor.py --model-dir {self.model_dir}`")
        if self._explainer is None:
            self._explainer = Explainer(self.predictor.regression)
        out = _empty(songs, ["prediction", "base_value", *(f"contribution_{group}" for group in GROUPS)])
        out = out.drop(columns="warnings")
        for positions, clean in _clean_chunks(songs, out):
            explanation = self._explainer.explain(clean)
            out.iloc[positions, out.columns.get_loc("prediction")] = explanation.prediction.astype(np.float64)
            out.iloc[positions, out.columns.get_loc("base_value")] = explanation.base_value
            for j, group in enumerate(explanation.groups):
                column = out.columns.get_loc(f"contribution_{group}")
                out.iloc[positions, column] = explanation.contributions[:, j].astype(np.float64)
        return out


def _level(level):
    """The interval level as a float between 0 and 1, or the ValenceError that says what is expected."""
    try:
        return check_level(level)
    except ValueError as error:
        raise ValenceError(str(error)) from None


def _empty(songs, columns):
    """Return the output frame of `songs`: NaN values, no warnings, and a reason to be filled in."""
    if not isinstance(songs, pd.DataFrame):
        raise ValenceError(f"songs must be a pandas DataFrame with the Kaggle columns, not {type(songs).__name__}")
    out = pd.DataFrame(index=songs.index)
    for column in columns:
        out[column] = None if column == "mood" else np.nan
    out["warnings"] = pd.Series([[] for _ in range(len(songs))], index=songs.index, dtype=object)
    out[REASON] = ""
    return out


def _clean_chunks(songs, out):
    """Yield (positions in `songs`, clean frame) of the rows that can be scored; write the others' reasons."""
    if len(songs) == 0:
        return
    # The loader names a record by the physical line it starts on: line 2 for the first song, and a
    # song whose names hold line breaks takes as many more lines.
    text = songs.astype(str)
    breaks = sum(text[column].str.count(LINE_BREAK.pattern) for column in text.columns).to_numpy()
    first_lines = 2 + np.concatenate([[0], np.cumsum(1 + breaks)[:-1]])
    position_of = dict(zip(first_lines.tolist(), range(len(songs))))
    with tempfile.TemporaryDirectory(prefix="valence-frame-") as folder:
        path = Path(folder) / "songs.csv"
        songs.to_csv(path, index=False, lineterminator="\n")
        try:
            for clean, bad in iter_feature_chunks(path):
                for line, reason in bad:
                    out.iloc[position_of[line], out.columns.get_loc(REASON)] = reason
                if len(clean):
                    positions = [position_of[line] for line in clean["line"].tolist()]
                    yield positions, clean
        except ValenceError as error:
            raise ValenceError(str(error).replace(str(path), FRAME_NAME)) from None
