"""Training loop: tensors once, batches as slices of a shuffled index, early stopping on validation."""
import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from valence.training.modules import as_tensors
from valence.training.settings import patience_for


MAX_BATCH, MIN_BATCH, MIN_STEPS = 1024, 64, 64


def batch_size_for(config, n_rows):
    """config.batch_size, or (0) the largest power of two up to MAX_BATCH that gives an epoch MIN_STEPS
    steps (at least MIN_BATCH): a small file with large batches gets a few steps an epoch and stops
    undertrained (docs/quality.md); from 65,536 training rows on it is MAX_BATCH."""
    if config.batch_size:
        return config.batch_size
    size = MAX_BATCH
    while size > MIN_BATCH and n_rows < size * MIN_STEPS:
        size //= 2
    return size


def learning_rate_for(config, batch_size):
    """config.lr, scaled by (batch / MAX_BATCH) ** 0.25 for an automatic batch below MAX_BATCH, where the full
    rate overshoots (docs/quality.md)."""
    if config.batch_size or batch_size >= MAX_BATCH:
        return config.lr
    return config.lr * (batch_size / MAX_BATCH) ** 0.25


@dataclass
class History:
    """Per-epoch record of a training run."""
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_metric: list = field(default_factory=list)  # MAE (regression) or accuracy (classification)
    seconds: list = field(default_factory=list)
    best_epoch: int = -1  # 1-based; the restored weights are from this epoch
    metric_name: str = ""
    interrupted: bool = False  # Ctrl-C stopped training during epoch len(train_loss) + 1
    patience: int = 0  # the epochs without improvement it waited for (patience_for: the setting, or automatic)


def _loss_fn(kind, config):
    if kind == "classification":
        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    losses = {"l1": nn.L1Loss(), "mse": nn.MSELoss(), "huber": nn.HuberLoss(delta=config.huber_delta)}
    if config.loss not in losses:
        raise ValueError(f"unknown loss {config.loss!r}; expected one of {sorted(losses)}")
    return losses[config.loss]


def _target(kind, y, device):
    if kind == "classification" and np.ndim(y) == 1:
        return torch.as_tensor(np.asarray(y), dtype=torch.int64, device=device)
    return torch.as_tensor(np.asarray(y), dtype=torch.float32, device=device)


@torch.no_grad()
def _encoded(model, numeric, categorical, batch_size=65536):
    """The model's parameter-free input encoding of every row, computed once."""
    return torch.cat([model.inputs(numeric[i:i + batch_size], categorical[i:i + batch_size])
                      for i in range(0, len(numeric), batch_size)])


@torch.no_grad()
def _validation_loss_and_metric(model, kind, dense, target, loss_fn, batch_size=8192):
    """Validation loss and metric (MAE or accuracy) over all rows, in eval mode."""
    model.eval()
    out = torch.cat([model.head(dense[i:i + batch_size]) for i in range(0, len(target), batch_size)])
    loss = float(loss_fn(out, target))
    if kind == "classification":
        classes = target if target.ndim == 1 else target.argmax(dim=1)  # soft targets: their likeliest class
        metric = float((out.argmax(dim=1) == classes).float().mean())
    else:
        metric = float((out.clamp(0, 1) - target).abs().mean())
    return loss, metric


def fit_model(model, kind, train, y_train, val, y_val, config, on_epoch=None, stop_on_interrupt=False,
              should_stop=None):
    """Train model in place with AdamW and early stopping; keep the best epoch's weights.

    train/val are the encoder's dicts (numeric, categorical); y is valence for
    regression and the class index for classification. On Ctrl-C the best weights
    so far are restored and KeyboardInterrupt goes on, unless `stop_on_interrupt`
    (and an epoch has finished): then training ends there with history.interrupted set.
    should_stop(), when given, is asked before every step; True ends training as Ctrl-C does.
    """
    if kind not in ("regression", "classification"):
        raise ValueError(f"unknown model kind {kind!r}")
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    # Inputs encoded once: a batch is then a row gather of one float matrix.
    x_dense = _encoded(model, *as_tensors(train, device))
    v_dense = _encoded(model, *as_tensors(val, device))
    y_t, y_v = _target(kind, y_train, device), _target(kind, y_val, device)
    loss_fn = _loss_fn(kind, config)
    batch_size = batch_size_for(config, len(y_t))
    patience = patience_for(config, kind, len(y_t))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate_for(config, batch_size),
                                  weight_decay=config.weight_decay,
                                  fused=device.type in ("cpu", "cuda") or None)
    n, n_members = len(y_t), len(model.members)
    steps = max(1, math.ceil(n / batch_size))
    history = History(metric_name="accuracy" if kind == "classification" else "mae", patience=patience)
    on_loss = config.stop_on == "loss"
    larger_is_better = kind == "classification" and not on_loss
    better = (lambda a, b: a > b) if larger_is_better else (lambda a, b: a < b)
    best_metric, best_state, waited = None, None, 0
    scheduler = None
    if config.plateau_patience > 0:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if larger_is_better else "min",
            factor=config.plateau_factor, patience=config.plateau_patience)
    try:
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=generator).to(device)
            total = torch.zeros((), device=device)
            for s in range(steps):
                if should_stop is not None and should_stop():
                    raise KeyboardInterrupt
                idx = order[s * batch_size:(s + 1) * batch_size]
                # Members learn independently (a loss each): averaged, they make a real ensemble.
                target, batch = y_t[idx], torch.index_select(x_dense, 0, idx)  # index_select: faster than x[idx]
                losses = [loss_fn(out, target) for out in model.member_outputs(batch)]
                loss = losses[0] if n_members == 1 else torch.stack(losses).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(idx)
            val_loss, metric = _validation_loss_and_metric(model, kind, v_dense, y_v, loss_fn)
            history.train_loss.append(float(total) / n)
            history.val_loss.append(val_loss)
            history.val_metric.append(metric)
            history.seconds.append(time.perf_counter() - start)
            watched = val_loss if on_loss else metric
            if scheduler is not None:
                scheduler.step(watched)
            if best_metric is None or better(watched, best_metric):
                # One assignment, so that Ctrl-C never leaves best_epoch and best_state apart.
                best_state, best_metric, waited, history.best_epoch = (
                    copy.deepcopy(model.state_dict()), watched, 0, epoch)
            else:
                waited += 1
            if on_epoch is not None:
                on_epoch(epoch, {"train_loss": history.train_loss[-1], "val_loss": val_loss,
                                 history.metric_name: metric, "seconds": history.seconds[-1],
                                 "best_epoch": history.best_epoch})
            if waited >= patience:
                break
    except KeyboardInterrupt:
        history.interrupted = True
        _trim(history)
        if best_state is not None:
            model.load_state_dict(best_state)
            model.eval()
        if best_state is None or not stop_on_interrupt:
            raise
    model.load_state_dict(best_state)
    model.eval()
    return history


def _trim(history):
    """Drop a half-recorded epoch, so that every per-epoch list has one entry per finished epoch."""
    n = min(len(history.train_loss), len(history.val_loss), len(history.val_metric), len(history.seconds))
    for values in (history.train_loss, history.val_loss, history.val_metric, history.seconds):
        del values[n:]
