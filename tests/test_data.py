"""Tests of keras_mergan.data: built-in digits, npz files, image folders, errors."""

from pathlib import Path

import numpy as np
import pytest
from helpers import make_image_folder, save_image, write_svhn_files
from PIL import Image

from keras_mergan.data import (
    DatasetError,
    ImageFiles,
    folders,
    load_dataset,
    resolve_categories,
)
from keras_mergan.data.resize import resize_batch
from keras_mergan.data.tasks import TaskStream


def test_builtin_digits(digits):
    ds = digits
    assert ds.name == "digits"
    assert ds.x_train.shape == (6000, 32, 32, 1)
    assert ds.x_test.shape == (1000, 32, 32, 1)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    assert ds.image_shape == (32, 32, 1) and ds.channels == 1
    assert ds.num_classes == 10
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert ds.x_train.min() == -1.0 and ds.x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_train), [600] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [100] * 10)
    # MNIST digits: dark background, bright stroke in the middle
    assert ds.x_train[:, :2].mean() < -0.99
    assert ds.x_train[:, 12:20, 12:20].mean() > -0.5


def test_builtin_digits_options():
    ds = load_dataset("digits", image_size=16, channels=3)
    assert ds.x_train.shape == (6000, 16, 16, 3)
    np.testing.assert_array_equal(ds.x_train[..., 0], ds.x_train[..., 2])
    native = load_dataset("digits", image_size=28)
    raw = np.load(Path(__file__).parents[1] / "keras_mergan/datasets/digits.npz")
    np.testing.assert_allclose(
        native.x_train[..., 0], raw["x_train"] / 127.5 - 1.0, atol=1e-6
    )


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    y_train = np.arange(12) % 3
    y_test = np.arange(4) % 3
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    ds = load_dataset(str(path), image_size=28)
    assert ds.name == "tiny"
    assert ds.class_names == ("0", "1", "2")
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.y_test, y_test)
    np.testing.assert_allclose(ds.x_train[..., 0], x_train / 127.5 - 1.0, atol=1e-6)

    resized = load_dataset(path, image_size=32)
    assert resized.x_train.shape == (12, 32, 32, 1)
    # bilinear resize as Pillow does it (up to uint8 rounding)
    expected = np.asarray(
        Image.fromarray(x_train[0]).resize((32, 32), Image.Resampling.BILINEAR),
        np.float32,
    )
    got = (resized.x_train[0, ..., 0] + 1.0) * 127.5
    assert np.abs(got - expected).max() <= 1.0


def test_npz_rgb_non_square_and_class_names(tmp_path):
    x = np.zeros((2, 20, 30, 3), np.uint8)
    x[:, :, 5:25] = 255  # the centre 20x20 square is white, the borders black
    path = tmp_path / "rgb.npz"
    np.savez(
        path,
        x_train=x,
        y_train=[0, 1],
        x_test=x[:1],
        y_test=[1],
        class_names=np.array(["cat", "dog"]),
    )
    ds = load_dataset(path, image_size=10)
    assert ds.image_shape == (10, 10, 3)
    assert ds.class_names == ("cat", "dog")
    np.testing.assert_allclose(ds.x_train, 1.0)  # the crop removed the borders
    gray = load_dataset(path, image_size=10, channels=1)
    assert gray.image_shape == (10, 10, 1)
    np.testing.assert_allclose(gray.x_train, 1.0, atol=1e-5)


def test_image_folder_rgb(tmp_path):
    root = make_image_folder(tmp_path / "scenes", rgb=True)
    (root / "bedroom" / "notes.txt").write_text("not an image, ignored")
    ds = load_dataset(str(root), image_size=16, test_fraction=0.4, seed=3)
    assert ds.name == "scenes"
    assert ds.class_names == ("bedroom", "kitchen")
    assert ds.image_shape == (16, 16, 3)
    # 40% of 5 = 2, of 3 = 1 held out per class
    np.testing.assert_array_equal(np.bincount(ds.y_train), [3, 2])
    np.testing.assert_array_equal(np.bincount(ds.y_test), [2, 1])
    assert ds.x_train.dtype == np.float32
    assert -1.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    again = load_dataset(str(root), image_size=16, test_fraction=0.4, seed=3)
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    other = load_dataset(str(root), image_size=16, test_fraction=0.4, seed=4)
    assert not np.array_equal(ds.x_test, other.x_test)


