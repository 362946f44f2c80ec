"""The MLP backend: a pure ``nn.Module`` that rebuilds hidden table cells from visible ones.

Each numeric cell enters as its scaled value, or as a learned per-feature token when hidden; each
categorical cell as an embedding, or its own learned mask embedding when hidden. A mask indicator per
feature tells the network what is hidden. The encoder maps the row to a latent vector, the decoder
predicts every numeric value and a distribution over every column's categories.

Example
-------
>>> import torch
>>> net = MaskedTableMLP(n_numeric=3, category_sizes=[4], hidden=32, latent=8)
>>> out = net(torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool))
>>> out.numeric.shape, out.latent.shape, [l.shape for l in out.logits]
(torch.Size([2, 3]), torch.Size([2, 8]), [torch.Size([2, 4])])
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Reconstruction(NamedTuple):
    numeric: torch.Tensor  # (n, n_numeric) predicted scaled values
    logits: list[torch.Tensor]  # per categorical column, (n, n_codes)
    latent: torch.Tensor  # (n, latent)


def embedding_size(n_codes: int) -> int:
    """A common rule of thumb (fast.ai): grows slowly with the vocabulary, capped."""
    return int(min(16, round(1.6 * n_codes**0.56)))


class MaskedTableMLP(nn.Module):
    def __init__(self, n_numeric: int, category_sizes: list[int], hidden: int = 256, latent: int = 64):
        super().__init__()
        self.n_numeric = n_numeric
        self.mask_token = nn.Parameter(torch.zeros(n_numeric))
        # One extra row per embedding table: the learned "hidden" token of that column.
        self.embeddings = nn.ModuleList(nn.Embedding(k + 1, embedding_size(k + 1)) for k in category_sizes)
        n_features = n_numeric + len(category_sizes)
        n_in = n_numeric + sum(e.embedding_dim for e in self.embeddings) + n_features
        self.encoder = nn.Sequential(
            nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, latent)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, n_numeric + sum(category_sizes)),
        )
        self.category_sizes = list(category_sizes)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor, hidden: torch.Tensor) -> Reconstruction:
        """``hidden`` is bool (n, n_features), numeric features first; True cells are not shown."""
        hidden_num = hidden[:, : self.n_numeric]
        parts = [torch.where(hidden_num, self.mask_token, numeric)]
        for j, emb in enumerate(self.embeddings):
            codes = torch.where(hidden[:, self.n_numeric + j], emb.num_embeddings - 1, categorical[:, j])
            parts.append(emb(codes))
        parts.append(hidden.float())
        latent = self.encoder(torch.cat(parts, dim=1))
        out = self.decoder(latent)
        logits = list(torch.split(out[:, self.n_numeric :], self.category_sizes, dim=1))
        return Reconstruction(out[:, : self.n_numeric], logits, latent)
