"""Predictions from saved bundles: bundles in, predictions out (no training or CSV code); the bundles of a
model folder loaded with their version."""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from valence.model.artists import matched_artists
from valence.model.bundle import load_bundle_from_dir, refuse_earlier_bundles
from valence.model.honest import honest as honest_outputs
from valence.model.intervals import DEFAULT_LEVEL
from valence.config import CATEGORICAL_FEATURES, CLASS_NAMES, MODEL_KINDS, ValenceError, bundle_path


@dataclass
class Prediction:
    """Predictions for a batch of songs, row for row."""

    valence: np.ndarray | None  # None without a regression bundle
    mood: list | None  # None without a classification bundle
    mood_probabilities: np.ndarray | None
    warnings: list
    low: np.ndarray | None = None  # each valence's interval at `level` (intervals.py), with the valence
    high: np.ndarray | None = None
    level: object = DEFAULT_LEVEL  # one level for every song, or one per song
    sigma: np.ndarray | None = None  # each valence's difficulty and group (Intervals.parts): what a catalog keeps
    group: np.ndarray | None = None

    def columns(self):
        """Every predicted value by output column (Predictor.output_columns), one entry per song: valence,
        valence_low and valence_high, mood, and a p_<mood> per mood."""
        columns = {}
        if self.valence is not None:
            columns.update(valence=self.valence, valence_low=self.low, valence_high=self.high)
        if self.mood is not None:
            columns["mood"] = self.mood
            for j, name in enumerate(CLASS_NAMES):
                columns[f"p_{name}"] = self.mood_probabilities[:, j]
        return columns

    def interval(self, i):
        """Song i's interval as an API answer holds it, {"level", "low", "high"}; None without a valence."""
        if self.valence is None:
            return None
        level = self.level if np.ndim(self.level) == 0 else self.level[i]
        return {"level": float(level), "low": float(self.low[i]), "high": float(self.high[i])}


class Predictor:
    """Score songs with a regression bundle, a classification bundle, or both."""

    def __init__(self, regression=None, classification=None):
        if regression is None and classification is None:
            raise ValueError("a Predictor needs a regression or a classification bundle")
        self.regression = regression
        self.classification = classification

    @classmethod
    def from_model_dir(cls, model_dir, required=(), optional=MODEL_KINDS):
        """Load the bundles of the `required` kinds, and of the `optional` kinds that are saved in `model_dir`.

        By default every saved kind is loaded, and at least one must be: a folder trained with
        `--model classification` serves moods without a valence.
        """
        encoders = []  # the kinds' encoders, shared when equal
        bundles = {kind: load_bundle_from_dir(model_dir, kind, encoders) for kind in MODEL_KINDS
                   if kind in required or (kind in optional and bundle_path(model_dir, kind).exists())}
        if not bundles:
            refuse_earlier_bundles(model_dir, optional)
            looked = " or ".join(str(bundle_path(model_dir, kind)) for kind in optional)
            raise ValenceError(f"no saved model in {model_dir} (looked for {looked}); train one first with "
                               f"`python musical_valence_predictor.py --model-dir {model_dir}`")
        return cls(**bundles)

    def output_columns(self):
        """The value columns of the served models' predictions, in order (Prediction.columns)."""
        return ((["valence", "valence_low", "valence_high"] if self.regression is not None else [])
                + (["mood", *(f"p_{name}" for name in CLASS_NAMES)] if self.classification is not None else []))

    def predict(self, frame, level=DEFAULT_LEVEL, honest=False):
        """Return the predictions for every row of `frame` in one forward pass per model (numpy: see network.py),
        each valence with its interval at `level` (one for all rows, or one per row).

        honest: rows of tracks the models learned from (a catalog of the training file) are predicted by
        networks that never saw them, on statistics without their own valence (honest.py)."""
        valence = mood = probabilities = low = high = sigma = group = None
        artists = matched_artists(frame)  # folded once for the encoding, the honest plan and the warnings
        encoded = {}  # by encoder: the two kinds usually share one (see from_model_dir), so rows are encoded once
        for bundle in (self.regression, self.classification):
            if bundle is not None and id(bundle.encoder) not in encoded:
                encoded[id(bundle.encoder)] = bundle.encoder.transform(frame, artists)
        outputs = {}
        for bundle in (self.regression, self.classification):
            if bundle is not None:
                arrays = encoded[id(bundle.encoder)]
                outputs[bundle.kind] = (honest_outputs(bundle, frame, arrays, artists) if honest
                                        else (bundle.network.predict(arrays), arrays))
        if self.regression is not None:
            valence, arrays = outputs["regression"]
            sigma, group = self.regression.intervals.parts(arrays, valence)
            low, high = self.regression.intervals.bounds(valence, sigma, group, level)
        if self.classification is not None:
            probabilities = outputs["classification"][0]
            mood = [CLASS_NAMES[i] for i in probabilities.argmax(axis=1)]
        encoder = (self.regression or self.classification).encoder
        return Prediction(valence=valence, mood=mood, mood_probabilities=probabilities,
                          warnings=unknown_category_warnings(encoder, frame, artists), low=low, high=high, level=level,
                          sigma=sigma, group=group)

    def metadata(self):
        """Return what is loaded, as plain JSON-able values."""
        bundles = {"regression": self.regression, "classification": self.classification}
        return {kind: describe(bundle) for kind, bundle in bundles.items() if bundle is not None}


