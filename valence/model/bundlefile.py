"""A tree of plain values and numpy arrays as one safetensors file: the arrays as tensors, the rest as JSON.

Every array of the tree becomes a tensor named by its path ("state_dict/members.0.0.weight",
"encoder/artist_table/rows"); what is left, dicts, lists, strings, numbers, booleans and None, is one
JSON text under the METADATA_KEY of safetensors' string metadata, with a CRC-32 of the text and of each
tensor's bytes (safetensors checks none, and a flipped bit would otherwise load without a word).
Reading runs no code from the file: safetensors parses a JSON header and copies out raw arrays.
"""
import json
import zlib

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

METADATA_KEY = "valence"  # the tree's JSON text
CHECKSUM_KEY = "valence.crc32"  # JSON of {"metadata": crc of the text, tensor name: crc of its bytes}
SEPARATOR = "/"


class NotOurs(ValueError):
    """A valid safetensors file that holds no tree of this module (another program's weights)."""


class Damaged(ValueError):
    """A part of the file fails its checksum; `part` names it ("metadata" or a tensor's name)."""

    def __init__(self, part):
        super().__init__(f"{part!r} fails its checksum")
        self.part = part


def write(path, tree):
    """Write `tree` (a dict of plain values and numpy arrays, at any depth) to `path` as safetensors."""
    plain, arrays = _split(tree, ())
    text = json.dumps(plain, separators=(",", ":"))
    checksums = {"metadata": zlib.crc32(text.encode()), **{name: _crc(array) for name, array in arrays.items()}}
    save_file(arrays, str(path), metadata={METADATA_KEY: text, CHECKSUM_KEY: json.dumps(checksums)})


def read(path):
    """Return the tree that write() stored in `path`, its arrays as numpy arrays.

    Raises FileNotFoundError, SafetensorError for a file that is not safetensors (empty, truncated,
    another format), NotOurs, Damaged, or ValueError for a tree whose tensors do not fit its JSON.
    """
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata() or {}
        if METADATA_KEY not in metadata or CHECKSUM_KEY not in metadata:
            raise NotOurs("no model bundle in its metadata")
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
    text, checksums = metadata[METADATA_KEY], json.loads(metadata[CHECKSUM_KEY])
    if not isinstance(checksums, dict) or checksums.get("metadata") != zlib.crc32(text.encode()):
        raise Damaged("metadata")
    for name, array in arrays.items():
        if checksums.get(name) != _crc(array):
            raise Damaged(name)
    if set(checksums) != {"metadata", *arrays}:
        raise Damaged(sorted(set(checksums) - {"metadata", *arrays})[0])  # a tensor is missing
    tree = json.loads(text)
    if not isinstance(tree, dict):
        raise NotOurs("its metadata is not a model bundle's")
    for name, array in arrays.items():
        *parents, key = name.split(SEPARATOR)
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"tensor {name!r} has no place in the metadata")
        node[key] = array
    return tree


def format_number(text):
    """Return a format version stored as text ("2") as an int, and anything else as it is."""
    return int(text) if isinstance(text, str) and text.isascii() and text.isdigit() else text


def format_problem(found, reads, noun, again, newer_advice):
    """Return why a saved file's format version `found` is not `reads`, naming both, and what to do (`again`
    for an older or unknown one, `newer_advice` for one a later version wrote); None when it is `reads`.

    A catalog's meta table holds text: catalogs pass its digits as an int (format_number).
    Bundles and catalogs both check this before anything else in them is read, so a file of another version
    is refused in one sentence rather than by the first field it lacks or holds in another shape."""
    number = found if isinstance(found, int) and not isinstance(found, bool) else None  # text is none
    if number == reads:
        return None
    if number is None:
        return f"has no {noun} format version that this tool knows ({str(found)[:40]!r}; this version reads " \
               f"format {reads}): {again}"
    if number > reads:
        return (f"was written by a newer version of this tool, in {noun} format {number}; this version reads "
                f"format {reads}: {newer_advice}")
    return f"was written in {noun} format {number}, older than format {reads} that this version reads: {again}"


def _split(value, path):
    """Return (`value` without its arrays, {tensor name: array}); tuples become lists, numpy scalars numbers."""
    if isinstance(value, np.ndarray):
        raise TypeError(f"an array outside a dict at {SEPARATOR.join(path)!r}")  # only a dict entry names a tensor
    if isinstance(value, dict):
        plain, arrays = {}, {}
        for key, item in value.items():
            key = str(key)
            if isinstance(item, np.ndarray):
                assert SEPARATOR not in key and key, key  # our own names: a tensor's path must split back
                arrays[SEPARATOR.join((*path, key))] = item if item.flags.c_contiguous else item.copy(order="C")
                continue
            plain[key], inner = _split(item, (*path, key))
            if inner:
                assert SEPARATOR not in key, key
            arrays.update(inner)
        return plain, arrays
    if isinstance(value, (list, tuple)):
        return [_split(item, path)[0] for item in value], {}  # an array in a list raises above
    if isinstance(value, np.generic):
        return value.item(), {}
    if value is None or type(value) in (bool, int, float, str):
        return value, {}
    if isinstance(value, (bool, int, float, str)):  # a subclass: its plain value
        return next(plain(value) for plain in (bool, int, float, str) if isinstance(value, plain)), {}
    return str(value), {}  # paths and the like


def _crc(array):
    return zlib.crc32(array if array.flags.c_contiguous else array.copy(order="C"))


__all__ = ["Damaged", "NotOurs", "SafetensorError", "format_problem", "read", "write"]
