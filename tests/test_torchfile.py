"""torchfile: files written by torch.save read into numpy arrays without torch, refusing what could run code."""
import io
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from valence.model import torchfile


def saved(payload, path):
    torch.save(payload, path)
    return path


def test_tensors_of_every_dtype_and_layout_read_as_torch_reads_them(tmp_path):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    payload = {
        "dtypes": [torch.tensor([1.5, -2.0], dtype=dtype) if dtype.is_floating_point else
                   torch.tensor([1, 0, 1], dtype=dtype)
                   for dtype in (torch.float32, torch.float64, torch.float16, torch.int64, torch.int32,
                                 torch.int16, torch.int8, torch.uint8, torch.bool)],
        "transposed": base.T,  # strides (1, 10)
        "rows": base[2:4],  # an offset into a storage shared with `base`
        "every_other": base[:, ::2],
        "base": base,
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros((0, 4)),
        "plain": OrderedDict(a=[1, 2.5, "x", None, True], b={"nested": (1, 2)}),
    }
    loaded = torchfile.load(saved(payload, tmp_path / "x.pt"))
    expected = torch.load(tmp_path / "x.pt", weights_only=True)
    for got, want in zip(loaded["dtypes"], expected["dtypes"]):
        assert got.dtype == want.numpy().dtype and np.array_equal(got, want.numpy())
    for key in ("transposed", "rows", "every_other", "base", "scalar", "empty"):
        want = expected[key].numpy()
        assert loaded[key].shape == want.shape and np.array_equal(loaded[key], want), key
    assert loaded["plain"] == {"a": [1, 2.5, "x", None, True], "b": {"nested": (1, 2)}}
    loaded["rows"][0, 0] = -1  # each tensor is its own copy: writing one changes no other
    assert loaded["base"][2, 0] == 20.0


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_global_other_than_tensors_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    path = saved({"weights": torch.ones(2), "hidden": [RunsCode(marker)]}, tmp_path / "x.pt")
    with pytest.raises(torchfile.UnsafeGlobal) as refused:
        torchfile.load(path)
    assert refused.value.name == "io.open" and not marker.exists()


def test_a_storage_numpy_cannot_hold_is_refused(tmp_path):
    with pytest.raises(torchfile.UnsafeGlobal, match="torch.BFloat16Storage"):
        torchfile.load(saved(torch.ones(2, dtype=torch.bfloat16), tmp_path / "x.pt"))


def rewritten(path, change):
    """The zip at `path` with member contents passed through change(name, data)."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, change(info.filename, source.read(info.filename)))
    path.write_bytes(out.getvalue())
    return path


def test_a_storage_shorter_than_its_tensor_is_refused(tmp_path):
    path = rewritten(saved({"w": torch.ones(10)}, tmp_path / "x.pt"),
                     lambda name, data: data[:12] if name.endswith("/data/0") else data)
    with pytest.raises(pickle.UnpicklingError, match="storage 0 holds 12 bytes, expected 10 elements"):
        torchfile.load(path)


def test_a_zip_that_is_not_a_torch_file_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "a zip of something else")
    with pytest.raises(pickle.UnpicklingError, match="no data.pkl"):
        torchfile.load(path)


def test_a_big_endian_torch_file_is_refused(tmp_path):
    path = rewritten(saved({"w": torch.ones(3)}, tmp_path / "x.pt"),
                     lambda name, data: b"big" if name.endswith("/byteorder") else data)
    with pytest.raises(pickle.UnpicklingError, match="big-endian"):
        torchfile.load(path)
