"""Networks built from a plain-typed ModelConfig, so a saved bundle can rebuild them."""
from dataclasses import dataclass, field

import torch
from torch import nn

N_CLASSES = 3


@dataclass
class ModelConfig:
    """Architecture settings; n_numeric and category_sizes come from the fitted encoder."""
    n_numeric: int
    category_sizes: list
    hidden: list = field(default_factory=lambda: [256, 256])
    dropout: float = 0.1
    embedding_dim: int = 8  # per categorical column, capped by the vocabulary size
    n_outputs: int = 1
    n_members: int = 1  # independent networks averaged inside one module


class _Member(nn.Module):
    """One MLP: categorical embeddings concatenated with the numerics, then hidden layers."""

    def __init__(self, cfg):
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(size, min(cfg.embedding_dim, size)) for size in cfg.category_sizes)
        width = cfg.n_numeric + sum(e.embedding_dim for e in self.embeddings)
        layers = []
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = h
        layers.append(nn.Linear(width, cfg.n_outputs))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric, categorical):
        parts = [numeric] + [emb(categorical[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1))


class _Ensemble(nn.Module):
    """Average of n_members independently initialised members (one state_dict for the bundle)."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.n_numeric + len(cfg.category_sizes) == 0:
            raise ValueError("ModelConfig needs at least one input")
        self.config = cfg
        self.members = nn.ModuleList(_Member(cfg) for _ in range(cfg.n_members))

    def raw(self, numeric, categorical):
        """Mean of the members' raw outputs, shape (n, n_outputs)."""
        outs = [m(numeric, categorical) for m in self.members]
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(dim=0)


class RegressionModel(_Ensemble):
    """Predicts valence; forward returns shape (n,)."""

    def __init__(self, cfg):
        if cfg.n_outputs != 1:
            raise ValueError("RegressionModel needs n_outputs=1")
        super().__init__(cfg)

    def forward(self, numeric, categorical):
        return self.raw(numeric, categorical).squeeze(1)


class ClassificationModel(_Ensemble):
    """Predicts the mood class; forward returns logits of shape (n, 3)."""

    def __init__(self, cfg):
        if cfg.n_outputs != N_CLASSES:
            raise ValueError(f"ClassificationModel needs n_outputs={N_CLASSES}")
        super().__init__(cfg)

    def forward(self, numeric, categorical):
        return self.raw(numeric, categorical)


def build_model(kind, model_args):
    """Build the network of a kind from model_args = dataclasses.asdict(ModelConfig)."""
    args = dict(model_args)
    args["category_sizes"] = [int(s) for s in args["category_sizes"]]
    args["hidden"] = [int(h) for h in args.get("hidden", [256, 256])]
    if kind == "regression":
        args.setdefault("n_outputs", 1)
        return RegressionModel(ModelConfig(**args))
    if kind == "classification":
        args.setdefault("n_outputs", N_CLASSES)
        return ClassificationModel(ModelConfig(**args))
    raise ValueError(f"unknown model kind {kind!r}; expected 'regression' or 'classification'")


def model_config_for(kind, encoder, **overrides):
    """ModelConfig for a kind, its input widths taken from a fitted encoder."""
    n_outputs = 1 if kind == "regression" else N_CLASSES
    return ModelConfig(n_numeric=encoder.n_numeric_, category_sizes=list(encoder.category_sizes_),
                       n_outputs=n_outputs, **overrides)
