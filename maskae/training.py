"""Training and complementary-mask inference for the MLP backend, and the step budget every
backend trains with (``run_steps``).

The loss is the one of masked modelling: per-cell error (squared error for numeric cells,
cross-entropy for categorical ones), averaged over the cells that were hidden *and* observed —
missing cells are hidden too but never scored. Training runs a fixed budget of optimisation steps
(AdamW, warm-up then cosine decay), so a 100-row and a 1M-row table cost alike.

Example
-------
>>> import torch
>>> from maskae.mlp import MaskedTableMLP
>>> data = TableTensors(torch.randn(64, 3), torch.zeros(64, 0, dtype=torch.long), torch.zeros(64, 3, dtype=torch.bool))
>>> history = fit_network(MaskedTableMLP(3, [], 16, 4), data, TrainingPlan(max_steps=5, batch_size=16), torch.Generator())
>>> len(history["train_loss"])
5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from maskae.masking import random_cell_mask
from maskae.mlp import MaskedTableMLP, Reconstruction


class TableTensors(NamedTuple):
    numeric: torch.Tensor  # (n, n_numeric) float32
    categorical: torch.Tensor  # (n, n_categorical) int64
    missing: torch.Tensor  # (n, n_features) bool

    def rows(self, index) -> "TableTensors":
        return TableTensors(self.numeric[index], self.categorical[index], self.missing[index])

    def __len__(self) -> int:
        return self.missing.shape[0]


@dataclass
class TrainingPlan:
    mask_ratio: float = 0.3
    max_steps: int = 2000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    validation_every: int = 100
    patience: int | None = None  # in validation checks; None = no early stopping
    progress: bool = False


def cell_errors(out: Reconstruction, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
    """(n, n_features) error of every cell's prediction: squared error, then cross-entropy."""
    errors = [(out.numeric - numeric) ** 2]
    for j, logits in enumerate(out.logits):
        errors.append(F.cross_entropy(logits, categorical[:, j], reduction="none").unsqueeze(1))
    return torch.cat(errors, dim=1)


def masked_loss(net: MaskedTableMLP, batch: TableTensors, hidden: torch.Tensor) -> torch.Tensor:
    out = net(batch.numeric, batch.categorical, hidden | batch.missing)
    scored = hidden & ~batch.missing
    return (cell_errors(out, batch.numeric, batch.categorical) * scored).sum() / scored.sum().clamp(min=1)


