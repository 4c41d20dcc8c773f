"""Saved bundles that are damaged, foreign, from another version or crafted to run code.

tests/test_bundle.py has the first cases (empty, text, a zip stub, cut in half, a
pickle calling os.system, format + 1, wrong kind); these add the rest, prove that the
crafted files really run code when unpickled unsafely, and go through the CLI.
"""
import io
import pickle
import re
import struct
import subprocess
import zipfile

import pytest
import torch

from valence.model.bundle import load_bundle
from valence.config import BUNDLE_FORMAT, ValenceError, bundle_path

from cli_runner import shared_server


@pytest.fixture(scope="module")
def real(trained):
    """The bytes and payload (tensors as torch.load gives them, to save again) of a real regression bundle."""
    path = bundle_path(trained[0], "regression")
    return path.read_bytes(), torch.load(path, weights_only=True)


def write(tmp_path, content, name="regression.pt"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


class RunsCode:
    """Unpickling this calls `function(*args)`: what an attacker puts in a model file."""

    def __init__(self, function, *args):
        self.call = (function, args)

    def __reduce__(self):
        return self.call


def exploits(marker):
    """Payloads that each create `marker` when unpickled without weights_only."""
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
        payload = dict(real[1])
        payload["encoder"] = dict(payload["encoder"], vocab_=exploit)  # deep inside a valid bundle
        return as_torch_file(payload)

    # The file is a real attack: unpickled the unsafe way, it runs its code.
    control = write(tmp_path, craft(proof), "control.pt")
    if wrapping == "plain pickle":
        pickle.loads(control.read_bytes())
    else:
        torch.load(control, weights_only=False)
    assert proof.exists()
    with pytest.raises(ValenceError, match="not a valid model bundle .*unsafe") as refused:
        load_bundle(write(tmp_path, craft(marker)))
    assert not marker.exists()
    message = str(refused.value)
    # Our words only: PyTorch's own message advises loading with weights_only=False or allowlisting the code.
    called = {"exec": "exec", "eval": "eval", "subprocess": "call"}[how]
    assert re.search(rf"Python object \([\w.]*\b{called}\) that a model file never holds and that could run code",
                     message), message
    assert_no_unsafe_advice(message)


def assert_no_unsafe_advice(message):
    for advice in ("weights_only", "safe_globals", "can still be loaded", "\x1b"):
        assert advice not in message, message


@pytest.mark.slow
def test_the_command_line_refuses_a_crafted_bundle_without_running_it(tmp_path, demo_csv):
    marker = tmp_path / "ran"
    models = tmp_path / "models"
    models.mkdir()
    write(models, as_torch_file(exploits(marker)["exec"]))
    server = shared_server()
    for args in (["--skip-training", "--data", demo_csv], ["--predict", demo_csv, "--output", tmp_path / "out.csv"]):
        done = server.run(["--model-dir", models, *args], tmp_path / args[0].strip("-"))
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith(f"error: {models / 'regression.pt'} is not a valid model bundle")
        assert_no_unsafe_advice(done.stderr)
        assert not marker.exists()
    assert not (tmp_path / "out.csv").exists()


# ---- damaged ------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [1, 10, 100, 1000, -1, -22, -100])
def test_a_bundle_cut_anywhere_is_refused(tmp_path, real, keep):
    data = real[0]
    with pytest.raises(ValenceError, match="not a valid model bundle"):
        load_bundle(write(tmp_path, data[:keep % len(data)]))


@pytest.mark.parametrize("member", ["data.pkl", "data/0"])
def test_a_flipped_bit_is_caught_by_the_zip_checksum(tmp_path, real, member):
    """torch.load reads a bundle with a flipped bit without a word; the CRC-32 of the zip catches it."""
    data = bytearray(real[0])
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = next(i for i in archive.infolist() if i.filename.endswith("/" + member))
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    data[info.header_offset + 30 + name_length + extra_length + info.file_size // 2] ^= 0x01
    path = write(tmp_path, bytes(data))
    if member == "data/0":
        torch.load(path, weights_only=True)  # what torch alone would accept
    with pytest.raises(ValenceError, match=f"is damaged: '.*/{member}' inside it fails its checksum"):
        load_bundle(path)


# ---- not a bundle, or not this version's --------------------------------------------------

@pytest.mark.parametrize("payload", [
    "state_dict", torch.zeros(3), [1, 2, 3], {"format": BUNDLE_FORMAT, "kind": "regression"},
])
def test_a_torch_file_that_is_not_a_bundle_is_refused(tmp_path, trained, payload):
    if isinstance(payload, str):  # the usual mistake: a bare state_dict saved by other code
        payload = trained[1].models["regression"].model.state_dict()
    with pytest.raises(ValenceError, match="is not a model bundle of this tool"):
        load_bundle(write(tmp_path, as_torch_file(payload)))


@pytest.mark.parametrize("change, message", [
    ({"format": 0}, "saved in bundle format 0; this version reads format"),
    ({"format": str(BUNDLE_FORMAT)}, f"saved in bundle format '{BUNDLE_FORMAT}'"),
    ({"kind": "svm"}, "does not match this version's model"),
    ({"model_args": {"hidden": [3]}}, "does not match this version's model"),
    ({"encoder": {"n_quantiles": "many"}}, "does not match this version's model"),
])
def test_a_bundle_of_another_version_or_shape_is_refused(tmp_path, real, change, message):
    payload = dict(real[1], state_dict=dict(real[1]["state_dict"]), **change)
    with pytest.raises(ValenceError, match=message):
        load_bundle(write(tmp_path, as_torch_file(payload)))
