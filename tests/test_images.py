"""Images: patch masks, the CNN and MLP backends on image batches, ingest with quarantine, figures."""

import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from maskae import MaskedAutoencoderDetector
from maskae.patch_masking import complementary_patch_masks, random_patch_mask
from pipeline.image_figures import anomaly_grid
from pipeline.image_ingest import read_image_folder, read_mvtec_like

SIZE = 32
CNN = dict(backend="cnn", patch_size=4, mask_ratio=0.5, cnn_widths=(8, 16, 32), max_steps=150, batch_size=16,
           learning_rate=3e-3, random_state=0)


def textures(n: int, seed: int) -> np.ndarray:
    """(n, SIZE, SIZE, 1) uint8 diagonal stripes (period 8 pixels) at random phases, with noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    stripes = 128 + 60 * np.sin(2 * np.pi * (rows + cols)[None] / 8 + phase) + rng.normal(0, 8, size=(n, SIZE, SIZE))
    return np.clip(stripes, 0, 255).astype(np.uint8)[..., None]


def with_square(images: np.ndarray, seed: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A bright 6 x 6 square pasted at a random place in each image; returns the corners too."""
    rng = np.random.default_rng(seed)
    out, corners = images.copy(), []
    for image in out:
        top, left = rng.integers(4, SIZE - 10, size=2)
        image[top:top + 6, left:left + 6] = 255
        corners.append((int(top), int(left)))
    return out, corners


@pytest.fixture(scope="module")
def cnn():
    return MaskedAutoencoderDetector(**CNN).fit(textures(96, seed=0))


def test_complementary_patch_masks_hide_every_pixel_once_per_scale_and_repeat():
    masks = complementary_patch_masks(10, 13, patch_sizes=(4, 3), n_groups=3, n_repeats=2, seed=0)
    assert masks.shape == (2 * 3 * 2, 10, 13)
    assert (masks.sum(axis=0) == 4).all()  # 2 scales x 2 repeats
    for first in range(0, len(masks), 3):  # each partition's 3 passes are disjoint and cover the image
        assert (masks[first:first + 3].sum(axis=0) == 1).all()
    # every pass hides whole patches of its scale: 4 x 4 blocks (3 x 3 ones for the second scale)
    blocks = masks[0][:8, :12].reshape(2, 4, 3, 4)
    assert (blocks.all(axis=(1, 3)) | ~blocks.any(axis=(1, 3))).all()


def test_random_patch_mask_hides_whole_patches_and_at_least_one():
    import torch

    hidden = random_patch_mask(50, 12, 12, patch_size=4, ratio=0.01, generator=torch.Generator().manual_seed(0))
    assert hidden.shape == (50, 1, 12, 12)
    assert (hidden.flatten(1).sum(dim=1) >= 16).all()
    blocks = hidden[:, 0].reshape(50, 3, 4, 3, 4)
    assert (blocks.all(dim=2).all(dim=3) | ~blocks.any(dim=2).any(dim=3)).all()


def test_a_pasted_square_scores_higher_and_the_map_peaks_inside_it(cnn):
    clean = textures(20, seed=1)
    defective, corners = with_square(textures(20, seed=2), seed=3)
    clean_scores, defect_scores = cnn.anomaly_score(clean), cnn.anomaly_score(defective)
    assert defect_scores.min() > clean_scores.max()
    maps = cnn.explain(defective)
    assert maps.shape == (20, SIZE, SIZE)
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
    inside = [top - 1 <= r <= top + 6 and left - 1 <= c <= left + 6 for (r, c), (top, left) in zip(peaks, corners)]
    assert np.mean(inside) >= 0.9


