"""Neighbourhood evidence: how far a record's embedding lies from the training records' embeddings.

Reconstruction error sees broken relationships between features but misses anomalies that form a
dense cluster of their own; the distance to the nearest training embeddings catches those (the
idea behind kNN detectors, Ramaswamy et al., SIGMOD 2000). The reference is a fixed random
sample of the training embeddings, so scoring costs the same whatever the training size.

Example
-------
>>> import numpy as np
>>> ref = np.zeros((10, 2), dtype=np.float32)
>>> mean_knn_distance(np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32), ref, k=3).tolist()
[0.0, 5.0]
"""

from __future__ import annotations

import numpy as np
import torch


def mean_knn_distance(
    points: np.ndarray, reference: np.ndarray, k: int, exclude: np.ndarray | None = None, batch_size: int = 4096
) -> np.ndarray:
    """Mean Euclidean distance from each point to its ``k`` nearest reference points.

    ``exclude[i]`` (optional) is the index in ``reference`` of point ``i`` itself (or -1), so a
    training record is not its own neighbour.
    """
    ref = torch.as_tensor(reference, dtype=torch.float32)
    k = min(k, len(ref) - (1 if exclude is not None else 0))
    if k < 1:
        raise ValueError("the neighbour reference needs at least two training rows")
    out = []
    for start in range(0, len(points), batch_size):
        chunk = torch.as_tensor(points[start : start + batch_size], dtype=torch.float32)
        dist = torch.cdist(chunk, ref)
        if exclude is not None:
            own = torch.as_tensor(exclude[start : start + batch_size])
            rows = (own >= 0).nonzero(as_tuple=True)[0]
            dist[rows, own[rows]] = torch.inf
        out.append(dist.topk(k, dim=1, largest=False).values.mean(dim=1))
    return torch.cat(out).numpy()
