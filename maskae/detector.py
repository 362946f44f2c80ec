"""``MaskedAutoencoderDetector``: a scikit-learn style outlier detector built on masked modelling.

Hide part of each record, learn to rebuild it from the rest, and treat "could not be rebuilt" as
evidence of an anomaly. Two kinds of evidence are combined:

* **reconstruction** — every cell is hidden and predicted from the others (complementary masks);
  each cell's error is divided by that feature's typical error on the training data, so one noisy
  column cannot dominate, and averaged over the row's observed cells. Sees broken relationships
  between features and single-column extremes. ``explain`` breaks this down per feature.
* **neighbours** — mean distance from the record's embedding (the encoder's output averaged over
  the scoring masks) to its nearest training embeddings. Sees anomalies that are internally
  consistent but unlike any training record, including dense anomalous clusters.

Each kind is put on a common scale by standardising its logarithm against the training records'
values (errors and distances are positive and right-skewed, roughly log-normal), and the anomaly
score is their mean: about 0 for a typical training record, in standard deviations above it.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 4)); X[:, 1] = X[:, 0] * 2
>>> det = MaskedAutoencoderDetector(max_steps=200, random_state=0).fit(X)
>>> odd = np.array([[1.0, -2.0, 0.0, 0.0]])  # breaks x1 = 2 * x0
>>> bool(det.anomaly_score(odd)[0] > np.quantile(det.anomaly_score(X), 0.99))
True
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, OutlierMixin

from maskae.masking import complementary_masks
from maskae.mlp import MaskedTableMLP
from maskae.neighbours import mean_knn_distance
from maskae.persistence import load_detector_state, save_detector_state
from maskae.table_encoding import TableEncoder, as_frame
from maskae.training import PassResult, TableTensors, TrainingPlan, complementary_passes, fit_network

ERROR_SCALE_FLOOR = 1e-3  # a feature predicted to ~3 % of its std still counts as "typical"
EVIDENCE_KINDS = ("reconstruction", "neighbours")


class MaskedAutoencoderDetector(OutlierMixin, BaseEstimator):
    """Masked-autoencoder anomaly detector for mixed-type tables.

    Parameters
    ----------
    backend : {"mlp"}, default="mlp"
        Network family. ``"mlp"`` handles tables (and flattened images).
    mask_ratio : float, default=0.3
        Share of cells hidden per training row; scoring splits the features into
        ``round(1 / mask_ratio)`` complementary groups.
    hidden_size, latent_size : int, default=256, 64
        Width of the encoder/decoder layers and of the embedding.
    max_steps : int, default=2000
        Optimisation steps (the training budget, independent of the table's size).
    batch_size : int, default=256
        Rows per step.
    learning_rate, weight_decay : float, default=1e-3, 1e-4
        AdamW settings (warm-up then cosine decay of the learning rate).
    validation_fraction : float, default=0.0
        Share of rows held out to monitor the loss; with ``patience`` it stops training early.
    patience : int or None, default=None
        Validation checks (every 100 steps) without improvement before stopping.
    n_mask_repeats : int, default=2
        Complementary mask sets used for scoring: each cell is hidden this many times.
    evidence : tuple of str, default=("reconstruction", "neighbours")
        Which evidence the anomaly score combines (ablations use one alone).
    n_neighbors : int, default=10
        Training embeddings averaged in the neighbour evidence.
    max_reference : int, default=4096
        Training embeddings kept as the neighbour reference (a random sample beyond this).
    contamination : float, default=0.1
        Share of training records ``predict`` flags; sets ``threshold_``.
    log_transform : bool, default=True
        Signed-log transform of skewed non-negative columns (amounts) before scaling.
    progress : bool, default=False
        Show a progress bar while training.
    random_state : int or None, default=None
        Seed for weights, masks, batches and samples; fixes results on CPU.
    """

    def __init__(
        self,
        backend: str = "mlp",
        mask_ratio: float = 0.3,
        hidden_size: int = 256,
        latent_size: int = 64,
        max_steps: int = 2000,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        validation_fraction: float = 0.0,
        patience: int | None = None,
        n_mask_repeats: int = 2,
        evidence: tuple[str, ...] = EVIDENCE_KINDS,
        n_neighbors: int = 10,
        max_reference: int = 4096,
        contamination: float = 0.1,
        log_transform: bool = True,
        progress: bool = False,
        random_state: int | None = None,
    ):
        self.backend = backend
        self.mask_ratio = mask_ratio
        self.hidden_size = hidden_size
        self.latent_size = latent_size
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.n_mask_repeats = n_mask_repeats
        self.evidence = evidence
        self.n_neighbors = n_neighbors
        self.max_reference = max_reference
        self.contamination = contamination
        self.log_transform = log_transform
        self.progress = progress
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None) -> "MaskedAutoencoderDetector":
        """Learn from ``X`` (array or DataFrame, rows = records); ``y`` is ignored."""
        self._check_params()
        frame = self._as_frame(X, fitting=True)
        if len(frame) < 3:
            raise ValueError(f"need at least 3 rows to fit, got {len(frame)}")
        seed = np.random.SeedSequence(self.random_state).generate_state(1)[0]
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(int(seed))
        torch.manual_seed(int(seed))  # weight initialisation

        self.encoder_ = TableEncoder(log_transform=self.log_transform).fit(frame)
        data = self._tensors(frame)
        validation = None
        if self.validation_fraction > 0:
            order = rng.permutation(len(data))
            n_val = max(1, int(round(self.validation_fraction * len(data))))
            validation, data = data.rows(order[:n_val]), data.rows(order[n_val:])
        self.network_ = self._build_network()
        plan = TrainingPlan(
            mask_ratio=self.mask_ratio, max_steps=self.max_steps, batch_size=self.batch_size,
            learning_rate=self.learning_rate, weight_decay=self.weight_decay,
            patience=self.patience, progress=self.progress,
        )
        self.history_ = fit_network(self.network_, data, plan, generator, validation)

        self.score_masks_ = complementary_masks(
            self.encoder_.n_features, self._n_groups(), self.n_mask_repeats, int(seed)
        )
        passes = complementary_passes(self.network_, data, self.score_masks_)
        self.error_scale_ = np.maximum(passes.errors.mean(axis=0), ERROR_SCALE_FLOOR).astype(np.float32)
        reference_rows = rng.permutation(len(data))[: self.max_reference]
        self.reference_ = passes.latent[reference_rows]
        own = np.full(len(data), -1)
        own[reference_rows] = np.arange(len(reference_rows))
        raw = self._raw_evidence(passes, data.missing.numpy(), exclude=own)
        logs = {name: np.log(value + 1e-12) for name, value in raw.items()}
        self.evidence_center_ = {name: float(v.mean()) for name, v in logs.items()}
        self.evidence_scale_ = {name: float(v.std()) or 1.0 for name, v in logs.items()}
        self.training_scores_ = self._combine(raw)
        self.threshold_ = float(np.quantile(self.training_scores_, 1 - self.contamination))
        self.offset_ = -self.threshold_
        return self

    def _check_params(self) -> None:
        if self.backend != "mlp":
            raise NotImplementedError(f"backend={self.backend!r} is not available yet; use backend='mlp'")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        unknown = set(self.evidence) - set(EVIDENCE_KINDS)
        if unknown or not self.evidence:
            raise ValueError(f"evidence must be a non-empty subset of {EVIDENCE_KINDS}, got {self.evidence!r}")
        if not 0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination}")

    def _n_groups(self) -> int:
        return max(2, int(round(1 / self.mask_ratio)))

    def _build_network(self) -> MaskedTableMLP:
        sizes = [c.n_codes for c in self.encoder_.categorical_]
        return MaskedTableMLP(len(self.encoder_.numeric_), sizes, self.hidden_size, self.latent_size)

    # ------------------------------------------------------------------ inputs
    def _as_frame(self, X, fitting: bool = False) -> pd.DataFrame:
        if fitting:
            self.feature_names_in_ = np.asarray(X.columns, dtype=object) if isinstance(X, pd.DataFrame) else None
            frame = as_frame(X)
            self.n_features_in_ = frame.shape[1]
        else:
            self._check_fitted()
            names = self.encoder_.columns_ if self.feature_names_in_ is None else None
            frame = as_frame(X, names)
        frame = frame.copy(deep=False)
        frame.columns = [str(c) for c in frame.columns]
        return frame

    def _tensors(self, frame: pd.DataFrame) -> TableTensors:
        batch = self.encoder_.transform(frame)
        for column, count in batch.unseen_counts.items():
            warnings.warn(f"column {column!r}: {count} value(s) never seen in training, scored as 'unknown'", stacklevel=4)
        return TableTensors(
            torch.from_numpy(batch.numeric), torch.from_numpy(batch.categorical), torch.from_numpy(batch.missing)
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise RuntimeError("this detector is not fitted yet: call fit(X) first")

    def _passes(self, X) -> tuple[PassResult, np.ndarray]:
        data = self._tensors(self._as_frame(X))
        return complementary_passes(self.network_, data, self.score_masks_), data.missing.numpy()

    # ------------------------------------------------------------------ evidence
    def _normalised_cell_errors(self, passes: PassResult, missing: np.ndarray) -> np.ndarray:
        """(n, n_features) error / typical error, 0 for missing cells."""
        return np.where(missing, 0.0, passes.errors / self.error_scale_)

    def _raw_evidence(self, passes: PassResult, missing: np.ndarray, exclude=None) -> dict[str, np.ndarray]:
        observed = np.maximum((~missing).sum(axis=1), 1)
        return {
            "reconstruction": self._normalised_cell_errors(passes, missing).sum(axis=1) / observed,
            "neighbours": mean_knn_distance(passes.latent, self.reference_, self.n_neighbors, exclude),
        }

    def _combine(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        z = [(np.log(raw[n] + 1e-12) - self.evidence_center_[n]) / self.evidence_scale_[n] for n in self.evidence]
        return np.mean(z, axis=0)

    # ------------------------------------------------------------------ scores
    def anomaly_score(self, X) -> np.ndarray:
        """(n,) higher = more anomalous; ~0 for a typical training record, in standard deviations."""
        passes, missing = self._passes(X)
        return self._combine(self._raw_evidence(passes, missing))

    def score_samples(self, X) -> np.ndarray:
        """(n,) scikit-learn convention: higher = more normal (the negated anomaly score)."""
        return -self.anomaly_score(X)

    def decision_function(self, X) -> np.ndarray:
        """(n,) negative for records above the contamination threshold."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """(n,) -1 for outliers, +1 for inliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    # ------------------------------------------------------------------ views of the model
    def transform(self, X) -> np.ndarray:
        """(n, latent_size) embedding: the encoder's output averaged over the scoring masks."""
        return self._passes(X)[0].latent

    def reconstruct(self, X) -> pd.DataFrame:
        """Every cell as the model predicts it from the rest of its row (original units)."""
        passes, _ = self._passes(X)
        codes = np.stack([p.argmax(axis=1) for p in passes.category_probs], axis=1) if passes.category_probs \
            else np.zeros((len(passes.numeric), 0), dtype=np.int64)
        return self.encoder_.decode(passes.numeric, codes)

    def impute(self, X) -> pd.DataFrame:
        """``X`` with its missing (or unparseable) cells filled by the model's predictions."""
        frame = self._as_frame(X)[self.encoder_.columns_]
        filled = frame.astype(object).where(frame.notna(), self.reconstruct(frame).astype(object))
        return filled.infer_objects()

    def explain(self, X, top_k: int | None = None) -> pd.DataFrame:
        """Per-feature contributions to the reconstruction evidence, largest first per row.

        Columns: ``row`` (position in ``X``), ``feature``, ``observed``, ``expected`` (the model's
        prediction with the cell hidden, original units), ``contribution`` (normalised error of the
        cell divided by the row's observed cells: the row's contributions sum to its raw
        reconstruction evidence) and ``share`` (fraction of that sum).
        """
        frame = self._as_frame(X)
        passes, missing = self._passes(frame)
        expected = self.reconstruct(frame)
        observed = np.maximum((~missing).sum(axis=1, keepdims=True), 1)
        contribution = self._normalised_cell_errors(passes, missing) / observed
        names = self.encoder_.feature_names
        long = pd.DataFrame({
            "row": np.repeat(np.arange(len(frame)), len(names)),
            "feature": np.tile(names, len(frame)),
            "observed": frame[names].to_numpy(dtype=object).ravel(),
            "expected": expected[names].to_numpy(dtype=object).ravel(),
            "contribution": contribution.ravel(),
        })
        long["share"] = long["contribution"] / long.groupby("row")["contribution"].transform("sum").replace(0, 1)
        long = long.sort_values(["row", "contribution"], ascending=[True, False], kind="stable")
        if top_k is not None:
            long = long.groupby("row", sort=False).head(top_k)
        return long.reset_index(drop=True)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to folder ``path`` (JSON + safetensors, no pickle)."""
        self._check_fitted()
        return save_detector_state(self, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> "MaskedAutoencoderDetector":
        """Read a detector written by :meth:`save`."""
        return load_detector_state(cls, Path(path))
