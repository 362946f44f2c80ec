"""``MaskedAutoencoderDetector``: a scikit-learn style outlier detector built on masked modelling.

Hide part of each record, learn to rebuild it from the rest, and treat "could not be rebuilt" as
evidence of an anomaly. Four kinds of evidence are combined:

* **reconstruction** — every cell is hidden and predicted from the others (complementary masks);
  each cell's error is divided by that feature's typical error on the training data, so one noisy
  column cannot dominate, and averaged over the row's observed cells. Sees broken relationships
  between features and single-column extremes. ``explain`` breaks this down per feature.
* **neighbours** — distance from the record (as the network reads it: scaled numbers, one-hot
  categories) to the nearest member of small random samples of the training records, averaged
  over 20 samples at each of three sizes (16, 64, 256). Sees anomalies that are internally
  consistent but unlike any training record; small samples keep it robust when the training data
  hold unlabelled anomalies, even dense clusters of them (see ``maskae.neighbours``). The
  ``contamination`` share of training rows that score highest is left out of the samples.
* **nearest** — distance to the nearest of 2,048 training records (KNN's resolution, which small
  samples lack), unless the record's 5 nearest training records are suspect: far from the small
  samples yet in close company, as a cluster of unlabelled anomalies is. The record then counts
  as at least as unusual as the most suspect of them (``_fit_nearest``).
* **tails** — how rare each cell's value is in its own column (a number's two-sided empirical
  tail probability among the training values, as in ECOD; a category's share of training values
  at most as frequent), averaged over the row as ``-log p``: a value far out in its column's tail,
  which reconstruction tends to blur, or a category seldom or never seen (``maskae.tails``).

Training is trimmed: the network trains for half its step budget on every training record, the
evidence is fitted, and the ``contamination`` share that scores highest sits out the second half.
Unlabelled anomalies in the training data (a night's unreviewed fraud) are then not learnt, so the
reconstruction evidence, and the reasons ``explain`` gives, keep seeing them.

Each term (reconstruction, tails, nearest, and neighbours at each sample size) is put on a common
scale by standardising its logarithm against the training records' values (errors and distances
are positive and right-skewed, roughly log-normal), and the anomaly score is their mean, each kind
of evidence weighing the same (the neighbour sample sizes share one weight): about 0 for a typical
training record, in standard deviations above it.

Images: ``backend="cnn"`` inpaints masked image patches with a small convolutional network and
scores per pixel, plus whole-image neighbour evidence (``maskae.image_backend``); ``backend="mlp"``
on an image batch reads each image as one row of pixels and scores it like a table. Either way
``explain`` returns anomaly maps.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 4)); X[:, 1] = X[:, 0] * 2
>>> det = MaskedAutoencoderDetector(max_steps=200, random_state=0).fit(X)
>>> odd = np.array([[2.0, -4.0, 0.0, 0.0]])  # breaks x1 = 2 * x0
>>> bool(det.anomaly_score(odd)[0] > np.quantile(det.training_scores_, 0.99))
True
"""

from __future__ import annotations

import numbers
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse
import torch
from sklearn.base import BaseEstimator, OutlierMixin, TransformerMixin
from sklearn.exceptions import NotFittedError

from maskae.image_backend import ImageBackendMixin
from maskae.image_batch import ImageFormat, is_image_batch
from maskae.image_training import AUGMENTATIONS
from maskae.masking import complementary_masks
from maskae.mlp import MaskedTableMLP
from maskae.neighbours import NeighbourSamples
from maskae.persistence import load_detector_state, save_detector_state
from maskae.table_encoding import UNKNOWN_CODE, EmptyRowWarning, TableEncoder, UnknownCategoryWarning, as_frame
from maskae.table_encoding import numbers as column_numbers  # the stdlib's numbers is in use here
from maskae.table_encoding import outside_stacklevel
from maskae.tails import CategoryTails, ColumnTails
from maskae.training import PassResult, TableTensors, TrainingPlan, complementary_passes, fit_network

ERROR_SCALE_FLOOR = 1e-3  # a feature predicted to ~3 % of its std still counts as "typical"
# A category column's typical error counts as at least the cross-entropy of a right guess made at
# 90 % (-ln 0.9 nats). A column the others all but decide (card_present given channel) is rebuilt
# in training with near-zero error; divided by that, its prediction's wobble on an unusual row,
# caused by the unusual values around it, outweighed those values and led the reasons.
CATEGORY_ERROR_FLOOR = -np.log(0.9)
EVIDENCE_KINDS = ("reconstruction", "neighbours", "nearest", "tails")
IMAGE_EVIDENCE_KINDS = ("reconstruction", "neighbours")  # the CNN backend has no per-cell tails nor nearest
NEAREST_REFERENCE = 2048  # training rows sampled for the nearest evidence
NEAREST_K = 5  # its neighbourhood: the company a row keeps, and the rows whose suspicion a record inherits
OVERLAP_ROWS = 4096  # scoring a batch this large, the neighbour search runs beside the network (_raw_evidence)