def test_streamed_folder_decodes_what_is_indexed_as_loading_does(tmp_path):
    root = make_image_folder(tmp_path / "scenes", rgb=True)
    loaded = load_dataset(root, image_size=16, test_fraction=0.4, stream=False)
    streamed = load_dataset(root, image_size=16, test_fraction=0.4, stream=True)
    files = streamed.x_train
    assert isinstance(files, ImageFiles) and isinstance(loaded.x_train, np.ndarray)
    assert files.shape == loaded.x_train.shape and len(files) == 5
    np.testing.assert_array_equal(np.asarray(files), loaded.x_train)
    np.testing.assert_array_equal(streamed.x_test[:], loaded.x_test)
    for key in (3, slice(1, 4), [4, 0, 4], np.arange(5) % 2 == 0):
        np.testing.assert_array_equal(files[key], loaded.x_train[key])
    assert files[[]].shape == (0, 16, 16, 3)
    # Batches of the training stream, decoded ahead by two threads.
    arrays = TaskStream(loaded.x_train, loaded.y_train, [[0], [1]], 3, 4, 2)
    ahead = TaskStream(files, streamed.y_train, [[0], [1]], 3, 4, 2, workers=2)
    for step in (0, 4):
        np.testing.assert_array_equal(ahead[step][0], arrays[step][0])


def test_streamed_fingerprint_follows_the_files_and_large_folders_stream(
    tmp_path, monkeypatch
):
    root = make_image_folder(tmp_path / "scenes", rgb=True)
    fingerprint = load_dataset(root, stream=True).fingerprint()
    assert load_dataset(root, stream=True).fingerprint() == fingerprint
    save_image(root / "kitchen" / "img0.png", np.zeros((9, 9, 3), np.uint8))
    assert load_dataset(root, stream=True).fingerprint() != fingerprint
    assert isinstance(load_dataset(root).x_train, np.ndarray)  # 8 images
    monkeypatch.setattr(folders, "STREAM_ABOVE", 7)
    assert isinstance(load_dataset(root).x_train, ImageFiles)


def test_whole_datasets_join_as_categories(digits, tmp_path):
    root = make_image_folder(tmp_path / "scenes", rgb=True)
    scenes = load_dataset(root, test_fraction=0.4)
    joined = load_dataset(f"digits+{root}", test_fraction=0.4)
    assert joined.name == "digits+scenes"
    assert joined.class_names == ("digits", "scenes")
    assert joined.image_shape == (32, 32, 3)  # grayscale digits turned RGB
    np.testing.assert_array_equal(np.bincount(joined.y_train), [6000, 5])
    np.testing.assert_array_equal(np.bincount(joined.y_test), [1000, 3])
    np.testing.assert_array_equal(joined.x_train[joined.y_train == 1], scenes.x_train)
    first_digit = joined.x_train[0]
    np.testing.assert_array_equal(first_digit[..., 2], digits.x_train[0][..., 0])
    gray = load_dataset(["digits", root], channels=1)
    assert gray.channels == 1 and gray.num_classes == 2
    with pytest.raises(DatasetError, match="its own name"):
        load_dataset("digits+digits")
    with pytest.raises(DatasetError, match="one folder"):
        load_dataset(["digits", root], stream=True)


def test_image_folder_grayscale_default_and_forced(tmp_path):
    root = make_image_folder(tmp_path / "gray", rgb=False)
    ds = load_dataset(root, image_size=8, test_fraction=0.0)
    assert ds.channels == 1
    assert len(ds.x_test) == 0 and ds.x_test.shape == (0, 8, 8, 1)
    assert load_dataset(root, image_size=8, channels=3).channels == 3
    # one RGB image makes the default RGB
    save_image(root / "kitchen" / "color.png", np.zeros((10, 10, 3), np.uint8))
    assert load_dataset(root, image_size=8).channels == 3


def test_image_folder_center_crop(tmp_path):
    # wide image: white centre square, red left and blue right borders
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :10] = (255, 0, 0)
    wide[:, 10:30] = 255
    wide[:, 30:] = (0, 0, 255)
    # tall image: same on the vertical axis
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[:10] = (255, 0, 0)
    tall[10:30] = 255
    tall[30:] = (0, 0, 255)
    save_image(tmp_path / "crop" / "a" / "wide.png", wide)
    save_image(tmp_path / "crop" / "b" / "tall.png", tall)
    ds = load_dataset(tmp_path / "crop", image_size=8, test_fraction=0.0)
    np.testing.assert_allclose(ds.x_train, 1.0)  # only the white square remains


def test_resolve_categories(digits, tmp_path):
    assert resolve_categories(digits, ["3", 7, np.int64(0)]) == [3, 7, 0]
    root = make_image_folder(tmp_path / "scenes", rgb=False)
    ds = load_dataset(root, image_size=8)
    assert resolve_categories(ds, ["kitchen", "BEDROOM"]) == [1, 0]
    assert resolve_categories(ds, ["1", 0]) == [1, 0]
    with pytest.raises(DatasetError, match=r"unknown category 'garage'.*'bedroom'"):
        resolve_categories(ds, ["garage"])
    with pytest.raises(DatasetError, match="out of range"):
        resolve_categories(ds, [2])
    with pytest.raises(DatasetError, match="is listed twice"):
        resolve_categories(digits, ["3", 3])


# ------------------------------------------------------------------ errors


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*nowhere"):
        load_dataset(str(tmp_path / "nowhere"))


def test_unknown_source_string():
    with pytest.raises(DatasetError, match=r"unknown dataset 'svhm'.*'digits'"):
        load_dataset("svhm")