def test_an_image_unlike_every_training_image_has_high_neighbour_evidence(cnn):
    rows, cols = np.mgrid[:SIZE, :SIZE]
    mirrored = np.clip(128 + 60 * np.sin(2 * np.pi * (rows - cols) / 8), 0, 255).astype(np.uint8)[None, ..., None]
    terms = cnn.evidence_scores(np.concatenate([textures(20, seed=5), mirrored]))
    assert list(terms.columns) == ["reconstruction", "neighbours@16", "neighbours@64", "neighbours@256"]
    neighbours = terms.filter(like="neighbours@")
    assert (neighbours.iloc[-1] > neighbours.iloc[:-1].max()).all()
    np.testing.assert_allclose(terms.mean(axis=1), cnn.anomaly_score(np.concatenate([textures(20, seed=5), mirrored])),
                               rtol=1e-5, atol=1e-6)


def test_cnn_evidence_must_be_one_it_has():
    with pytest.raises(ValueError, match="evidence"):
        MaskedAutoencoderDetector(**{**CNN, "evidence": ("tails",)}).fit(textures(8, seed=0))


def test_maps_and_reconstructions_come_back_at_the_input_size_and_layout(cnn):
    big = np.repeat(np.repeat(textures(3, seed=4), 2, axis=1), 2, axis=2)  # 64 x 64: resized to 32 inside
    assert cnn.explain(big).shape == (3, 64, 64)
    rebuilt = cnn.reconstruct(big)
    assert rebuilt.shape == big.shape and rebuilt.dtype == np.uint8
    as_float = textures(3, seed=4).transpose(0, 3, 1, 2).astype(np.float32)  # N x C x H x W float
    assert cnn.reconstruct(as_float).shape == as_float.shape and cnn.explain(as_float).shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(cnn.anomaly_score(as_float), cnn.anomaly_score(textures(3, seed=4)), rtol=1e-5)
    assert cnn.transform(big).shape == (3, CNN["cnn_widths"][-1])
    with pytest.raises(ValueError, match="1-channel"):
        cnn.anomaly_score(np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8))


def test_cnn_save_load_round_trip(cnn, tmp_path):
    images = textures(5, seed=5)
    cnn.save(tmp_path / "model")
    again = MaskedAutoencoderDetector.load(tmp_path / "model")
    np.testing.assert_array_equal(again.anomaly_score(images), cnn.anomaly_score(images))
    np.testing.assert_array_equal(again.explain(images), cnn.explain(images))
    assert again.get_params() == cnn.get_params()
    assert not list((tmp_path / "model").glob("*.pkl"))


def test_same_random_state_gives_same_cnn_and_plain_autoencoder_ablation_runs():
    images = textures(12, seed=6)
    quick = {**CNN, "max_steps": 5}
    a = MaskedAutoencoderDetector(**quick).fit(images).anomaly_score(images)
    b = MaskedAutoencoderDetector(**quick).fit(images).anomaly_score(images)
    np.testing.assert_array_equal(a, b)
    plain = MaskedAutoencoderDetector(**{**quick, "mask_ratio": 0.0}).fit(images)
    assert plain.score_masks_.shape == (1, SIZE, SIZE) and not plain.score_masks_.any()
    assert np.isfinite(plain.anomaly_score(images)).all()


def test_mlp_backend_on_flattened_images(tmp_path):
    train = textures(60, seed=7)[..., 0]  # N x H x W grayscale
    det = MaskedAutoencoderDetector(max_steps=200, hidden_size=64, latent_size=16, image_size=16, random_state=0).fit(train)
    assert det.n_features_in_ == 16 * 16
    defective, _ = with_square(textures(10, seed=8)[..., 0], seed=9)
    assert np.median(det.anomaly_score(defective)) > np.median(det.anomaly_score(textures(10, seed=10)[..., 0]))
    assert det.explain(defective).shape == (10, SIZE, SIZE)
    assert det.reconstruct(defective).shape == defective.shape
    det.save(tmp_path / "mlp")
    np.testing.assert_array_equal(MaskedAutoencoderDetector.load(tmp_path / "mlp").anomaly_score(defective),
                                  det.anomaly_score(defective))


def test_cnn_needs_an_image_batch():
    with pytest.raises(ValueError, match="cnn"):
        MaskedAutoencoderDetector(backend="cnn").fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="augment"):
        MaskedAutoencoderDetector(backend="cnn", augment="rotate").fit(textures(4, seed=0))


