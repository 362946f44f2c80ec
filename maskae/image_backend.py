"""The CNN backend's share of ``MaskedAutoencoderDetector``: fitting on image batches, anomaly
scores, anomaly maps, inpainted images and embeddings.

Kept out of ``detector.py`` so that the estimator's life cycle reads in one place while each
backend's model lives in its own file; the detector's public methods hand image work to the
``_image_*`` methods here when ``backend="cnn"``.

Fitting: images are resized to ``image_size`` and scaled per channel (``maskae.image_batch``),
the network learns to inpaint random patches (``maskae.image_training``), then every training
image is scored with complementary patch masks to learn each pixel's typical error
(``maskae.anomaly_map``). Two kinds of evidence, combined as for tables (each term's logarithm
standardised on the training images, then averaged): **reconstruction**, the image score (top 1 %
of the normalised, smoothed error map), which finds *where* an image is wrong, and **neighbours**,
the distance from the whole image to small random samples of the training images (at each of
``neighbour_sample_sizes``), which sees an image unlike any training image even when every patch
of it is locally plausible (another digit made of ordinary strokes). The score is ~0 for a typical
training image, in standard deviations above it.

Example
-------
>>> import numpy as np
>>> from maskae import MaskedAutoencoderDetector
>>> images = np.random.default_rng(0).integers(0, 256, size=(20, 16, 16), dtype=np.uint8)
>>> det = MaskedAutoencoderDetector(backend="cnn", cnn_widths=(4, 8), patch_size=4, max_steps=2,
...                                 batch_size=4, random_state=0).fit(images)
>>> det.explain(images[:2]).shape, det.reconstruct(images[:2]).dtype
((2, 16, 16), dtype('uint8'))
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from maskae.anomaly_map import anomaly_maps, image_scores, smoothing_sigma, typical_error
from maskae.cnn import MaskedPatchCNN
from maskae.image_batch import ImageFormat, is_image_batch
from maskae.image_training import ImagePasses, fit_inpainting, inpainting_passes
from maskae.patch_masking import complementary_patch_masks
from maskae.training import TrainingPlan


def neighbour_space(data: torch.Tensor) -> np.ndarray:
    """(n, pixels) each image as the network reads it, smoothed like the anomaly maps (a stroke
    or edge shifted by a pixel counts little), as one unit-length vector: the distance between two
    images compares their patterns more than their overall contrast."""
    sigma = smoothing_sigma(*data.shape[-2:])
    blurred = torch.from_numpy(gaussian_filter(data.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest"))
    return torch.nn.functional.normalize(blurred.reshape(len(data), -1), dim=1).numpy()


class ImageBackendMixin:
    """``backend="cnn"``: the methods ``MaskedAutoencoderDetector`` calls for image batches."""

    def _fit_images(self, X, rng: np.random.Generator, generator: torch.Generator, seed: int) -> np.ndarray:
        """Fit the CNN backend; returns the positions of the calibration images (held out)."""
        images = self._checked_images(X)
        kept, held_out = self._hold_out(len(images), self.calibration_fraction, rng)
        self.image_format_ = ImageFormat.fit(images[kept], self.image_size)
        data = self.image_format_.to_network(images[kept])
        train_rows, validation_rows = self._hold_out(len(data), self.validation_fraction, rng)
        validation = data[validation_rows] if len(validation_rows) else None
        data = data[train_rows]
        self.network_ = self._build_network()
        plan = TrainingPlan(
            mask_ratio=self.mask_ratio, max_steps=self.max_steps, batch_size=self.batch_size,
            learning_rate=self.learning_rate, weight_decay=self.weight_decay,
            patience=self.patience, progress=self.progress,
        )
        self.history_ = fit_inpainting(self.network_, data, plan, self._patch_sizes(), self.augment, generator, validation)
        height, width = self.image_format_.size
        self.score_masks_ = (
            complementary_patch_masks(height, width, self._patch_sizes(), self._n_groups(), self.n_mask_repeats, int(seed))
            if self.mask_ratio > 0 else np.zeros((1, height, width), dtype=bool)  # plain autoencoder: one unmasked pass
        )
        errors = inpainting_passes(self.network_, data, self.score_masks_).errors
        self.error_scale_ = typical_error(errors).astype(np.float32)
        local = {"reconstruction": image_scores(anomaly_maps(errors, self.error_scale_))}
        self._draw_neighbours(local, neighbour_space(data), rng)
        return held_out

    def _checked_images(self, X) -> np.ndarray:
        if not is_image_batch(X):
            raise ValueError(
                f"backend={self.backend!r} needs an image batch (N x H x W x C uint8, N x C x H x W float or "
                f"N x H x W), got {type(X).__name__} of shape {getattr(X, 'shape', None)}"
            )
        return X

    def _image_passes(self, X) -> tuple[ImagePasses, torch.Tensor]:
        """The complementary inpainting passes over ``X``, and ``X`` as the network reads it."""
        self._check_fitted()
        data = self.image_format_.to_network(self._checked_images(X))
        return inpainting_passes(self.network_, data, self.score_masks_), data

    def _image_evidence(self, X) -> dict[str, np.ndarray]:
        """The evidence terms before standardisation: ``reconstruction`` (the image score of the
        anomaly map) and ``neighbours@<size>`` (whole-image distance to the training images)."""
        passes, data = self._image_passes(X)
        return {"reconstruction": image_scores(anomaly_maps(passes.errors, self.error_scale_)),
                **self.neighbours_.distances(neighbour_space(data))}

    def _image_explain(self, X) -> np.ndarray:
        maps = anomaly_maps(self._image_passes(X)[0].errors, self.error_scale_)
        return self.image_format_.to_input(maps, like=X)

    def _image_reconstruct(self, X) -> np.ndarray:
        return self.image_format_.from_network(self._image_passes(X)[0].image, like=X)

    def _image_transform(self, X) -> np.ndarray:
        return self._image_passes(X)[0].latent

    def _patch_sizes(self) -> tuple[int, ...]:
        return (self.patch_size,) if isinstance(self.patch_size, int) else tuple(self.patch_size)

    def _build_image_network(self) -> MaskedPatchCNN:
        return MaskedPatchCNN(self.image_format_.channels, tuple(self.cnn_widths))
