"""Saved models: one self-describing safetensors file per model kind, written atomically.

A bundle holds everything needed to rebuild the model: the network's weights and the fitted
encoder's arrays as tensors, and as JSON the architecture arguments, the encoder's settings and
vocabularies, class edges, metrics, settings and provenance (see bundlefile.py). Loading runs no
code from the file and needs no torch: the numpy network predicts, so a serving worker never
imports torch (valence.training.modules.torch_module rebuilds the torch module for training jobs).
"""
import datetime
import pickle
import platform
import shlex
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from valence import __version__
from valence.config import (BUNDLE_FORMAT, CLASS_EDGES, CLASS_NAMES, EARLIER_BUNDLE_SUFFIX, MODEL_KINDS,
                            NAME_RULE, ValenceError, bundle_path)
from valence.fileio import atomic_path
from valence.model import bundlefile
from valence.model.encoder import FeatureEncoder
from valence.model.intervals import Intervals
from valence.model.network import Network, fold_state

REQUIRED_KEYS = ("format", "kind", "model_args", "state_dict", "encoder")
# How torch.save's legacy format starts (its magic number, pickled); its zip format is a zip archive.
TORCH_LEGACY_START = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)[:-1]


@dataclass
class Bundle:
    """A loaded model, ready to predict (network, in numpy), with its metadata."""

    kind: str
    network: Network
    encoder: FeatureEncoder
    meta: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict, repr=False)  # the state dict as float32 numpy arrays
    intervals: Intervals | None = None  # a regression model's interval model (intervals.py)
    _folds: dict = field(default_factory=dict, repr=False, compare=False)  # fold_network's, built on first use

    def fold_network(self, j):
        """Fold model j of the served ensemble as a Network of its own (its members): what predicts the tracks
        of fold j, which it never learned from (honest.py)."""
        if j not in self._folds:
            members = int(self.meta["split"]["members_per_fold"])
            # A classifier's fold model keeps the temperature calibrated on its own out-of-fold rows.
            temperatures = self.meta["split"].get("fold_temperatures") or []
            temperature = temperatures[j] if j < len(temperatures) else self.network.temperature
            self._folds[j] = Network(self.kind, dict(self.meta["model_args"], n_members=members),
                                     fold_state(self.weights, j, members), temperature=temperature)
        return self._folds[j]


def save_bundle(path, kind, weights, model_args, encoder, *, metrics, train_config, data, split, background=None,
                versions=None, intervals=None, temperature=1.0):
    """Write a model bundle to `path` atomically; the previous file survives any failure.

    weights: the network's state dict as numpy arrays (valence.training.modules.state_arrays).
    background: the song explanations are measured against (explain.typical_song of the training split).
    versions: the versions of what trained the model (torch), beside those of valence, numpy and python.
    intervals: a regression model's fitted Intervals (required for one); temperature: what a classification
    model's logits are divided by before the softmax (calibrated out of fold).
    """
    assert kind in MODEL_KINDS, kind
    assert (intervals is not None) == (kind == "regression"), "a regression bundle, and only one, holds intervals"
    extra = {"background": background} if background is not None else {}
    if intervals is not None:
        extra["interval"] = intervals.to_state()
    else:
        extra["temperature"] = float(temperature)
    payload = {
        **extra,
        "format": BUNDLE_FORMAT,
        "kind": kind,
        "model_args": model_args,
        "encoder": encoder.to_state(),
        "class_edges": CLASS_EDGES,
        "class_names": CLASS_NAMES,
        "metrics": metrics,
        "train_config": train_config,
        "data": data,
        "split": split,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"valence": __version__, "numpy": np.__version__, "python": platform.python_version(),
                     **(versions or {})},
        "state_dict": {key: np.asarray(value, dtype=np.float32) for key, value in weights.items()},
    }
    with atomic_path(path) as temporary:
        bundlefile.write(temporary, payload)


def read_bundle(path, kind=None):
    """Return the raw tree of a bundle file, refusing anything that is not one (kind: for the retraining hint)."""
    path = Path(path)
    if path.is_dir():
        raise ValenceError(f"{path} is a directory, not a model bundle")
    try:
        if _saved_by_torch(path):
            raise _earlier_version([path], [kind] if kind else [])
        payload = bundlefile.read(path)
    except (FileNotFoundError, ValenceError):
        raise
    except PermissionError as error:
        raise ValenceError(f"cannot read the model bundle {path}: {error.strerror}") from None
    except bundlefile.Damaged as error:
        raise ValenceError(f"{path} is damaged: {error.part!r} inside it fails its checksum; "
                           f"train the model again or restore a copy") from None
    except bundlefile.NotOurs:
        raise ValenceError(f"{path} is not a model bundle of this tool (it holds tensors without this tool's "
                           f"metadata)") from None
    except Exception as error:  # a damaged or foreign file fails in many ways
        raise ValenceError(f"{path} is not a valid model bundle (damaged, truncated or another kind of file): "
                           f"{_unreadable_reason(path, error)}; train the model again or restore a copy you trust"
                           ) from None
    # The format first: a bundle of another version may lack any other key, or hold it in another shape.
    problem = "format" in payload and bundlefile.format_problem(payload["format"], BUNDLE_FORMAT, "bundle",
                                                                f"train the model again with this version: "
                                                                f"{_train_command(path, kind)}",
                                                                "use that version, or train the model again "
                                                                "with this one")
    if problem:
        raise ValenceError(f"{path} {problem}")
    if any(key not in payload for key in REQUIRED_KEYS):
        raise ValenceError(f"{path} is not a model bundle of this tool (required keys: {', '.join(REQUIRED_KEYS)})")
    return payload


