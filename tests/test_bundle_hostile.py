"""Saved bundles that are damaged, foreign, from another version or crafted to run code.

tests/test_bundle.py has the first cases (empty, text, a zip stub, cut in half, format + 1,
wrong kind, the earlier version's torch files); these add the rest, prove that the crafted
files really run code when unpickled, and go through the CLI.
"""
import io
import json
import pickle
import subprocess

import numpy as np
import pytest
import safetensors.numpy
import torch

from valence.model import bundlefile
from valence.model.bundle import load_bundle
from valence.config import BUNDLE_FORMAT, ValenceError, bundle_path

from cli_runner import shared_server


@pytest.fixture(scope="module")
def real(trained):
    """The bytes and the tree (arrays as numpy arrays, to save again) of a real regression bundle."""
    path = bundle_path(trained[0], "regression")
    return path.read_bytes(), bundlefile.read(path)


def write(tmp_path, content, name="regression.safetensors"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def rewritten(tmp_path, tree):
    path = tmp_path / "regression.safetensors"
    bundlefile.write(path, tree)
    return path


class RunsCode:
    """Unpickling this calls `function(*args)`: what an attacker puts in a model file."""

    def __init__(self, function, *args):
        self.call = (function, args)

    def __reduce__(self):
        return self.call


def exploits(marker):
    """Payloads that each create `marker` when unpickled."""
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "exec": RunsCode(exec, code),
        "eval": RunsCode(eval, f"__import__('builtins').exec({code!r})"),
        "subprocess": RunsCode(subprocess.call, ["touch", str(marker)]),
    }