class MaskedAutoencoderDetector(ImageBackendMixin, TransformerMixin, OutlierMixin, BaseEstimator):
    """Masked-autoencoder anomaly detector for mixed-type tables and images.

    Parameters
    ----------
    backend : {"mlp", "cnn"}, default="mlp"
        Network family. ``"mlp"`` handles tables and image batches (each image flattened to a row
        of pixels); ``"cnn"`` handles image batches (N x H x W x C ``uint8``, N x C x H x W float or
        N x H x W grayscale) and inpaints masked patches.
    mask_ratio : float, default=0.3
        Share of cells (patches) hidden per training row (image); scoring splits the features
        (patches) into ``round(1 / mask_ratio)`` complementary groups. With ``backend="cnn"``, 0
        trains a plain reconstruction autoencoder (nothing hidden, the ablation).
    hidden_size, latent_size : int, default=128, 64
        MLP: width of the encoder/decoder layers and of the embedding.
    max_steps : int, default=1000
        Optimisation steps (the training budget, independent of the table's size).
    batch_size : int, default=256
        Rows (images) per step; for the CNN a few dozen images is plenty and far faster.
    learning_rate, weight_decay : float, default=1e-3, 1e-4
        AdamW settings (warm-up then cosine decay of the learning rate).
    validation_fraction : float, default=0.0
        Share of rows held out to monitor the loss; with ``patience`` it stops training early.
    patience : int or None, default=None
        Validation checks (every 100 steps) without improvement before stopping (each half of
        the MLP's trimmed training stops on its own).
    calibration_fraction : float, default=0.0
        Share of rows held out from training and scored afterwards: ``calibration_scores_``,
        the scores of unseen normal-looking records that calibrated thresholds rest on
        (``maskae.calibration``). 0 holds nothing out.
    n_mask_repeats : int, default=1
        Complementary mask sets used for scoring: each cell is hidden this many times. A second
        set costs a third more scoring time and moved maskae's means in the tabular benchmark
        by at most 0.4 points.
    evidence : tuple of str, default=("reconstruction", "neighbours", "nearest", "tails")
        Which evidence the anomaly score combines (ablations use one alone); ``evidence_scores``
        shows each term. The CNN backend has reconstruction and neighbours (whole-image distance).
    neighbour_sample_sizes : tuple of int, default=(16, 64, 256)
        Sizes of the random training samples of the neighbour evidence, one term per size.
    n_neighbour_samples : int, default=20
        Random samples drawn at each size; the distances are averaged over them.
    contamination : float, default=0.1
        Share of training records taken to be anomalous: they are left out of the second half of
        training (MLP) and of the neighbour samples, and ``predict`` flags that share
        (``threshold_``). The defaults suit training data that may hold unlabelled anomalies;
        for data vetted clean, the README's recipe (``neighbour_sample_sizes=(256, 1024)``,
        0.01) suits better.
    log_transform : bool, default=True
        Signed-log transform of skewed non-negative columns (amounts) before scaling.
    max_categories : int or None, default=256
        A categorical column with more distinct values keeps this many of its most frequent
        ones seen at least twice; its rarer values, and values never seen in training, share one
        "other" code. Keeps memory bounded when a column holds identifiers or timestamps
        (fitting warns about those: leave them out). None keeps every category.
    image_size : int or None, default=None
        Images are resized to ``image_size`` x ``image_size`` pixels before the network sees them
        (both backends); None keeps the training images' own size.
    patch_size : int or tuple of int, default=8
        CNN: side in pixels (at ``image_size``) of the square patches that are hidden; several
        sizes train and score at several scales. Near one period of a texture works well.
    cnn_widths : tuple of int, default=(16, 32, 64)
        CNN: channels of each encoder level (each level after the first halves the resolution).
    augment : {"shift", "flip", "none"}, default="shift"
        CNN training augmentation: small random shifts, ``"flip"`` adds horizontal and vertical
        flips (for objects whose orientation does not matter), ``"none"`` turns it off.
    progress : bool, default=False
        Show a progress bar while training.
    random_state : int, RandomState, Generator or None, default=None
        Seed for weights, masks, batches and samples; an int fixes results on CPU. A NumPy
        ``RandomState`` or ``Generator`` (as scikit-learn takes them) gives each fit a seed drawn
        from it; a saved model records None for it.
    """

    def __init__(
        self,
        backend: str = "mlp",
        mask_ratio: float = 0.3,
        hidden_size: int = 128,
        latent_size: int = 64,
        max_steps: int = 1000,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        validation_fraction: float = 0.0,
        patience: int | None = None,
        calibration_fraction: float = 0.0,
        n_mask_repeats: int = 1,
        evidence: tuple[str, ...] = EVIDENCE_KINDS,
        neighbour_sample_sizes: tuple[int, ...] = (16, 64, 256),
        n_neighbour_samples: int = 20,
        contamination: float = 0.1,
        log_transform: bool = True,
        max_categories: int | None = 256,
        image_size: int | None = None,
        patch_size: int | tuple[int, ...] = 8,
        cnn_widths: tuple[int, ...] = (16, 32, 64),
        augment: str = "shift",
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
        self.calibration_fraction = calibration_fraction
        self.n_mask_repeats = n_mask_repeats
        self.evidence = evidence
        self.neighbour_sample_sizes = neighbour_sample_sizes
        self.n_neighbour_samples = n_neighbour_samples
        self.contamination = contamination
        self.log_transform = log_transform
        self.max_categories = max_categories
        self.image_size = image_size
        self.patch_size = patch_size
        self.cnn_widths = cnn_widths
        self.augment = augment
        self.progress = progress
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None) -> "MaskedAutoencoderDetector":
        """Learn from ``X`` (array, DataFrame or image batch; rows = records); ``y`` is ignored."""
        self._check_params()
        _refuse_sparse(X)
        if not isinstance(X, pd.DataFrame) and not hasattr(X, "__len__"):  # array-likes that only convert
            X = np.asarray(X)
        if len(X) < 3:
            raise ValueError(f"need at least 3 rows to fit, got n_samples = {len(X)}")
        if self.patience is not None and not self.validation_fraction:
            warnings.warn("patience has no effect without validation_fraction > 0: training runs its whole "
                          "max_steps budget", UserWarning, stacklevel=outside_stacklevel())
        state = self.random_state
        if isinstance(state, np.random.RandomState):  # drawn from, as scikit-learn's estimators do
            state = int(state.randint(np.iinfo(np.int32).max))
        elif isinstance(state, np.random.Generator):
            state = int(state.integers(2**32))
        seed = np.random.SeedSequence(state).generate_state(1)[0]
        with torch.random.fork_rng(devices=[]):  # the caller's global torch RNG is left as it was
            torch.manual_seed(int(seed))  # weight initialisation
            return self._fit_seeded(X, seed)

    def _fit_seeded(self, X, seed: int) -> "MaskedAutoencoderDetector":
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(int(seed))
        if self.backend == "cnn":
            held_out = self._fit_images(X, rng, generator, seed)
            self._set_threshold()
            self.calibration_scores_ = self.anomaly_score(X[held_out]) if len(held_out) else np.zeros(0)
            return self
        frame = self._as_frame(X, fitting=True)

        # Calibration rows are split off first and take no part in fitting, not even the scaling:
        # the conformal guarantee needs them exchangeable with future records.
        kept, held_out = self._hold_out(len(frame), self.calibration_fraction, rng)
        self.encoder_ = TableEncoder(self.log_transform, self.max_categories).fit(frame.iloc[kept])
        data = self._tensors(frame.iloc[kept], warn_capped=False)  # fitting has warned of capped columns
        train_rows, validation_rows = self._hold_out(len(data), self.validation_fraction, rng)
        validation = data.rows(validation_rows) if len(validation_rows) else None
        data = data.rows(train_rows)
        self.network_ = self._build_network()
        plan = TrainingPlan(
            mask_ratio=self.mask_ratio, max_steps=self.max_steps, batch_size=self.batch_size,
            learning_rate=self.learning_rate, weight_decay=self.weight_decay,
            patience=self.patience, progress=self.progress,
        )
        self.score_masks_ = complementary_masks(
            self.encoder_.n_features, self._n_groups(), self.n_mask_repeats, int(seed)
        )
        n_numeric = len(self.encoder_.numeric_)
        self.tails_ = ColumnTails.fit(data.numeric.numpy(), data.missing.numpy()[:, :n_numeric])
        self.category_tails_ = CategoryTails.fit(data.categorical.numpy(), data.missing.numpy()[:, n_numeric:],
                                                 [c.n_codes for c in self.encoder_.categorical_],
                                                 [c.identifier_like for c in self.encoder_.categorical_])
        # Trimmed training (module docstring): the second half of the budget leaves out the rows
        # the evidence takes for anomalies, so that the network does not learn to rebuild them.
        half = self.max_steps // 2
        first = fit_network(self.network_, data, replace(plan, max_steps=half), generator, validation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyRowWarning)  # said of these rows once, by the final call
            inliers = self._fit_evidence(data, np.arange(len(data)), rng, final=False)
        rest = replace(plan, max_steps=self.max_steps - half)
        second = fit_network(self.network_, data.rows(inliers), rest, generator, validation)
        self.history_ = {name: first[name] + second[name] for name in first}
        self.history_["trimmed_from_step"] = [len(first["train_loss"])]  # where the loss curve restarts
        self._fit_evidence(data, inliers, rng, final=True)
        self._set_threshold()
        held = self._tensors(frame.iloc[held_out], warn_capped=False) if len(held_out) else None
        self.calibration_scores_ = self._score(held) if held is not None else np.zeros(0)
        return self

    def _set_threshold(self) -> None:
        """``predict`` flags the ``contamination`` share of training records that score highest."""
        self.threshold_ = float(np.quantile(self.training_scores_, 1 - self.contamination))
        self.offset_ = -self.threshold_

    def _fit_evidence(self, data: TableTensors, trained_on: np.ndarray, rng: np.random.Generator,
                      final: bool) -> np.ndarray:
        """Fit the evidence that depends on the network, on the training rows ``data``: the typical
        error of each feature (over the rows the network ``trained_on``), then the neighbour samples
        and the standardisation of every term (``training_scores_``); the tails are fitted already.
        Returns the rows not left out as contamination (``_draw_neighbours``), which is all that a
        call before the ``final`` one is for."""
        passes = complementary_passes(self.network_, data, self.score_masks_)
        observed = ~data.missing.numpy()[trained_on]
        typical = (passes.errors[trained_on] * observed).sum(axis=0) / np.maximum(observed.sum(axis=0), 1)
        is_category = np.arange(len(typical)) >= len(self.encoder_.numeric_)
        self.error_scale_ = np.maximum(typical, np.where(is_category, CATEGORY_ERROR_FLOOR, ERROR_SCALE_FLOOR)
                                       ).astype(np.float32)
        return self._draw_neighbours(self._local_evidence(passes, data), self._neighbour_space(data), rng, final)

    def _draw_neighbours(self, local: dict[str, np.ndarray], space: np.ndarray, rng: np.random.Generator,
                         final: bool = True) -> np.ndarray:
        """Draw the neighbour samples from the training rows ``space``, then standardise every
        evidence term (``local`` holds the others) on the training rows; a training row is never
        its own neighbour. Twice: unlabelled anomalies in the training data would be each other's
        neighbours, so the second draw leaves out the `contamination` share that scored highest.
        Tables then get the ``nearest`` evidence, its reference rows drawn from every training row
        (drawn on every call, so that the random stream is the same; fitted on the ``final`` one).

        Returns the positions of the rows not left out. They are chosen before the nearest term,
        which rests on the samples drawn from them, by the mean of the other terms, each weighing
        one: the neighbour samples, built to withstand contamination, hold most of that weight. In
        trials on the tabular benchmark's credit-card data, choosing them by the anomaly score (the
        nearest term in, the kinds weighing the same) let the network learn fraud that this choice
        leaves out: reconstruction alone lost nearly a third of its AUPRC."""
        reference = (np.sort(rng.choice(len(space), min(NEAREST_REFERENCE, len(space)), replace=False))
                     if self.backend == "mlp" else None)
        candidates = np.arange(len(space))  # the first draw: from every training row
        for _ in range(2):
            self.neighbours_ = NeighbourSamples.draw(
                space, candidates, self.neighbour_sample_sizes, self.n_neighbour_samples, rng
            )
            # each row is found in the pool by its values, as a record scored later is
            raw = {**local, **self.neighbours_.distances(space)}
            self._fit_standardisation(raw)
            candidates = self._inliers(_weighted_mean(self._standardised(raw), dict.fromkeys(raw, 1.0)))
        if not final:
            return candidates  # a call that only chooses the rows left out from training
        if reference is not None:
            self._fit_nearest(space, reference, raw)
            # Measured again with the reference rows in the pool, as every record scored later is:
            # a copy of a training row may now be in it, which changes which copy is "first".
            raw = {**local, **self.neighbours_.distances(space)}
            self._fit_standardisation(raw)
        self.training_scores_ = self._combine(raw)
        return candidates

    def _fit_standardisation(self, raw: dict[str, np.ndarray]) -> None:
        """Centre and scale each term's logarithm on the training rows (``raw``) and weigh the
        terms. Each kind of evidence weighs the same, its terms (neighbours at each sample size)
        sharing its weight; the CNN's terms weigh one each."""
        logs = {name: np.log(value[~np.isnan(value)] + 1e-12) for name, value in raw.items()}  # NaN: no evidence
        self.evidence_center_ = {name: float(v.mean()) if len(v) else 0.0 for name, v in logs.items()}
        # A constant term (tails on a table of one value per column) has a rounding-error spread, not a scale.
        self.evidence_scale_ = {name: float(v.std()) if len(v) and v.std() > 1e-9 else 1.0 for name, v in logs.items()}
        # A distance term reads a record no closer to the training rows than the closest of them:
        # a near-copy of a training row (one cast to float32, or written to a CSV and read back)
        # finds that row at a distance of 1e-7 where the row itself, out of its own reach, found its
        # next neighbour; the logarithm made that tens of standard deviations more normal than any
        # training row, and pulled unlabelled fraud screened again under its training score.
        self.evidence_floor_ = {name: float(v.min()) for name, v in logs.items() if _is_distance(name) and len(v)}
        kinds = Counter(name.split("@")[0] for name in raw)
        self.evidence_weights_ = {name: 1.0 if self.backend == "cnn" else 1.0 / kinds[name.split("@")[0]]
                                  for name in raw}

    def _fit_nearest(self, space: np.ndarray, reference: np.ndarray, raw: dict[str, np.ndarray]) -> None:
        """Add the training rows ``reference`` to the neighbour samples and fit the ``nearest``
        evidence (see *How it scores* in the README).

        A record's distance to its nearest reference row is KNN's evidence, blind to anomalies that
        have company in the training data. So each reference row is scored for suspicion: how far
        it lies from the small samples (``raw``'s neighbour terms, standardised), less how close
        its ``NEAREST_K`` nearest reference rows are (both in standard deviations over the training
        rows). A row far from the samples yet in close company is one of a cluster that the small
        samples rarely hold: unlabelled anomalies. A record then counts as at least as far from
        normal as the most suspect of its ``NEAREST_K`` nearest reference rows (suspicion turned
        into the nearest-row distance that many standard deviations above the typical one)."""
        samples = self.neighbours_.with_reference(space, reference)
        k = min(NEAREST_K, len(reference) - 1)
        distance, _ = samples.nearest(space, k)
        z = self._standardised(raw)
        far = np.mean([v for name, v in z.items() if name.startswith("neighbours@")], axis=0)
        first = np.log(distance[:, 0].astype(np.float64) + 1e-12)
        # Identical copies are not company: a row with k copies of itself (a repeated ordinary
        # record) is judged by its distance from the samples alone, company counting as typical.
        kth, copies = distance[:, -1].astype(np.float64), distance[:, -1] == 0
        logs = np.log(kth[~copies]) if (~copies).any() else np.zeros(1)
        company = np.where(copies, 0.0, (np.log(np.where(copies, 1.0, kth)) - logs.mean()) / (logs.std() or 1.0))
        suspicion = (far - company)[reference]
        # in distance units; the exponent is capped where float64 overflows
        samples.suspect = np.exp(np.minimum(first.mean() + (first.std() or 1.0) * suspicion, 700.0))
        samples.k = k
        self.neighbours_ = samples

    def _inliers(self, scores: np.ndarray) -> np.ndarray:
        """Positions of the training rows outside the ``contamination`` share that ``scores`` highest."""
        return np.flatnonzero(scores <= np.quantile(scores, 1 - self.contamination))

    @staticmethod
    def _hold_out(n_rows: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Row positions (kept, held_out), a random ``fraction`` held out (none when 0)."""
        if fraction <= 0:
            return np.arange(n_rows), np.arange(0)
        order = rng.permutation(n_rows)
        n_out = max(1, int(round(fraction * n_rows)))
        if n_rows - n_out < 3:
            raise ValueError(f"holding out {fraction:.0%} of {n_rows} rows leaves too few to train on")
        return np.sort(order[n_out:]), np.sort(order[:n_out])

    def _check_params(self) -> None:
        if self.backend not in ("mlp", "cnn"):
            raise ValueError(f"backend must be 'mlp' or 'cnn', got {self.backend!r}")
        low_ok = self.mask_ratio >= 0 if self.backend == "cnn" else self.mask_ratio > 0  # cnn: 0 = plain autoencoder
        if not (low_ok and self.mask_ratio < 1):
            bounds = "[0, 1)" if self.backend == "cnn" else "(0, 1)"
            raise ValueError(f"mask_ratio must be in {bounds} for backend={self.backend!r}, got {self.mask_ratio}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if not self._patch_sizes() or min(self._patch_sizes()) < 1:
            raise ValueError(f"patch_size must be a positive int or a tuple of them, got {self.patch_size!r}")
        kinds = IMAGE_EVIDENCE_KINDS if self.backend == "cnn" else EVIDENCE_KINDS
        if isinstance(self.evidence, str):  # set("tails") would be its letters
            raise ValueError(f"evidence must be a tuple of kinds, e.g. ({self.evidence!r},), got the string "
                             f"{self.evidence!r}")
        if set(self.evidence) - set(EVIDENCE_KINDS) or not set(self.evidence) & set(kinds):
            raise ValueError(f"evidence for backend={self.backend!r} must name some of {kinds}, got {self.evidence!r}")
        if self.max_categories is not None and (not isinstance(self.max_categories, numbers.Integral)
                                                or isinstance(self.max_categories, bool) or self.max_categories < 1):
            raise ValueError(f"max_categories must be a positive int or None, got {self.max_categories}")
        state = self.random_state
        if not (state is None or isinstance(state, (np.random.RandomState, np.random.Generator))
                or (isinstance(state, numbers.Integral) and not isinstance(state, bool) and state >= 0)):
            raise ValueError(f"random_state must be None, a non-negative int or a NumPy RandomState or Generator, "
                             f"got {state!r}")
        if not isinstance(self.contamination, numbers.Real) or not 0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be a number in (0, 0.5], got {self.contamination!r}")
        counts = {"max_steps": self.max_steps, "batch_size": self.batch_size, "hidden_size": self.hidden_size,
                  "latent_size": self.latent_size, "n_mask_repeats": self.n_mask_repeats,
                  "n_neighbour_samples": self.n_neighbour_samples}
        for name, value in counts.items():
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        sizes = tuple(self.neighbour_sample_sizes)  # drawn whatever the evidence: trimming and nearest use them
        if not sizes or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(f"neighbour_sample_sizes must be positive ints, at least one, got {sizes!r}")

    def _n_groups(self) -> int:
        return max(2, int(round(1 / self.mask_ratio)))

    def _build_network(self) -> MaskedTableMLP:
        if self.backend == "cnn":
            return self._build_image_network()
        sizes = [c.n_codes for c in self.encoder_.categorical_]
        return MaskedTableMLP(len(self.encoder_.numeric_), sizes, self.hidden_size, self.latent_size)

    # ------------------------------------------------------------------ inputs
    def _as_frame(self, X, fitting: bool = False) -> pd.DataFrame:
        """``X`` as a table; an image batch (``backend="mlp"``) as one row of pixels per image."""
        _refuse_sparse(X)
        if fitting:
            self.image_format_ = ImageFormat.fit(X, self.image_size) if is_image_batch(X) else None
        else:
            self._check_fitted()
        if is_image_batch(X):
            if self.image_format_ is None:
                raise ValueError(f"this detector was fitted on a table; got an image batch of shape {X.shape}")
            X = self.image_format_.flatten(X)
        if fitting:
            self.feature_names_in_ = np.asarray(X.columns, dtype=object) if isinstance(X, pd.DataFrame) else None
            frame = as_frame(X)
            if not isinstance(X, pd.DataFrame):  # a mixed table's to_numpy() is one object array: its numbers
                frame = frame.infer_objects()  # stay numbers (at fit only: a batch's inference could differ)
            if frame.shape[1] == 0:
                raise ValueError(f"Found array with 0 feature(s) (shape={frame.shape}) while a minimum of 1 is required: "
                                 f"a table needs at least one column")
            self.n_features_in_ = frame.shape[1]
        else:
            if self.feature_names_in_ is not None and not isinstance(X, pd.DataFrame):
                raise ValueError(f"this detector was fitted on a DataFrame and matches columns by name: pass a "
                                 f"DataFrame with columns {list(self.encoder_.columns_)}, not {type(X).__name__}")
            names = self.encoder_.columns_ if self.feature_names_in_ is None else None
            if names is not None and isinstance(X, pd.DataFrame) and list(X.columns) != list(names):
                # as scikit-learn does: a model fitted on an array takes a frame's columns by position
                warnings.warn("X has feature names, but this detector was fitted without feature names: its columns "
                              "are taken by position", UserWarning, stacklevel=outside_stacklevel())
                X = X.set_axis(names, axis=1) if X.shape[1] == len(names) else X.to_numpy()
            frame = as_frame(X, names)
        if any(dtype.kind == "c" for dtype in frame.dtypes):
            raise ValueError("Complex data not supported: give the real and imaginary parts as two columns")
        frame = frame.copy(deep=False)
        frame.columns = [str(c) for c in frame.columns]
        return frame

    def _tensors(self, frame: pd.DataFrame, warn_capped: bool = True) -> TableTensors:
        batch = self.encoder_.transform(frame)
        for column in self.encoder_.categorical_:
            if column.name in batch.unseen_counts and (warn_capped or not column.capped):
                warnings.warn(column.unknown_message(batch.unseen_counts[column.name]), UnknownCategoryWarning,
                              stacklevel=outside_stacklevel())
        return TableTensors(
            torch.from_numpy(batch.numeric), torch.from_numpy(batch.categorical), torch.from_numpy(batch.missing)
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError("this detector is not fitted yet: call fit(X) first")

    def _passes(self, X) -> tuple[PassResult, TableTensors]:
        data = self._tensors(self._as_frame(X))
        return complementary_passes(self.network_, data, self.score_masks_), data

    def _neighbour_space(self, data: TableTensors) -> np.ndarray:
        """Rows as the network reads them: scaled numbers (missing = the mean, 0) and one-hot
        categories scaled so that a different category counts like one standard deviation."""
        parts = [data.numeric.numpy()]
        for j, col in enumerate(self.encoder_.categorical_):
            one_hot = np.zeros((len(data), col.n_codes), dtype=np.float32)
            one_hot[np.arange(len(data)), data.categorical[:, j].numpy()] = np.sqrt(0.5)
            parts.append(one_hot)
        return np.concatenate(parts, axis=1)

    # ------------------------------------------------------------------ evidence
    def _normalised_cell_errors(self, passes: PassResult, missing: np.ndarray) -> np.ndarray:
        """(n, n_features) error / typical error, 0 for missing cells."""
        return np.where(missing, 0.0, passes.errors / self.error_scale_)

    def _local_evidence(self, passes: PassResult, data: TableTensors) -> dict[str, np.ndarray]:
        """The evidence terms of each row alone, before standardisation: ``reconstruction``, ``tails``;
        NaN where a row has no observed cell to judge (no cell at all; for the tails of a model
        saved before format 9, no numeric cell), which leaves the term out of that row's score
        rather than reading it as a perfect fit."""
        missing = data.missing.numpy()
        observed = (~missing).sum(axis=1)
        n_numeric = len(self.encoder_.numeric_)
        if empty := int((observed == 0).sum()):
            warnings.warn(f"{empty:,} row(s) have no observed value: nothing in them can be rebuilt or be rare, so "
                          f"those terms are left out of their scores (the distance terms remain)", EmptyRowWarning,
                          stacklevel=outside_stacklevel())
        if self.category_tails_ is not None and self.encoder_.categorical_:
            # every observed cell's surprise -log p, numbers' and categories' alike (maskae.tails)
            shares = self._tail_shares(data, missing)
            surprise = -np.log(np.where(missing, 1.0, shares))  # a missing cell: 0
            tails = np.where(observed > 0, np.exp(surprise.sum(axis=1) / np.maximum(observed, 1)), np.nan)
        else:  # numbers only: a table of them, or a model saved before format 9
            no_numbers = (~missing[:, :n_numeric]).sum(axis=1) == 0
            tails = self.tails_.evidence(data.numeric.numpy(), missing[:, :n_numeric])
            # a table without numeric columns keeps its constant tails term, as its saved models had it
            tails = np.where(no_numbers, np.nan, tails) if n_numeric else tails
        return {
            "reconstruction": np.where(observed > 0, self._normalised_cell_errors(passes, missing).sum(axis=1)
                                       / np.maximum(observed, 1), np.nan),
            "tails": tails,
        }

    def _tail_shares(self, data: TableTensors, missing: np.ndarray) -> np.ndarray:
        """(n, n_features) each cell's tail probability (``maskae.tails``), NaN where missing; NaN
        for every category in models saved before format 9, which kept no category tails."""
        n_numeric = len(self.encoder_.numeric_)
        numbers = self.tails_.tail_shares(data.numeric.numpy(), missing[:, :n_numeric])
        if self.category_tails_ is None:
            return np.concatenate([numbers, np.full((len(missing), len(self.encoder_.categorical_)), np.nan)], axis=1)
        return np.concatenate([numbers, self.category_tails_.tail_shares(data.categorical.numpy(),
                                                                         missing[:, n_numeric:])], axis=1)

    def _raw_evidence(self, data: TableTensors) -> dict[str, np.ndarray]:
        """Every evidence term before standardisation, ``neighbours@<size>`` and ``nearest`` included.

        On a batch of ``OVERLAP_ROWS`` or more, with torch allowed more than one thread, the
        neighbour search runs in a second thread while the network scores: both spend their time
        in torch and numpy, which let go of the GIL, so the two overlap (``benchmarks/speed.py`` on
        2 cores: 42,300 rows/s before, 48,800-54,000 in three runs after). The scores are those of
        one after the other. One torch thread (a Dask worker's setting, or a user's) means one
        core: then, and on small batches, they run in turn."""
        space = self._neighbour_space(data)

        def local() -> dict[str, np.ndarray]:
            return self._local_evidence(complementary_passes(self.network_, data, self.score_masks_), data)

        if len(data) < OVERLAP_ROWS or torch.get_num_threads() == 1:
            return {**local(), **self.neighbours_.distances(space)}
        with ThreadPoolExecutor(max_workers=1) as search:
            neighbours = search.submit(self.neighbours_.distances, space)
            return {**local(), **neighbours.result()}

    def _standardised(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        floor = self.evidence_floor_
        return {n: (np.maximum(np.log(v + 1e-12), floor.get(n, -np.inf)) - self.evidence_center_[n])
                / self.evidence_scale_[n] for n, v in raw.items()}

    def _combine(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        """The mean of the standardised terms whose kind is in ``evidence``, weighed by ``evidence_weights_``."""
        z = {name: v for name, v in self._standardised(raw).items() if name.split("@")[0] in self.evidence}
        return _weighted_mean(z, self.evidence_weights_)

    # ------------------------------------------------------------------ scores
    def anomaly_score(self, X) -> np.ndarray:
        """(n,) higher = more anomalous; ~0 for a typical training record, in standard deviations."""
        if self.backend == "cnn":
            return self._combine(self._image_evidence(X))
        return self._score(self._tensors(self._as_frame(X)))

    def _score(self, data: TableTensors) -> np.ndarray:
        return self._combine(self._raw_evidence(data))

    def evidence_scores(self, X) -> pd.DataFrame:
        """(n, terms) every evidence term, standardised on the training records like the anomaly
        score (~0 typical, in standard deviations; higher = more anomalous). ``anomaly_score`` is
        the mean of the columns whose kind (the name before ``@``) is in ``evidence``, each kind
        weighing the same (``evidence_weights_``; the CNN's terms weigh one each): this tells
        *which* evidence made a record stand out. A DataFrame's index is kept."""
        if self.backend == "cnn":
            raw = self._image_evidence(X)
        else:
            raw = self._raw_evidence(self._tensors(self._as_frame(X)))
        terms = pd.DataFrame(self._standardised(raw))
        return terms.set_axis(X.index) if isinstance(X, pd.DataFrame) else terms

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
    def training_range_sides(self, X) -> pd.DataFrame:
        """(n, numeric columns) of a table ``X``: -1 where a value lies below the smallest value its
        column had in training, 1 above the largest, 0 within it or missing (a sign never seen, or
        an export in other units, shows here before any score does); compared as scored, encoded.
        Every value reads 0 in models saved before format 3, which kept no training range. A
        DataFrame's index is kept."""
        self._check_table_model()
        frame = self._as_frame(X)
        codes, missing = self.encoder_.numeric_codes(frame)
        # the side of the range end a cell lies beyond; no end (NaN) within it, or without a range
        sides = np.nan_to_num(np.sign(codes - self.tails_.beyond_range(codes)))
        return pd.DataFrame(np.where(missing, 0, sides).astype(np.int8), index=frame.index,
                            columns=[c.name for c in self.encoder_.numeric_])

    def training_range(self) -> dict[str, tuple[float, float, int]]:
        """Per numeric column, (smallest, largest, n): the range of its training values, in its own
        units, and how many there were; empty for models saved before format 3, which kept no range."""
        self._check_table_model()
        if not isinstance(self.tails_, ColumnTails):
            return {}
        low, high = self.tails_.quantiles[0].astype(np.float64), self.tails_.quantiles[-1].astype(np.float64)
        first = np.broadcast_to(self.tails_.probabilities[0], low.shape)  # 1 / (n + 1)
        return {col.name: (_decoded(col, low[j]), _decoded(col, high[j]), int(round(1 / first[j])) - 1)
                for j, col in enumerate(self.encoder_.numeric_)}

    def _check_table_model(self) -> None:
        """A fitted model of tables: the CNN's have no columns."""
        self._check_fitted()
        if self.backend == "cnn":
            raise ValueError("a CNN model reads images, not columns: it has no training range of column values")

    def transform(self, X) -> np.ndarray:
        """(n, latent_size) embedding: the encoder's output averaged over the scoring masks
        (CNN: (n, cnn_widths[-1]), the deepest features averaged over the image)."""
        if self.backend == "cnn":
            return self._image_transform(X)
        return self._passes(X)[0].latent

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of :meth:`transform`'s columns, ``latent0``, ``latent1``, ...: with them
        scikit-learn's ``set_output(transform="pandas")`` works, in a ``Pipeline`` too."""
        self._check_fitted()
        width = self.cnn_widths[-1] if self.backend == "cnn" else self.latent_size
        return np.array([f"latent{i}" for i in range(width)], dtype=object)

    def reconstruct(self, X) -> pd.DataFrame | np.ndarray:
        """Every cell as the model predicts it from the rest of its row (original units). For an
        image batch: the inpainted images (each pixel predicted while hidden), in ``X``'s layout,
        resolution and dtype."""
        if self.backend == "cnn":
            return self._image_reconstruct(X)
        predicted = self._predicted_values(self._passes(X)[0], X)
        if self.image_format_ is None:
            return predicted.set_axis(X.index).rename(columns=self._labels(X)) if isinstance(X, pd.DataFrame) \
                else predicted
        return self.image_format_.restore_layout(self.image_format_.unflatten(predicted.to_numpy(np.float32)), like=X)

    def _predicted_values(self, passes: PassResult, X) -> pd.DataFrame:
        """The values the model predicts, in the original units: the columns that ``X`` holds as
        durations back as durations (predicted in seconds)."""
        # The likeliest named category: code 0 ("other", or never trained on) decodes to no value.
        codes = np.stack([p[:, 1:].argmax(axis=1) + 1 if p.shape[1] > 1 else np.zeros(len(p), dtype=np.int64)
                          for p in passes.category_probs], axis=1) if passes.category_probs \
            else np.zeros((len(passes.numeric), 0), dtype=np.int64)
        # Within each column's training range: beside an anomalous row the network extrapolates (a
        # negative amount), which an analyst reads as a bug; the scores use the errors, not these.
        return self._as_durations(self.encoder_.decode(self.tails_.clip(passes.numeric), codes), X)

    @staticmethod
    def _as_durations(values: pd.DataFrame, X) -> pd.DataFrame:
        """``values`` (numbers of seconds where a column is a duration) with the columns that ``X``
        holds as durations back as durations."""
        durations = {str(c): pd.to_timedelta(values[str(c)], unit="s") for c in getattr(X, "columns", ())
                     if str(c) in values.columns and pd.api.types.is_timedelta64_dtype(X[c])}
        return values.assign(**durations) if durations else values

    def _labels(self, X) -> dict[str, object]:
        """The caller's label of each of the model's columns, for what is given back as a DataFrame
        (an int or a tuple label stays one): a DataFrame's own labels, by position for a model
        fitted on an array."""
        if not isinstance(X, pd.DataFrame):
            return {}
        if self.feature_names_in_ is None and X.shape[1] == len(self.encoder_.columns_):
            return dict(zip(self.encoder_.columns_, X.columns))
        return {str(c): c for c in X.columns}

    def impute(self, X) -> pd.DataFrame:
        """``X`` with its missing (or unparseable) cells filled by the model's predictions (tables);
        a DataFrame keeps its index, its column labels and the columns the model does not read."""
        if self.backend == "cnn" or self.image_format_ is not None:
            raise TypeError("impute fills table cells; for images use reconstruct")
        frame = self._as_frame(X)[self.encoder_.columns_]
        passes, data = self._passes(frame)
        # the cells the model reads as missing: empty, and text or inf in a numeric column
        missing = pd.DataFrame(data.missing.numpy(), columns=self.encoder_.feature_names)[frame.columns]
        predicted = self._predicted_values(passes, frame).set_axis(frame.index).astype(object)
        filled = frame.astype(object).mask(missing.to_numpy(), predicted).infer_objects()
        if not isinstance(X, pd.DataFrame):
            return filled
        out, labels = X.copy(), self._labels(X)
        for name in filled.columns:
            out[labels[name]] = filled[name]
        return out

    def explain(self, X, top_k: int | None = None) -> pd.DataFrame | np.ndarray:
        """Per-feature contributions to the reconstruction evidence, largest first per row; for an
        image batch, anomaly maps.

        Images: (n, H, W) float32 at ``X``'s resolution. CNN: each pixel's smoothed inpainting
        error divided by its typical error on the training images (~1 where typical). MLP: each
        pixel's normalised cell error (mean over channels). ``top_k`` applies to tables only.

        Columns: ``row`` (position in ``X``), ``feature``, ``observed``, ``expected`` (the model's
        prediction with the cell hidden, original units: hidden with the rest of its scoring group,
        one of ``round(1 / mask_ratio)``, so it can disagree with a column hidden beside it),
        ``contribution`` (normalised error of the cell divided by the row's observed cells: the
        row's contributions sum to its raw reconstruction evidence), ``share`` (fraction of that
        sum) and ``tail_share`` (how rare the value is in its own column, the tail evidence's
        reading: the share of training values at least as far out on its side, about ``1 / (n + 1)``
        beyond the training range, ``n`` the column's observed training values; for a category, the
        share whose category is at most as frequent, ``1 / (n + 1)`` for one never seen; NaN for
        missing cells, for numbers in models saved in formats 1 and 2 and for categories in models
        saved before format 9) and ``beyond`` (the training value it lies beyond, in original units:
        its column's largest when above it, smallest when below; NaN within the range, for
        categories, and where ``tail_share`` is NaN), ``unseen`` (a category value outside those
        the model learnt: ``"unknown"``, never seen in training, or ``"other"``, outside a capped
        column's kept values (``max_categories``); None otherwise).
        """
        if top_k is not None and (not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        if self.backend == "cnn":
            return self._image_explain(X)
        frame = self._as_frame(X)
        passes, data = self._passes(frame)
        missing = data.missing.numpy()
        if self.image_format_ is not None:
            cells = self.image_format_.unflatten(self._normalised_cell_errors(passes, missing))
            return self.image_format_.to_input(cells.mean(dim=1).numpy(), like=X)
        expected = self._predicted_values(passes, frame)
        observed = np.maximum((~missing).sum(axis=1, keepdims=True), 1)
        contribution = self._normalised_cell_errors(passes, missing) / observed
        n_numeric = len(self.encoder_.numeric_)
        tail_share = self._tail_shares(data, missing)
        bounds = np.where(missing[:, :n_numeric], np.nan, self.tails_.beyond_range(data.numeric.numpy()))
        beyond = self._as_durations(pd.DataFrame(
            {c.name: _shown_bound(c, bounds[:, j], column_numbers(frame[c.name]))
             for j, c in enumerate(self.encoder_.numeric_)}, index=range(len(frame)), columns=self.encoder_.columns_,
            dtype=float), frame)
        unseen = np.full(missing.shape, None, dtype=object)
        for j, col in enumerate(self.encoder_.categorical_):
            outside = (data.categorical[:, j].numpy() == UNKNOWN_CODE) & ~missing[:, n_numeric + j]
            unseen[outside, n_numeric + j] = col.reads_as
        names = self.encoder_.feature_names
        long = pd.DataFrame({
            "row": np.repeat(np.arange(len(frame)), len(names)),
            "feature": np.tile(names, len(frame)),
            "observed": frame[names].to_numpy(dtype=object).ravel(),
            "expected": expected[names].to_numpy(dtype=object).ravel(),
            "contribution": contribution.ravel(),
            "tail_share": tail_share.ravel(),
            "beyond": beyond[names].to_numpy(dtype=object).ravel(),
            "unseen": pd.Series(unseen.ravel(), dtype=object),  # None where seen, whatever pandas infers
        })
        if labels := self._labels(X):
            long["feature"] = long["feature"].map(labels)
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


def _decoded(col, code: float) -> float:
    """A float32 code in its column's units, rounded to ten times the code's resolution there (it is
    good to a few of its steps): decoding leaves 22.9999998 for 23 and 2.9e-08 for 0, yet a column
    of values near 1e-7 keeps its digits."""
    value, above = col.decode(np.array([code, np.nextafter(np.float32(code), np.float32(np.inf))], dtype=np.float64))
    step = 10 * abs(above - value)
    if not (np.isfinite(step) and step > 0):  # at float64's end (a code that decodes past 1e308)
        return float(value) + 0.0
    return round(float(value), max(0, -int(np.floor(np.log10(step))))) + 0.0  # + 0.0: no -0.0


def _shown_bound(col, codes: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Training-range ends (``codes``, NaN for none) for people, rounded as ``training_range``
    gives them (0, not 1.6e-05), unless rounding would put one past the value said to lie beyond it."""
    ends, which = np.unique(codes, return_inverse=True)  # a column has two ends, and NaN: each decoded once
    bound = col.decode(ends.astype(np.float64))[which.ravel()]
    rounded = np.array([_decoded(col, end) if np.isfinite(end) else np.nan for end in ends])[which.ravel()]
    return np.where(np.sign(observed - rounded) == np.sign(observed - bound), rounded, bound)


def _refuse_sparse(X) -> None:
    if scipy.sparse.issparse(X):  # len() and np.asarray() of one fail with messages that do not say so
        raise TypeError(f"sparse input is not supported ({type(X).__name__} of shape {X.shape}): pass a dense array "
                        f"(X.toarray()) or a DataFrame; from a ColumnTransformer, OneHotEncoder(sparse_output=False)")


def _is_distance(name: str) -> bool:
    return name.startswith("neighbours@") or name == "nearest"


def _weighted_mean(z: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Per row, the mean of the terms ``z`` weighed by ``weights``, leaving out a row's NaN terms
    (no evidence: see ``_local_evidence``); 0, a typical training row's score, where none is left
    (``evidence`` naming only terms the row has nothing for)."""
    values = np.stack(list(z.values()))
    w = np.array([weights[name] for name in z])[:, None]
    present = ~np.isnan(values)
    total, weight = (np.where(present, values, 0.0) * w).sum(axis=0), (w * present).sum(axis=0)
    return np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)