def test_corrupt_image_names_the_file(tmp_path):
    root = make_image_folder(tmp_path / "scenes", rgb=True)
    bad = root / "kitchen" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DatasetError, match="broken.png"):
        load_dataset(root, image_size=8)


def test_truncated_image_names_the_file(tmp_path):
    root = make_image_folder(tmp_path / "scenes", rgb=True)
    good = (root / "kitchen" / "img0.png").read_bytes()
    (root / "kitchen" / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="cut.png"):
        load_dataset(root, image_size=8)


def test_empty_category(tmp_path):
    root = make_image_folder(tmp_path / "scenes", rgb=True)
    (root / "garage").mkdir()
    (root / "garage" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="garage.*empty"):
        load_dataset(root)


def test_folder_without_categories(tmp_path):
    root = tmp_path / "flat"
    save_image(root / "img.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match="no category subfolders"):
        load_dataset(root)


def test_npz_missing_keys(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 8, 8), np.uint8), y_train=[0, 1])
    with pytest.raises(DatasetError, match=r"partial.npz.*x_test, y_test"):
        load_dataset(path)


def test_npz_label_count_mismatch(tmp_path):
    path = tmp_path / "mismatch.npz"
    x = np.zeros((3, 8, 8), np.uint8)
    np.savez(path, x_train=x, y_train=[0, 1], x_test=x, y_test=[0, 1, 1])
    with pytest.raises(DatasetError, match="3 images but 2 labels"):
        load_dataset(path)


def test_npz_not_a_zip(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"definitely not a zip archive")
    with pytest.raises(DatasetError, match="garbage.npz"):
        load_dataset(path)


def test_npz_float_images_rejected(tmp_path):
    path = tmp_path / "floats.npz"
    x = np.zeros((2, 8, 8), np.float32)
    np.savez(path, x_train=x, y_train=[0, 1], x_test=x, y_test=[0, 1])
    with pytest.raises(DatasetError, match="uint8"):
        load_dataset(path)


def test_bad_arguments():
    with pytest.raises(DatasetError, match="channels"):
        load_dataset("digits", channels=2)
    with pytest.raises(DatasetError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.0)
    with pytest.raises(DatasetError, match="image_size"):
        load_dataset("digits", image_size=0)
    assert issubclass(DatasetError, ValueError)


def test_svhn_mat_files_in_the_official_layout(tmp_path):
    train = write_svhn_files(tmp_path)
    for source in (train, tmp_path):
        ds = load_dataset(source, image_size=32)
        assert ds.name == "svhn" and ds.x_train.shape == (6, 32, 32, 3)
        assert ds.x_test.shape == (4, 32, 32, 3)
        assert ds.y_train.tolist() == [1, 2, 3, 4, 5, 6]
        assert ds.class_names == tuple(str(i) for i in range(10))
        assert ds.x_train.min() >= -1.0 and ds.x_train.max() <= 1.0
    from scipy.io import loadmat

    first = loadmat(train)["X"][:, :, :, 0].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(ds.x_train[0], first, atol=1e-6)
    ten = write_svhn_files(tmp_path, n_train=10)
    assert load_dataset(ten).y_train[-1] == 0


def test_svhn_without_its_test_file_or_corrupt_is_a_clear_error(tmp_path):
    train = write_svhn_files(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DatasetError, match="test_32x32.mat"):
        load_dataset(train)
    train.write_bytes(b"not a matlab file")
    (tmp_path / "test_32x32.mat").write_bytes(b"")
    with pytest.raises(DatasetError, match="MATLAB"):
        load_dataset(train)


def _triangle_filter(in_size: int, out_size: int) -> np.ndarray:
    """Bilinear resampling as Pillow defines it, as an [out, in] matrix (float64).

    Triangle filter widened by the scale factor when shrinking (antialias),
    sample centres at (i + 0.5) * in / out, weights normalised per output.
    """
    scale = in_size / out_size
    support = max(scale, 1.0)
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        j = np.arange(lo, hi)
        k = np.maximum(0.0, 1.0 - np.abs((j - center + 0.5) / support))
        weights[i, lo:hi] = k / k.sum()
    return weights


@pytest.mark.parametrize(
    "shape, size",
    [((28, 28, 1), 32), ((64, 48, 3), 32), ((100, 100, 3), 37), ((20, 30, 1), 64)],
)
def test_array_resize_is_bilinear_within_1e4_of_255(shape, size):
    """Pillow's float resize equals the separable triangle filter it defines.

    Up to float32 rounding: at most 1e-4 on the 0..255 scale (4.6e-5
    measured when shrinking, 0 when enlarging MNIST's 28x28 to 32x32).
    """
    x = np.random.default_rng(0).integers(0, 256, (5, *shape), np.uint8)
    side = min(shape[:2])
    top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
    square = x[:, top : top + side, left : left + side].astype(np.float64)
    w = _triangle_filter(side, size)
    expected = np.einsum("oh,nhwc,pw->nopc", w, square, w)
    np.testing.assert_allclose(resize_batch(x, size), expected, rtol=0, atol=1e-4)