def as_torch_file(payload, legacy=False):
    buffer = io.BytesIO()
    torch.save(payload, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


# ---- crafted to run code ----------------------------------------------------------------

@pytest.mark.parametrize("how", ["exec", "eval", "subprocess"])
@pytest.mark.parametrize("wrapping", ["torch file, bare", "torch file, inside a whole bundle",
                                      "legacy torch file", "plain pickle"])
def test_code_in_a_model_file_never_runs(tmp_path, real, how, wrapping):
    proof, marker = tmp_path / "ran-when-unsafe", tmp_path / "ran"

    def craft(target):
        exploit = exploits(target)[how]
        if wrapping == "plain pickle":
            return pickle.dumps(exploit, protocol=2)
        if wrapping in ("torch file, bare", "legacy torch file"):
            return as_torch_file(exploit, legacy=wrapping.startswith("legacy"))
        payload = dict(real[1], state_dict={})
        payload["encoder"] = dict(payload["encoder"], vocab_=exploit)  # deep inside a bundle of the earlier kind
        return as_torch_file(payload)

    # The file is a real attack: unpickled, it runs its code.
    control = write(tmp_path, craft(proof), "control.pt")
    if wrapping == "plain pickle":
        pickle.loads(control.read_bytes())
    else:
        torch.load(control, weights_only=False)
    assert proof.exists()
    expected = "not a valid model bundle" if wrapping == "plain pickle" else "saved by an earlier version"
    with pytest.raises(ValenceError, match=expected) as refused:
        load_bundle(write(tmp_path, craft(marker)))
    assert not marker.exists()
    assert_no_unsafe_advice(str(refused.value))


def assert_no_unsafe_advice(message):
    for advice in ("weights_only", "safe_globals", "can still be loaded", "\x1b", "\n"):
        assert advice not in message, message


@pytest.mark.slow
@pytest.mark.parametrize("name", ["regression.safetensors", "regression.pt"])
def test_the_command_line_refuses_a_crafted_bundle_without_running_it(tmp_path, demo_csv, name):
    marker = tmp_path / "ran"
    models = tmp_path / "models"
    models.mkdir()
    write(models, as_torch_file(exploits(marker)["exec"]), name)
    server = shared_server()
    for args in (["--skip-training", "--data", demo_csv], ["--predict", demo_csv, "--output", tmp_path / "out.csv"]):
        done = server.run(["--model-dir", models, *args], tmp_path / args[0].strip("-"))
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith(f"error: {models / name} was saved by an earlier version"), done.stderr
        assert f"--model-dir {models}`" in done.stderr
        assert_no_unsafe_advice(done.stderr.rstrip("\n"))
        assert not marker.exists()
    assert not (tmp_path / "out.csv").exists()


# ---- damaged ------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [1, 7, 8, 10, 100, 1000, -1, -22, -100])
def test_a_bundle_cut_anywhere_is_refused(tmp_path, real, keep):
    data = real[0]
    with pytest.raises(ValenceError, match="not a valid model bundle"):
        load_bundle(write(tmp_path, data[:keep % len(data)]))


def header_end(data):
    return 8 + int.from_bytes(data[:8], "little")


@pytest.mark.parametrize("part", ["metadata", "state_dict/members.0.0.weight", "encoder/artist_table/rows",
                                  "encoder/reference/artist_codes"])
def test_a_flipped_bit_is_caught_by_the_checksums(tmp_path, real, part):
    """safetensors reads a bundle with a flipped bit without a word; the bundle's CRC-32s catch it."""
    data = bytearray(real[0])
    header = json.loads(bytes(data[8:header_end(data)]))
    if part == "metadata":
        at = bytes(data).index(b'created_at\\":\\"') + len(b'created_at\\":\\"')  # a digit of the year
    else:
        at = header_end(data) + sum(header[part]["data_offsets"]) // 2
    data[at] ^= 0x01
    path = write(tmp_path, bytes(data))
    safetensors.numpy.load_file(path)  # what safetensors alone accepts
    with pytest.raises(ValenceError, match=f"is damaged: '{part}' inside it fails its checksum"):
        load_bundle(path)


# ---- not a bundle, or not this version's --------------------------------------------------

def test_a_safetensors_file_that_is_not_a_bundle_is_refused(tmp_path, real):
    """The usual mistake: a bare state dict saved by other code."""
    path = tmp_path / "regression.safetensors"
    safetensors.numpy.save_file(real[1]["state_dict"], path, metadata={"format": "pt"})
    with pytest.raises(ValenceError, match="is not a model bundle of this tool"):
        load_bundle(path)


@pytest.mark.parametrize("tree", [{"format": BUNDLE_FORMAT, "kind": "regression"}, {"weights": np.zeros(3)}])
def test_a_tree_that_is_not_a_bundle_is_refused(tmp_path, tree):
    with pytest.raises(ValenceError, match="is not a model bundle of this tool"):
        load_bundle(rewritten(tmp_path, tree))


@pytest.mark.parametrize("change, message", [
    ({"format": 0}, f"written in bundle format 0, older than format {BUNDLE_FORMAT} that this version reads: train"),
    ({"format": str(BUNDLE_FORMAT)}, f"has no bundle format version that this tool knows \\('{BUNDLE_FORMAT}'"),
    ({"format": 4}, f"written in bundle format 4, older than format {BUNDLE_FORMAT} that this version reads"),
    ({"format": BUNDLE_FORMAT + 1}, f"written by a newer version of this tool, in bundle format {BUNDLE_FORMAT + 1}; "
                                    f"this version reads format {BUNDLE_FORMAT}: use that version"),
    ({"kind": "svm"}, "does not match this version's model"),
    ({"model_args": {"hidden": [3]}}, "does not match this version's model"),
    ({"encoder": {"n_quantiles": "many"}}, "does not match this version's model"),
    ({"state_dict": {"members.0.0.weight": np.zeros((2, 2), dtype=np.float32)}}, "does not match this version's"),
    ({"state_dict": "weights"}, "does not match this version's model"),
])
def test_a_bundle_of_another_version_or_shape_is_refused(tmp_path, real, change, message):
    tree = dict(real[1], **change)
    with pytest.raises(ValenceError, match=message):
        load_bundle(rewritten(tmp_path, tree))


def test_the_encoders_arrays_must_fit_its_settings(tmp_path, real):
    encoder = dict(real[1]["encoder"])
    encoder["artist_table"] = dict(encoder["artist_table"], rows=encoder["artist_table"]["rows"][:, :3])
    with pytest.raises(ValenceError, match="does not match this version's model"):
        load_bundle(rewritten(tmp_path, dict(real[1], encoder=encoder)))
