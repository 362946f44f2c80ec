"""A uniform random sample of a table too large to read whole, taken while it streams past.

Every row gets a random key and the ``max_rows`` rows with the smallest keys are kept (bottom-k
sampling): a uniform sample without replacement, in memory of ``max_rows`` plus one chunk, and the
same sample for the same seed and files. Rows keep their file order.

Example
-------
>>> import pandas as pd
>>> chunks = [pd.DataFrame({"x": range(i, i + 5)}) for i in (0, 5, 10)]
>>> sample, seen = reservoir_sample(chunks, max_rows=4, seed=0)
>>> len(sample), seen, sample["x"].is_monotonic_increasing
(4, 15, True)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

_KEY, _ORDER = "__sample_key", "__sample_order"


def reservoir_sample(chunks: Iterable[pd.DataFrame], max_rows: int, seed: int | None) -> tuple[pd.DataFrame, int]:
    """``(sample, rows_seen)``: at most ``max_rows`` rows drawn uniformly from all ``chunks``."""
    rng, kept, seen = np.random.default_rng(seed), None, 0
    for chunk in chunks:
        chunk = chunk.assign(**{_KEY: rng.random(len(chunk)), _ORDER: np.arange(seen, seen + len(chunk))})
        seen += len(chunk)
        kept = chunk if kept is None else pd.concat([kept, chunk], ignore_index=True)
        if len(kept) > max_rows:
            kept = kept.nsmallest(max_rows, _KEY)
    if kept is None:
        return pd.DataFrame(), 0
    return kept.sort_values(_ORDER).drop(columns=[_KEY, _ORDER]).reset_index(drop=True), seen