def describe(bundle):
    """Return a bundle's metadata without its weights or encoder internals."""
    meta = bundle.meta
    keys = ("kind", "created_at", "data", "split", "metrics", "train_config", "model_args", "versions",
            "class_edges", "class_names")
    described = {key: meta.get(key) for key in keys}
    # The server's own folders are nobody's business: name the training file, not its path.
    if isinstance(described["data"], dict) and "path" in described["data"]:
        described["data"] = {**described["data"], "path": Path(described["data"]["path"]).name}
    if isinstance(described["metrics"], dict) and "data_path" in described["metrics"]:
        described["metrics"] = {**described["metrics"], "data_path": Path(described["metrics"]["data_path"]).name}
    described["features"] = bundle.encoder.feature_names()
    return described


def unknown_category_warnings(encoder, frame, artists=None):
    """Return, per row, a warning for each categorical value and artist the model never saw in training
    (`artists`: the frame's matched_artists, when the caller has them already)."""
    warnings = [[] for _ in range(len(frame))]
    for column in CATEGORICAL_FEATURES:
        if column not in frame:
            continue
        unknown = np.flatnonzero(~encoder.known(frame, column))
        values = frame[column].astype(str).to_numpy()
        for row in unknown:
            warnings[row].append(f"unknown {column} {values[row]!r}: predicted as an unseen {column}")
    names = frame["artist_name"].to_numpy() if "artist_name" in frame else ()
    messages = {}
    for row in np.flatnonzero(encoder.unknown_artists(frame, artists)):
        message = messages.get(names[row])  # one per artist: a file of new artists has one on every row
        if message is None:
            message = messages[names[row]] = f"unknown artist_name {names[row]!r}: predicted as an unseen artist"
        warnings[row].append(message)
    return warnings


VERSION_CHARS = 12  # of the sha256: enough to tell models apart, short enough to read


def bundle_signature(model_dir):
    """Return what identifies the bundle files now in `model_dir` (a save renames a new file over the old)."""
    signature = []
    for kind in MODEL_KINDS:
        try:
            stat = os.stat(bundle_path(model_dir, kind))
        except OSError:
            signature.append((kind, None))
        else:
            signature.append((kind, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


def model_version(model_dir):
    """Return a short sha256 of the bundle files in `model_dir` (their kinds and bytes)."""
    digest = hashlib.sha256()
    for kind in MODEL_KINDS:
        path = bundle_path(model_dir, kind)
        if not path.is_file():
            continue
        digest.update(kind.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:VERSION_CHARS]


@dataclass(frozen=True)
class Models:
    """A loaded predictor, its version and the signature of the files it was loaded from."""

    predictor: Predictor
    version: str
    signature: tuple


def load_models(model_dir, attempts=5):
    """Load the bundles of `model_dir` with their version, both from the same files.

    A training run replaces the files one at a time: when one changes while it is
    read, it is read again, so the version always names the weights loaded.
    """
    for _attempt in range(attempts):
        before = bundle_signature(model_dir)
        try:
            version = model_version(model_dir)
        except OSError:
            continue  # replaced while hashed
        predictor = Predictor.from_model_dir(model_dir)
        if bundle_signature(model_dir) == before:
            return Models(predictor, version, before)
    raise ValenceError(f"the models in {model_dir} kept changing while they were loaded "
                       "(is a training run saving them?); try again when it has finished")
