"""The models a process serves, with the version that ties them to the catalog scored with them."""
import hashlib
import os
from dataclasses import dataclass

from .config import MODEL_KINDS, ValenceError, bundle_path
from .predict import Predictor

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
