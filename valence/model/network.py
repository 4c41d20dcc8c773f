"""The networks' architecture settings, and their forward pass in numpy for serving.

Serving runs the saved networks with numpy rather than torch: importing torch takes 1.6 to
1.9 s of a gunicorn worker's 2 s start-up budget, and the forward pass of these models is
a handful of matrix products (valence.training.modules holds the torch modules they are trained as; the tests
hold the two to the same answers). The members' first layers are one product, with the
one-hot block read as rows of its weights; their later layers are batched products.
"""
import threading
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

N_CLASSES = 3


@dataclass
class ModelConfig:
    """Architecture settings; n_numeric and category_sizes come from the fitted encoder."""
    n_numeric: int
    category_sizes: list
    hidden: list = field(default_factory=lambda: [128, 128])  # 256 wide measured no better, 2.5x slower
    dropout: float = 0.0  # 0.1 measured no better, and it cost 30 % of an epoch's time
    n_outputs: int = 1
    n_members: int = 1  # networks trained side by side with a loss each, averaged to predict
    # Piecewise-linear encoding of each numeric beside its raw value: the largest single gain measured
    # (test MAE 0.128 with it, 0.130 without, on the real slice); "none" turns it off.
    numeric_embedding: str = "ple"
    n_bins: int = 8  # per numeric feature; 16 and 32 measured no better


def model_config(kind, model_args):
    """The ModelConfig of a kind from model_args = dataclasses.asdict(ModelConfig), as a bundle stores it."""
    args = dict(model_args)
    args["category_sizes"] = [int(s) for s in args["category_sizes"]]
    if "hidden" in args:
        args["hidden"] = [int(h) for h in args["hidden"]]
    if kind == "regression":
        args.setdefault("n_outputs", 1)
    elif kind == "classification":
        args.setdefault("n_outputs", N_CLASSES)
    else:
        raise ValueError(f"unknown model kind {kind!r}; expected 'regression' or 'classification'")
    cfg = ModelConfig(**args)
    expected = 1 if kind == "regression" else N_CLASSES
    if cfg.n_outputs != expected:
        raise ValueError(f"a {kind} model needs n_outputs={expected}")
    if cfg.n_numeric + len(cfg.category_sizes) == 0:
        raise ValueError("ModelConfig needs at least one input")
    if cfg.numeric_embedding not in ("ple", "none"):
        raise ValueError(f"unknown numeric_embedding {cfg.numeric_embedding!r}")
    return cfg


def bin_edges(n_bins):
    """(left, width) of the piecewise-linear bins: equal probability under a normal, as the inputs are
    normal scores, the outer two stretched one unit beyond the last inner edge."""
    edges = [NormalDist().inv_cdf(k / n_bins) for k in range(1, n_bins)]
    edges = np.array([edges[0] - 1.0] + edges + [edges[-1] + 1.0], dtype=np.float32)
    return edges[:-1], edges[1:] - edges[:-1]


def input_width(cfg):
    """Columns of the dense input: raw numerics, their bin levels, one one-hot block per categorical."""
    levels = cfg.n_numeric * cfg.n_bins if cfg.numeric_embedding == "ple" else 0
    return cfg.n_numeric + levels + sum(cfg.category_sizes)


def linear_keys(cfg):
    """State-dict names of each member's linear layers in order (ReLU, and Dropout when set, between them)."""
    step = 3 if cfg.dropout else 2
    return [[f"members.{m}.{step * i}" for i in range(len(cfg.hidden) + 1)] for m in range(cfg.n_members)]


def state_shapes(cfg):
    """The name and shape of every tensor in a network's state dict."""
    shapes = {}
    widths = [input_width(cfg), *cfg.hidden, cfg.n_outputs]
    for keys in linear_keys(cfg):
        for key, (width_in, width_out) in zip(keys, zip(widths, widths[1:])):
            shapes[f"{key}.weight"] = (width_out, width_in)
            shapes[f"{key}.bias"] = (width_out,)
    return shapes


def fold_state(state, j, members):
    """Fold model j's part of a served ensemble's state dict: its `members` networks, numbered from 0, and
    every entry that is not a member's (the served ensemble is the fold models' members in fold order)."""
    picked = {}
    for key, value in state.items():
        if key.startswith("members."):
            _, index, rest = key.split(".", 2)
            if not j * members <= int(index) < (j + 1) * members:
                continue
            key = f"members.{int(index) - j * members}.{rest}"
        picked[key] = value
    return picked


_local = threading.local()


def _workspace(name, shape):
    """A float32 array of `shape` reused by this thread's later calls: numpy would return each large
    array to the system and fault its pages in again on the next request (40 % of a 1,000-song
    forward pass, measured); the networks of a process share these few buffers."""
    buffers = _local.__dict__.setdefault("buffers", {})
    size = int(np.prod(shape))
    if name not in buffers or buffers[name].size < size:
        buffers[name] = np.empty(size, dtype=np.float32)
    return buffers[name][:size].reshape(shape)


