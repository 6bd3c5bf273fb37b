"""The shared runtime module against keras' own implementations, and its pure parts."""

import numpy as np
import pytest
import tensorflow as tf

from leafsub.submission_template import runtime

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, size=(4, 12, 10, 3)).astype(np.float32)

KERAS_MODES = {
    "caffe": "resnet50",
    "tf": "mobilenet_v2",
    "torch": "densenet",
    "none": "efficientnet",
}


@pytest.mark.parametrize("mode", sorted(KERAS_MODES))
def test_modes_match_keras_preprocess_input(mode):
    app = getattr(tf.keras.applications, KERAS_MODES[mode])
    expected = app.preprocess_input(IMAGES.copy())
    ours = runtime.preprocess(IMAGES, {"mode": mode}).numpy()
    diff = float(np.max(np.abs(ours - np.asarray(expected))))
    print("mode %-6s vs keras.applications.%s.preprocess_input: max abs diff %.3g"
          % (mode, KERAS_MODES[mode], diff))
    assert diff < 1e-4


def test_rescale_and_affine():
    assert np.allclose(runtime.preprocess(IMAGES, {"mode": "rescale"}), IMAGES / 255.0)
    spec = runtime.validate_spec({"mode": "affine", "scale": [2.0, 1.0, 0.5], "offset": [1, 0, -1]})
    out = runtime.preprocess(IMAGES, spec).numpy()
    assert np.allclose(out, IMAGES * [2.0, 1.0, 0.5] + [1, 0, -1], atol=1e-4)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch", "rescale"])
def test_ops_never_mutate_numpy_input(mode):
    x = IMAGES.copy()
    runtime.preprocess(x, {"mode": mode}, size=(6, 5))
    runtime.tta_batch(x, ["hflip", "rot180", "crop_center"])
    assert np.array_equal(x, IMAGES)


def test_resize_methods_and_noop():
    for method in runtime.RESIZE_METHODS:
        out = runtime.resize(IMAGES, (6, 5), method).numpy()
        assert out.shape == (4, 6, 5, 3)
        assert np.allclose(out, tf.image.resize(IMAGES, (6, 5), method=method).numpy())
    same = runtime.resize(IMAGES, (12, 10)).numpy()
    assert np.array_equal(same, IMAGES)


def test_spec_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="'caffee' is not one of"):
        runtime.validate_spec({"mode": "caffee"})
    with pytest.raises(ValueError, match="resize_method 'linear'"):
        runtime.validate_spec({"mode": "tf", "resize_method": "linear"})
    with pytest.raises(ValueError, match="scale"):
        runtime.validate_spec({"mode": "affine"})


def test_presets_by_architecture_name():
    assert runtime.preset("ResNet50") == "caffe"
    assert runtime.preset("mobilenet_v2") == "tf"
    assert runtime.preset("EfficientNetB4") == "none"
    assert runtime.preset("ConvNeXtTiny") == "none"
    assert runtime.preset("DenseNet121") == "torch"
    assert runtime.preset("ResNet50V2") == "tf"
    with pytest.raises(ValueError, match="Unknown architecture"):
        runtime.preset("alexnet")


def test_tta_views_are_the_expected_geometry():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    assert np.array_equal(runtime.tta_view(x, "hflip"), x[:, :, ::-1])
    assert np.array_equal(runtime.tta_view(x, "vflip"), x[:, ::-1])
    assert np.array_equal(runtime.tta_view(x, "rot180"), x[:, ::-1, ::-1])
    assert np.array_equal(runtime.tta_view(x, "rot90"), np.rot90(x, 1, axes=(1, 2)))
    assert runtime.tta_view(x, "crop_tl").shape == x.shape
    stacked = runtime.tta_batch(x, ["identity", "hflip", "vflip"]).numpy()
    assert stacked.shape == (6, 4, 4, 3)
    assert np.array_equal(stacked[2:4], x[:, :, ::-1])
    with pytest.raises(ValueError, match="square"):
        runtime.tta_view(np.zeros((1, 4, 6, 3)), "rot90")
    with pytest.raises(ValueError, match="unknown TTA view 'spin'"):
        runtime.tta_view(x, "spin")


def test_merge_views_averages_per_image():
    per_view = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # 2 views x 2 images
    assert np.allclose(runtime.merge_views(per_view, 2), [[0.5, 0.5], [0.0, 1.0]])


def test_to_probabilities():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, 0.0]])
    p = runtime.to_probabilities(logits, "logits")
    assert np.allclose(p.sum(axis=1), 1.0) and np.isfinite(p).all()
    assert np.allclose(p[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    assert np.allclose(runtime.to_probabilities(np.array([[0.2]]), "probabilities"), [[0.8, 0.2]])


A = np.array([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
B = np.array([[0.1, 0.9], [0.3, 0.7], [0.6, 0.4]])
C = np.array([[0.7, 0.3], [0.9, 0.1], [0.45, 0.55]])


def test_combiners():
    assert np.allclose(runtime.combine([A, B], "mean"), (A + B) / 2)
    assert np.allclose(runtime.combine([A, B], "weighted", [3, 1]), 0.75 * A + 0.25 * B)
    geo = runtime.combine([A, B], "geometric")
    manual = np.sqrt(A * B)
    assert np.allclose(geo, manual / manual.sum(axis=1, keepdims=True))
    # Majority vote: image 0: A->0, B->1, C->0 => 0; image 1: 1,1,0 => 1; image 2: 0,0,1 => 0
    assert list(runtime.combine([A, B, C], "vote").argmax(axis=1)) == [0, 1, 0]
    # A 1-1 tie is broken by the mean probability.
    assert runtime.combine([A, B], "vote")[0].argmax() == 1  # mean p(1) = 0.65
    user = runtime.combine([A, B], lambda probs, w: probs[1])
    assert np.array_equal(user, B)


def test_combiner_errors():
    with pytest.raises(ValueError, match="need 2 non-negative weights"):
        runtime.combine([A, B], "weighted", [1])
    with pytest.raises(ValueError, match="needs weights"):
        runtime.combine([A, B], "weighted")
    with pytest.raises(ValueError, match="'median' is not one of"):
        runtime.combine([A, B], "median")
    with pytest.raises(ValueError, match="disagree on the output shape"):
        runtime.combine([A, np.zeros((3, 3))])