def _train_command(path, kind):
    """The command that trains a bundle of `kind` into the folder of `path` again, in backquotes."""
    return (f"`python musical_valence_predictor.py --model {kind or _file_kind(path)} "
            f"--model-dir {shlex.quote(str(Path(path).parent))}`")


def _file_kind(path):
    """The kind a bundle's file name says (regression.safetensors), else regression."""
    stem = Path(path).stem
    return stem if stem in MODEL_KINDS else "regression"


def _saved_by_torch(path):
    """Whether a file is one torch.save wrote (a zip archive, or its legacy pickle): an earlier version's bundle."""
    with open(path, "rb") as handle:
        start = handle.read(len(TORCH_LEGACY_START))
    return start == TORCH_LEGACY_START or (start.startswith(b"PK") and zipfile.is_zipfile(path))


def _unreadable_reason(path, error):
    """Say in our words why safetensors refused a file."""
    text = str(error)
    if path.stat().st_size < 8:
        return "it is empty or too short"
    if "incomplete metadata" in text or "not fully covered" in text:
        return "it ends too early"
    if "header" in text:
        return "it is not a safetensors file, or its header is damaged"
    return f"its contents do not fit together ({text.splitlines()[0][:120]})" if text else "it cannot be read"


def _earlier_version(paths, kinds):
    """The error for bundles an earlier version saved (torch files), saying how to train them again."""
    model = "both" if len(set(kinds)) > 1 else (kinds[0] if kinds else None)
    folder = shlex.quote(str(paths[0].parent))
    files = " and ".join(str(p) for p in paths)
    return ValenceError(
        f"{files} {'was' if len(paths) == 1 else 'were'} saved by an earlier version of this tool in a format this "
        f"version no longer reads (nothing in {'it' if len(paths) == 1 else 'them'} was loaded); train again with "
        f"`python musical_valence_predictor.py {f'--model {model} ' if model else ''}--model-dir {folder}`")


def refuse_earlier_bundles(model_dir, kinds):
    """Raise the retraining error if `model_dir` holds bundles of `kinds` saved by an earlier version only."""
    earlier = [kind for kind in kinds if _earlier_path(bundle_path(model_dir, kind)).is_file()]
    if earlier:
        raise _earlier_version([_earlier_path(bundle_path(model_dir, kind)) for kind in earlier], earlier)


def _earlier_path(path):
    return Path(path).with_suffix(EARLIER_BUNDLE_SUFFIX)


def load_bundle(path, kind=None, encoders=None):
    """Load and rebuild the model in a bundle file; raise ValenceError with the reason if it cannot.

    encoders: a list of (saved state, FeatureEncoder) of bundles loaded before; a bundle whose
    encoder state equals one of them shares that encoder (a training run fits both kinds' encoders
    on the same rows), and its own is appended otherwise.
    """
    try:
        payload = read_bundle(path, kind)
    except FileNotFoundError:
        if _earlier_path(path).is_file():
            raise _earlier_version([_earlier_path(path)], [kind] if kind else []) from None
        what = f"{kind} model" if kind else "model"
        # One instruction, naming the folder this run looked in (a default folder would be wrong advice).
        raise ValenceError(
            f"no saved {what} at {path}: train one first with `python musical_valence_predictor.py "
            f"--model {kind or 'regression'} --model-dir {shlex.quote(str(Path(path).parent))}`") from None
    if kind is not None and payload["kind"] != kind:
        raise ValenceError(f"{path} holds a {payload['kind']} model, expected a {kind} model")
    try:
        weights = {key: np.asarray(value, dtype=np.float32) for key, value in dict(payload["state_dict"]).items()}
        network = Network(payload["kind"], payload["model_args"], weights,
                          temperature=float(payload.get("temperature", 1.0)))
        intervals = Intervals.from_state(payload["interval"]) if payload["kind"] == "regression" else None
        state = payload["encoder"]
        rule = state["name_rule"]  # bundles of format 6 on record it; earlier ones are refused by their format
        if rule != NAME_RULE:  # its artist, song and genre tables are keyed by another rule's names
            raise ValenceError(
                f"{path} matches names by name rule {rule!r}, not rule {NAME_RULE} that this "
                f"version uses (Unicode NFKC, case folded, whitespace collapsed), so names spelt another way would "
                f"silently miss its artist statistics: train the model again with this version: "
                f"{_train_command(path, kind or payload['kind'])}")
        encoder = next((known for saved, known in encoders or () if _same(saved, state)), None)
        if encoder is None:
            encoder = FeatureEncoder.from_state(state)
            if encoders is not None:
                encoders.append((state, encoder))
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise ValenceError(f"{path} does not match this version's model: {str(error).splitlines()[0][:200]}") from None
    meta = {key: value for key, value in payload.items() if key not in ("state_dict", "encoder", "interval")}
    return Bundle(kind=payload["kind"], network=network, encoder=encoder, meta=meta, weights=weights,
                  intervals=intervals)


def _same(a, b):
    """Whether two trees of plain values and arrays are equal (== on a dict of arrays is ambiguous)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    return type(a) is type(b) and a == b  # lists hold no arrays (bundlefile stores none there)


def load_bundle_from_dir(model_dir, kind, encoders=None):
    """Load the bundle of a model kind from a model directory (encoders: see load_bundle)."""
    return load_bundle(bundle_path(model_dir, kind), kind, encoders)