class Network:
    """A saved network's forward pass in numpy (float32), the same function as the torch ensemble it was trained as (valence.training.modules)."""

    def __init__(self, kind, model_args, state, temperature=1.0):
        """state: the state dict as numpy arrays; a missing, extra or misshapen tensor raises ValueError.
        temperature: a classifier's logits are divided by it before the softmax (calibration)."""
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        self.kind, self.temperature = kind, float(temperature)
        self.config = cfg = model_config(kind, model_args)
        shapes = state_shapes(cfg)
        missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
        if missing or unexpected:
            raise ValueError(f"missing weights {missing[:3]}, unexpected weights {unexpected[:3]}")
        for key, shape in shapes.items():
            if tuple(np.shape(state[key])) != shape:
                raise ValueError(f"size mismatch for {key}: saved {tuple(np.shape(state[key]))}, expected {shape}")
        layers = [[(np.asarray(state[f"{key}.weight"], np.float32), np.asarray(state[f"{key}.bias"], np.float32))
                   for key in keys] for keys in linear_keys(cfg)]
        self.left, self.width = bin_edges(cfg.n_bins)
        dense = input_width(cfg) - sum(cfg.category_sizes)
        weight = np.concatenate([member[0][0] for member in layers])  # (members * hidden, input width)
        self.first_dense = np.ascontiguousarray(weight[:, :dense].T)
        self.first_onehot = np.ascontiguousarray(weight[:, dense:].T)  # one row per category level
        self.first_bias = np.concatenate([member[0][1] for member in layers])
        self.offsets = np.cumsum([0, *cfg.category_sizes[:-1]], dtype=np.int64)
        self.later = [(np.ascontiguousarray(np.stack([member[i][0].T for member in layers])),
                       np.stack([member[i][1] for member in layers])[:, None, :]) for i in range(1, len(layers[0]))]

    def raw(self, numeric, categorical):
        """The members' mean raw output, (n, n_outputs), for float32 numerics and int64 category codes."""
        return self.after_first(self.first_layer(numeric, categorical))

    def first_layer(self, numeric, categorical):
        """Every member's first-layer pre-activations, (n, members x width), in this thread's workspace
        (valid until its next call: copy what must outlive it)."""
        n, width = numeric.shape
        if self.config.numeric_embedding == "ple":
            dense = _workspace("dense", (n, width * (1 + self.config.n_bins)))
            dense[:, :width] = numeric
            levels = dense[:, width:].reshape(n, width, self.config.n_bins)
            np.subtract(numeric[..., None], self.left, out=levels)
            levels /= self.width
            np.clip(levels, 0.0, 1.0, out=levels)
        else:
            dense = numeric
        first = np.matmul(dense, self.first_dense, out=_workspace("first", (n, len(self.first_bias))))
        first += self.first_bias
        if len(self.first_onehot):
            rows = _workspace("rows", first.shape)
            for codes in (categorical + self.offsets).T:
                first += np.take(self.first_onehot, codes, axis=0, out=rows)
        return first

    def after_first(self, first):
        """The members' mean raw output, (n, n_outputs), from their first-layer pre-activations: the
        later layers, one (n, width) block per member in batched products."""
        members = self.config.n_members
        hidden_width = len(self.first_bias) // members
        n = len(first)
        hidden = _workspace("hidden", (members, n, hidden_width))
        np.copyto(hidden, first.reshape(n, members, hidden_width).transpose(1, 0, 2))
        for layer, (weight, bias) in enumerate(self.later):
            np.maximum(hidden, 0.0, out=hidden)
            last = layer == len(self.later) - 1
            shape = (members, n, weight.shape[2])
            out = np.empty(shape, dtype=np.float32) if last else _workspace(f"later{layer % 2}", shape)
            hidden = np.matmul(hidden, weight, out=out)
            hidden += bias
        return hidden.mean(axis=0)

    def predict(self, arrays, batch_size=8192):
        """Valence in [0, 1] (regression, shape (n,)) or class probabilities (classification, shape (n, 3))."""
        numeric = np.asarray(arrays["numeric"], dtype=np.float32)
        categorical = np.asarray(arrays["categorical"], dtype=np.int64)
        outs = [self.raw(numeric[i:i + batch_size], categorical[i:i + batch_size])
                for i in range(0, len(numeric), batch_size)]
        out = np.concatenate(outs) if outs else np.zeros((0, self.config.n_outputs), dtype=np.float32)
        if self.kind == "regression":
            return np.clip(out[:, 0], 0.0, 1.0)
        if self.temperature != 1.0:
            out = out / np.float32(self.temperature)
        out = np.exp(out - out.max(axis=1, keepdims=True))
        return out / out.sum(axis=1, keepdims=True)
