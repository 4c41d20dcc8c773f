"""Networks built from a plain-typed ModelConfig, so a saved bundle can rebuild them; their predictions."""
import numpy as np
import torch
from torch import nn

from valence.model.network import N_CLASSES, ModelConfig, bin_edges, model_config


class _PiecewiseLinear(nn.Module):
    """x -> per-bin fill levels in [0, 1] over bins of equal probability (inputs are normal scores)."""

    def __init__(self, n_features, n_bins):
        super().__init__()
        left, width = bin_edges(n_bins)
        self.register_buffer("left", torch.from_numpy(left), persistent=False)
        self.register_buffer("width", torch.from_numpy(width), persistent=False)
        self.n_features, self.out_dim = n_features, n_features * n_bins

    def forward(self, x, out=None):
        """The levels as (n, n_features * n_bins); written into `out` (a view of that shape) when given."""
        if out is None:
            out = x.new_empty((len(x), self.out_dim))
        levels = out.view(len(x), self.n_features, len(self.left))
        torch.sub(x[..., None], self.left, out=levels)
        return levels.div_(self.width).clamp_(0.0, 1.0).view(len(x), self.out_dim)


class _Inputs(nn.Module):
    """(numeric, categorical) -> one dense float matrix: the raw numerics, their piecewise-linear
    levels and a one-hot block per categorical column. It has no parameters, so the trainer
    computes it once per data set and a training batch is a slice of it; a one-hot block into
    the first linear layer is the same function class as an embedding followed by it, and no
    gradient flows into the input (at 163k rows an epoch takes 0.45 s this way, 1.3 s with
    embeddings, for the same MAE)."""

    def __init__(self, cfg):
        super().__init__()
        sizes = [int(s) for s in cfg.category_sizes]
        if cfg.numeric_embedding == "ple":
            self.numeric = _PiecewiseLinear(cfg.n_numeric, cfg.n_bins)
        elif cfg.numeric_embedding == "none":
            self.numeric = None
        else:
            raise ValueError(f"unknown numeric_embedding {cfg.numeric_embedding!r}")
        offsets = [sum(sizes[:j]) for j in range(len(sizes))]
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64), persistent=False)
        self.n_onehot = sum(sizes)
        self.out_dim = cfg.n_numeric + (self.numeric.out_dim if self.numeric is not None else 0) + self.n_onehot

    def forward(self, numeric, categorical):
        # Each part written in place into one matrix: no temporaries of the levels' size (at 140,000 rows each
        # was a fresh 130 MB whose pages the kernel zeroed on first touch).
        n, width = numeric.shape
        dense = numeric.new_empty((n, self.out_dim))
        dense[:, :width] = numeric
        if self.numeric is not None:
            self.numeric(numeric, out=dense[:, width:width + self.numeric.out_dim])
        onehot = dense[:, self.out_dim - self.n_onehot:]
        onehot.zero_()
        if self.n_onehot:
            onehot.scatter_(1, categorical + self.offsets, 1.0)
        return dense


def _mlp(cfg, width):
    layers = []
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)] + ([nn.Dropout(cfg.dropout)] if cfg.dropout else [])
        width = h
    layers.append(nn.Linear(width, cfg.n_outputs))
    return nn.Sequential(*layers)


class _Ensemble(nn.Module):
    """Average of n_members independently initialised MLPs over one shared input encoding."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.n_numeric + len(cfg.category_sizes) == 0:
            raise ValueError("ModelConfig needs at least one input")
        self.config = cfg
        self.inputs = _Inputs(cfg)
        self.members = nn.ModuleList(_mlp(cfg, self.inputs.out_dim) for _ in range(cfg.n_members))

    def head(self, dense):
        """The model's answer on encoded inputs: the mean of its members' raw outputs, through output()."""
        outs = [m(dense) for m in self.members]
        return self.output(outs[0] if len(outs) == 1 else torch.stack(outs).mean(dim=0))

    def member_outputs(self, dense):
        """Each member's answer on encoded inputs, a list (trained with a loss each, averaged to predict)."""
        return [self.output(m(dense)) for m in self.members]

    def output(self, raw):
        """The answer from a raw (n, n_outputs) output: regression squeezes it to (n,), classification keeps logits."""
        return raw

    def forward(self, numeric, categorical):
        return self.head(self.inputs(numeric, categorical))


class RegressionModel(_Ensemble):
    """Predicts valence; forward returns shape (n,)."""

    def __init__(self, cfg):
        if cfg.n_outputs != 1:
            raise ValueError("RegressionModel needs n_outputs=1")
        super().__init__(cfg)

    def output(self, raw):
        return raw.squeeze(1)


class ClassificationModel(_Ensemble):
    """Predicts the mood class; forward returns logits of shape (n, 3)."""

    def __init__(self, cfg):
        if cfg.n_outputs != N_CLASSES:
            raise ValueError(f"ClassificationModel needs n_outputs={N_CLASSES}")
        super().__init__(cfg)


def build_model(kind, model_args):
    """Build the network of a kind from model_args = dataclasses.asdict(ModelConfig)."""
    cfg = model_config(kind, model_args)
    return RegressionModel(cfg) if kind == "regression" else ClassificationModel(cfg)


def torch_module(bundle):
    """The network of a loaded bundle (valence.model.bundle.Bundle) as the torch module it was trained as, in
    eval mode."""
    model = build_model(bundle.kind, bundle.meta["model_args"])
    model.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in bundle.weights.items()})
    return model.eval()


def state_arrays(model):
    """A module's state dict as float32 numpy arrays on the CPU: the weights a bundle stores."""
    return {key: value.detach().cpu().numpy().astype(np.float32) for key, value in model.state_dict().items()}


def model_config_for(kind, encoder, **overrides):
    """ModelConfig for a kind, its input widths taken from a fitted encoder."""
    n_outputs = 1 if kind == "regression" else N_CLASSES
    return ModelConfig(n_numeric=encoder.n_numeric_, category_sizes=list(encoder.category_sizes_),
                       n_outputs=n_outputs, **overrides)


def as_tensors(arrays, device):
    """Return the encoder's (numeric, categorical) arrays as float32 and int64 tensors on `device`."""
    return (torch.as_tensor(np.asarray(arrays["numeric"], dtype=np.float32), device=device),
            torch.as_tensor(np.asarray(arrays["categorical"], dtype=np.int64), device=device))


@torch.no_grad()
def predict_arrays(model, arrays, batch_size=8192, device="cpu"):
    """Valence in [0, 1] (regression, shape (n,)) or class probabilities (classification, shape (n, 3))."""
    device = torch.device(device)
    if model.training:
        model.eval()
    if next(model.parameters()).device != device:  # .to() walks every module even when nothing moves
        model.to(device)
    numeric, categorical = as_tensors(arrays, device)
    outs = [model(numeric[i:i + batch_size], categorical[i:i + batch_size])
            for i in range(0, len(numeric), batch_size)]
    n_outputs = model.config.n_outputs
    out = torch.cat(outs) if outs else torch.zeros((0, n_outputs))
    if n_outputs > 1:
        return torch.softmax(out, dim=1).cpu().numpy()
    return out.clamp(0.0, 1.0).cpu().numpy()
