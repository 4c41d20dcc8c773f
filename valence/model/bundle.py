"""Saved models: one self-describing file per model kind, written atomically.

A bundle is a plain dict of tensors and plain Python values, so it loads with
`torch.load(path, weights_only=True)` (no code runs while unpickling) and holds
everything needed to rebuild the model: architecture arguments, weights, the
fitted encoder's state, class edges, metrics, settings and provenance.

Loading reads it with torchfile.load (the same refusals, tensors as numpy arrays) and
predicts with the numpy network: torch is imported only when the torch model is asked
for (training, explanations), so a serving worker never imports it.
"""
import datetime
import functools
import pickle
import platform
import shlex
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from valence import __version__
from valence.model import torchfile
from valence.config import BUNDLE_FORMAT, CLASS_EDGES, CLASS_NAMES, MODEL_KINDS, ValenceError, bundle_path
from valence.model.encoder import FeatureEncoder
from valence.fileio import atomic_path
from valence.model.network import Network

REQUIRED_KEYS = ("format", "kind", "model_args", "state_dict", "encoder")


@dataclass
class Bundle:
    """A loaded model, ready to predict (network, in numpy), with its metadata."""

    kind: str
    network: Network
    encoder: FeatureEncoder
    meta: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict, repr=False)  # the state dict as numpy arrays

    @functools.cached_property
    def model(self):
        """The network as the torch module it was trained as (imports torch), in eval mode."""
        import torch
        from valence.training.modules import build_model
        model = build_model(self.kind, self.meta["model_args"])
        model.load_state_dict({key: torch.from_numpy(value) for key, value in self.weights.items()})
        return model.eval()


def to_plain(value):
    """Return `value` with numpy scalars and arrays, tuples and paths turned into plain types."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    for plain in (bool, int, float, str):  # exact types: subclasses (torch's version string) don't unpickle safely
        if isinstance(value, plain):
            return plain(value)
    return None if value is None else str(value)


def save_bundle(path, kind, model, model_args, encoder, *, metrics, train_config, data, split, background=None):
    """Write a model bundle to `path` atomically; the previous file survives any failure.

    background: the song explanations are measured against (explain.typical_song of the training split).
    """
    import torch
    assert kind in MODEL_KINDS, kind
    extra = {"background": background} if background is not None else {}
    payload = to_plain({
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
        "versions": {
            "valence": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    })
    # Detached CPU copies: the file must load on a machine without the training device.
    payload["state_dict"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def read_bundle(path):
    """Return the raw dict of a bundle file, refusing anything that is not one."""
    try:
        payload = _load(path)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise ValenceError(f"{path} is a directory, not a model bundle") from None
    except PermissionError as error:
        raise ValenceError(f"cannot read the model bundle {path}: {error.strerror}") from None
    except Exception as error:  # a damaged or foreign file fails in many ways
        _refuse_if_damaged(path)  # a flipped bit is the clearer reason
        raise ValenceError(f"{path} is not a valid model bundle (damaged, truncated or unsafe): "
                           f"{_unreadable_reason(error)}; train the model again or restore a copy you trust") from None
    _refuse_if_damaged(path)
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        raise ValenceError(f"{path} is not a model bundle of this tool (required keys: {', '.join(REQUIRED_KEYS)})")
    if payload["format"] != BUNDLE_FORMAT:
        raise ValenceError(
            f"{path} was saved in bundle format {payload['format']!r}; this version reads format "
            f"{BUNDLE_FORMAT}: train the model again with this version")
    return payload


def _load(path):
    """The object in a torch.save file: torch's zip format read without torch, other formats by torch.load."""
    if zipfile.is_zipfile(path):
        return torchfile.load(path)
    import torch  # torch's legacy format, or not a torch file at all: torch.load tells which, running no code
    return torch.load(path, map_location="cpu", weights_only=True)


def _unreadable_reason(error):
    """Say in our words why a file was refused; never pass on torch's advice to load it unsafely."""
    text = str(error)
    if isinstance(error, torchfile.UnsafeGlobal) or (
            isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in text):
        found = re.search(r"Unsupported global: (?:GLOBAL )?([\w.]{1,80})", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"it holds a Python object{what} that a model file never holds and that could run code "
                f"when loaded; nothing in it was run")
    if isinstance(error, EOFError):
        return "it is empty or ends too early"
    if isinstance(error, RuntimeError) and "zip archive" in text:
        return "its zip archive is damaged or truncated"
    return "it is not a file written by torch.save"


def _refuse_if_damaged(path):
    damaged = _failed_checksum(path)
    if damaged:
        raise ValenceError(f"{path} is damaged: {damaged!r} inside it fails its checksum; "
                           f"train the model again or restore a copy") from None


def _failed_checksum(path):
    """Return the first member of a bundle's zip archive whose CRC-32 fails (torch.load checks none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except zipfile.BadZipFile:
        return None  # torch's older, non-zip format: nothing to check
    except (OSError, EOFError, RuntimeError, ValueError):
        return "the zip directory"


def load_bundle(path, kind=None, encoders=None):
    """Load and rebuild the model in a bundle file; raise ValenceError with the reason if it cannot.

    encoders: a list of (saved state, FeatureEncoder) of bundles loaded before; a bundle whose
    encoder state equals one of them shares that encoder (a training run fits both kinds' encoders
    on the same rows), and its own is appended otherwise.
    """
    try:
        payload = read_bundle(path)
    except FileNotFoundError:
        what = f"{kind} model" if kind else "model"
        # One instruction, naming the folder this run looked in (a default folder would be wrong advice).
        raise ValenceError(
            f"no saved {what} at {path}: train one first with `python musical_valence_predictor.py "
            f"--model {kind or 'regression'} --model-dir {shlex.quote(str(Path(path).parent))}`") from None
    if kind is not None and payload["kind"] != kind:
        raise ValenceError(f"{path} holds a {payload['kind']} model, expected a {kind} model")
    try:
        # numpy float32 whatever the reader gave (torchfile: arrays; torch.load of a legacy file: tensors)
        weights = {key: np.asarray(value, dtype=np.float32) for key, value in dict(payload["state_dict"]).items()}
        network = Network(payload["kind"], payload["model_args"], weights)
        state = payload["encoder"]
        encoder = next((known for saved, known in encoders or () if saved == state), None)
        if encoder is None:
            encoder = FeatureEncoder.from_state(state)
            if encoders is not None:
                encoders.append((state, encoder))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValenceError(f"{path} does not match this version's model: {str(error).splitlines()[0][:200]}") from None
    meta = {key: value for key, value in payload.items() if key not in ("state_dict", "encoder")}
    return Bundle(kind=payload["kind"], network=network, encoder=encoder, meta=meta, weights=weights)


def load_bundle_from_dir(model_dir, kind, encoders=None):
    """Load the bundle of a model kind from a model directory (encoders: see load_bundle)."""
    return load_bundle(bundle_path(model_dir, kind), kind, encoders)