def test_a_batch_that_cannot_be_read_as_the_training_images_were_is_named(cnn):
    from maskae.image_batch import ImageScaleWarning

    images = textures(4, seed=3).astype(np.float32)
    images[1, 5, 5, 0], images[3] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"image\(s\) at position \[1, 3\] of the batch hold NaN or infinite"):
        cnn.anomaly_score(images)  # such an image once scored exactly 0: a typical good image
    with pytest.raises(ValueError, match=r"add a batch axis \(image\[None\]\)"):
        cnn.anomaly_score(textures(1, seed=3)[0])  # (32, 32, 1) once read as 32 images of 32 x 1 pixels
    with pytest.warns(ImageScaleWarning, match="scaled to 0-1 .* the training images' to 0-255"):
        cnn.anomaly_score(textures(2, seed=3) / np.float32(255))  # torchvision's ToTensor scaling
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnn.anomaly_score(textures(2, seed=3).astype(np.float32))  # floats in the training units: no warning


def _write_png(path, seed: int, size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def test_corrupt_truncated_and_foreign_files_are_quarantined_with_a_reason(tmp_path):
    _write_png(tmp_path / "a" / "ok1.png", 0)
    _write_png(tmp_path / "b" / "ok2.png", 1)
    _write_png(tmp_path / "b" / "cut.png", 2)
    data = (tmp_path / "b" / "cut.png").read_bytes()
    (tmp_path / "b" / "cut.png").write_bytes(data[: len(data) // 2])  # truncated mid-stream
    (tmp_path / "b" / "fake.jpg").write_text("not a jpeg at all")
    (tmp_path / "notes.txt").write_text("hello")
    _write_png(tmp_path / "b" / "odd_size.png", 3, size=24)
    folder = read_image_folder(tmp_path)
    assert folder.paths == ["a/ok1.png", "b/ok2.png"] and folder.images.shape == (2, 20, 20, 3)
    assert folder.kinds == ["a", "b"]
    reasons = dict(zip(folder.quarantined["path"], folder.quarantined["quarantine_reason"]))
    assert set(reasons) == {"b/cut.png", "b/fake.jpg", "notes.txt", "b/odd_size.png"}
    assert "unreadable" in reasons["b/cut.png"] and "unreadable" in reasons["b/fake.jpg"]
    assert "not an image" in reasons["notes.txt"] and "size" in reasons["b/odd_size.png"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert read_image_folder(tmp_path, size=8).images.shape == (3, 8, 8, 3)  # resizing admits odd_size.png
    gray = read_image_folder(tmp_path / "a", mode="L")  # a gray model's screening: Pillow's luma, as it trained
    with Image.open(tmp_path / "a" / "ok1.png") as image:
        assert np.array_equal(gray.images[0, ..., 0], np.asarray(image.convert("L")))
    assert gray.images.shape == (1, 20, 20, 1)


def test_tiff_webp_rotated_jpegs_linked_folders_and_broken_links(tmp_path):
    from pipeline.image_screen import screen_images

    folder = tmp_path / "line"
    _write_png(tmp_path / "elsewhere" / "linked.png", 0)
    (folder / "cam").mkdir(parents=True)
    pixels = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "cam" / "scan.tif")
    Image.fromarray(pixels).save(folder / "cam" / "scan.webp", lossless=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; viewers show the image rotated
    Image.fromarray(pixels).save(folder / "cam" / "turned.jpg", exif=exif.tobytes(), quality=95)
    (folder / "shared").symlink_to(tmp_path / "elsewhere")  # a linked folder is read as the others are
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "loop").symlink_to(folder)  # links to folders of the tree are not walked again
    (folder / "aa").symlink_to(folder / "cam")  # an alias listed before the folder: its images keep their kind
    read = read_image_folder(folder, size=16)
    assert read.paths == ["cam/scan.tif", "cam/scan.webp", "cam/turned.jpg", "shared/linked.png"]
    assert dict(zip(read.quarantined["path"], read.quarantined["quarantine_reason"])) == {
        "gone.png": f"a link to {str(tmp_path / 'nowhere.png')!r}, which does not exist"}
    assert np.array_equal(read.images[0], read.images[1])  # TIFF and lossless WebP decode alike
    from flows.screening import _on_disk

    assert _on_disk(folder)[1] == sum(p.stat().st_size for p in (folder / "cam").iterdir()) + (
        tmp_path / "elsewhere" / "linked.png").stat().st_size  # the link to nothing counts no bytes
    with Image.open(folder / "cam" / "turned.jpg") as turned:
        assert turned.size == (30, 20)  # as stored; turned, 20 x 30, unlike the other two
        assert read_image_folder(folder / "cam").quarantined["path"].tolist() == ["turned.jpg"]
    with pytest.raises(ValueError, match="is inside the image folder"):
        screen_images(folder, "any-model", folder / "results")  # its pictures would be screened next time


def test_16_bit_gray_images_keep_their_contrast(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    (tmp_path / "deep").mkdir()
    Image.fromarray(ramp).save(tmp_path / "deep" / "ramp.png")  # a 16-bit PNG
    read = read_image_folder(tmp_path / "deep")
    np.testing.assert_array_equal(read.images[0, ..., 0], (ramp >> 8).astype(np.uint8))  # not clipped at 255


def test_float_gray_images_are_read_on_their_own_scale(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 16), (16, 1)).round()
    (tmp_path / "floats").mkdir()
    for name, values in (("unit.tiff", ramp / 255), ("bytes.tiff", ramp), ("nan.tiff", np.where(ramp > 0, ramp, np.nan))):
        Image.fromarray(values.astype(np.float32)).save(tmp_path / "floats" / name)  # 32-bit float TIFFs
    read = read_image_folder(tmp_path / "floats")
    assert read.paths == ["bytes.tiff", "unit.tiff"]  # 0-1 is not read as black
    for image in read.images:
        np.testing.assert_array_equal(image[..., 0], ramp.astype(np.uint8))
    assert "NaN or infinite pixel" in read.quarantined.set_index("path").loc["nan.tiff", "quarantine_reason"]


def test_mvtec_layout_labels_and_empty_folder(tmp_path):
    _write_png(tmp_path / "train" / "good" / "000.png", 0)
    _write_png(tmp_path / "test" / "good" / "000.png", 1)
    _write_png(tmp_path / "test" / "crack" / "000.png", 2)
    train, test = read_mvtec_like(tmp_path)
    assert len(train.images) == 1 and test.kinds == ["crack", "good"] and test.labels.tolist() == [1, 0]
    assert train.labels.tolist() == [0]
    _write_png(tmp_path / "test" / "Good" / "001.png", 3)  # a capitalised folder of good images is good
    assert dict(zip(read_mvtec_like(tmp_path)[1].kinds, read_mvtec_like(tmp_path)[1].labels)) == {
        "Good": 0, "crack": 1, "good": 0}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        read_image_folder(tmp_path / "empty")
    (tmp_path / "unread").mkdir()
    (tmp_path / "unread" / "a.png").write_bytes(b"")  # copied as nothing
    with pytest.raises(ValueError, match=r"no readable images \(1 file\(s\) quarantined, e.g. a.png: an empty file "
                                         r"\(0 bytes\): copy it again; expected"):
        read_image_folder(tmp_path / "unread")
    with pytest.raises(FileNotFoundError, match="no such folder .*bottle"):
        read_mvtec_like(tmp_path / "bottle")  # a path from another working directory
    with pytest.raises(FileNotFoundError, match="not an MVTec-like root: it has no train/ folder"):
        read_mvtec_like(tmp_path / "empty")


def test_anomaly_grid_is_a_png_written_atomically(cnn, tmp_path):
    images, _ = with_square(textures(6, seed=11), seed=12)
    path = anomaly_grid(tmp_path / "figs" / "top.png", images, cnn.reconstruct(images), cnn.explain(images),
                        cnn.anomaly_score(images), names=[f"img{i}" for i in range(6)], top_k=3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["top.png"]