def scheduled_learning_rate(step: int, plan: TrainingPlan) -> float:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 0."""
    warmup = max(1, plan.max_steps // 20)
    if step < warmup:
        return plan.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, plan.max_steps - warmup)
    return plan.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def run_steps(
    net: torch.nn.Module,
    plan: TrainingPlan,
    step_loss: Callable[[], torch.Tensor],
    validation_loss: Callable[[], float] | None = None,
) -> dict[str, list[float]]:
    """The step budget every backend trains with: AdamW on ``step_loss()`` (one freshly drawn,
    freshly masked batch per call) for ``plan.max_steps`` steps, warm-up then cosine decay;
    ``validation_loss()`` every ``plan.validation_every`` steps keeps the best weights and stops
    after ``plan.patience`` checks without gain. Trains ``net`` in place; returns the loss curves."""
    optimiser = torch.optim.AdamW(net.parameters(), lr=plan.learning_rate, weight_decay=plan.weight_decay, foreach=True)
    history: dict[str, list[float]] = {"train_loss": [], "validation_loss": []}
    best = (math.inf, None)
    checks_without_gain = 0
    net.train()
    bar = tqdm(range(plan.max_steps), desc="maskae fit", unit="step", disable=not plan.progress, leave=False)
    for step in bar:
        for group in optimiser.param_groups:
            group["lr"] = scheduled_learning_rate(step, plan)
        loss = step_loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        history["train_loss"].append(loss.item())
        if validation_loss is not None and ((step + 1) % plan.validation_every == 0 or step + 1 == plan.max_steps):
            net.eval()
            with torch.no_grad():
                val_loss = validation_loss()
            net.train()
            history["validation_loss"].append(val_loss)
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", val=f"{val_loss:.4f}")
            if val_loss < best[0]:
                best = (val_loss, {k: v.detach().clone() for k, v in net.state_dict().items()})
                checks_without_gain = 0
            else:
                checks_without_gain += 1
                if plan.patience is not None and checks_without_gain >= plan.patience:
                    break
    if best[1] is not None:
        net.load_state_dict(best[1])
    net.eval()
    return history


def fit_network(
    net: MaskedTableMLP,
    data: TableTensors,
    plan: TrainingPlan,
    generator: torch.Generator,
    validation: TableTensors | None = None,
) -> dict[str, list[float]]:
    """Train ``net`` in place on random rows with random cell masks; returns the loss curves.
    Keeps the best validation weights."""
    n, n_features = len(data), data.missing.shape[1]
    batch_size = min(plan.batch_size, n)

    def step_loss() -> torch.Tensor:
        batch = data.rows(torch.randint(n, (batch_size,), generator=generator))
        hidden = random_cell_mask(batch_size, n_features, plan.mask_ratio, generator)
        return masked_loss(net, batch, hidden)

    check = None if validation is None else lambda: _validation_loss(net, validation, plan.mask_ratio)
    return run_steps(net, plan, step_loss, check)


def _validation_loss(net: MaskedTableMLP, validation: TableTensors, mask_ratio: float) -> float:
    # A fixed generator: every check sees the same masks, so the curve reflects the weights only.
    hidden = random_cell_mask(len(validation), validation.missing.shape[1], mask_ratio, torch.Generator().manual_seed(0))
    return float(masked_loss(net, validation, hidden))


class PassResult(NamedTuple):
    errors: np.ndarray  # (n, n_features) mean error of each cell over the passes that hid it
    numeric: np.ndarray  # (n, n_numeric) mean prediction of each numeric cell while hidden
    category_probs: list[np.ndarray]  # per categorical column (n, n_codes), mean while hidden
    latent: np.ndarray  # (n, latent) mean embedding over all passes


@torch.no_grad()
def complementary_passes(net: MaskedTableMLP, data: TableTensors, masks: np.ndarray, batch_size: int = 8192) -> PassResult:
    """Run every row through every scoring mask; each cell is judged only while hidden."""
    net.eval()
    masks_t = torch.as_tensor(masks)
    times_hidden = masks_t.sum(0).clamp(min=1).float()
    chunks: list[list[torch.Tensor]] = []
    for start in range(0, max(len(data), 1), batch_size):  # an empty table: one empty pass, empty results
        batch = data.rows(slice(start, start + batch_size))
        m = len(batch)
        errors = torch.zeros(m, masks.shape[1])
        numeric = torch.zeros(m, net.n_numeric)
        probs = [torch.zeros(m, k) for k in net.category_sizes]
        latent = 0.0
        for hide in masks_t:
            hidden = hide.expand(m, -1) | batch.missing
            out = net(batch.numeric, batch.categorical, hidden)
            errors += cell_errors(out, batch.numeric, batch.categorical) * hide
            numeric += out.numeric * hide[: net.n_numeric]
            for j, logits in enumerate(out.logits):
                if hide[net.n_numeric + j]:  # a column's prediction counts only while it is hidden
                    probs[j] += logits.softmax(dim=1)
            latent = latent + out.latent
        n_hidden_num = times_hidden[: net.n_numeric]
        chunks.append(
            [errors / times_hidden, numeric / n_hidden_num, latent / len(masks_t)]
            + [p / times_hidden[net.n_numeric + j] for j, p in enumerate(probs)]
        )
    joined = [torch.cat(parts).numpy() for parts in zip(*chunks)]
    return PassResult(joined[0], joined[1], joined[3:], joined[2])
