"""Makers of submissions and data for the evaluator's tests (not a test module).

The models here are tiny and need no training: a "colour prototype" classifier
(global average pooling, then a Dense layer that scores each class by the
distance of the image's mean colour to the class's prototype colour, in the
space the model was "trained" in). Its accuracy depends on its preprocessing
the way a real model's does: fed the wrong preprocessing it still runs and
scores something, just less.
"""

import os
import shutil
import textwrap
import zipfile

import numpy as np

# Mean colours (RGB 0-255) of the classes of the colour data set.
# Four are symmetric in red and blue, four are two red<->blue mirrored pairs: a model
# trained with 'caffe' (RGB->BGR) and fed RGB confuses the pairs and gets the rest right.
COLORS = np.array([
    [190, 50, 190], [150, 110, 150], [105, 155, 105], [60, 200, 60],
    [33, 80, 127], [127, 80, 33], [124, 45, 231], [231, 45, 124],
], dtype=np.float32)
# The classifier works on colours minus their grey level (chromaticity), so that, like a
# real network, it is hurt by a missing mean subtraction much less than by a channel swap.
CENTER = np.eye(3, dtype=np.float32) - np.float32(1 / 3)

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def to_space(rgb, mode):
    """Mean colours as the model sees them after its training preprocessing."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if mode == "caffe":
        return rgb[..., ::-1] - CAFFE_MEAN_BGR
    if mode == "rescaling":  # a Rescaling(1/255) layer inside the model
        return rgb
    if mode == "none":
        return rgb
    if mode == "tf":
        return rgb / 127.5 - 1
    raise ValueError(mode)


def color_data(per_class=24, size=96, noise=15.0, seed=0, colors=COLORS):
    """uint8 images whose mean colour is their class's colour plus a per-image shift."""
    rng = np.random.default_rng(seed)
    n_classes = len(colors)
    labels = np.repeat(np.arange(n_classes), per_class)
    shift = rng.normal(0, noise, size=(labels.size, 1, 1, 3))
    texture = rng.normal(0, 12, size=(labels.size, size, size, 3))
    images = colors[labels][:, None, None, :] + shift + texture
    order = rng.permutation(labels.size)
    return np.clip(np.round(images), 0, 255).astype(np.uint8)[order], labels[order]


def prototype_model(mode, colors=COLORS, size=96, keras=None):
    """A Keras model: nearest class chromaticity, in the space of preprocessing ``mode``.

    ``keras``: the Keras module to build it with (Keras 3 by default; ``tf_keras`` for a
    Keras 2 model).

    With ``p`` the centred prototypes, ``argmin |C f - p|`` is ``argmax 2 f.p - |p|^2``
    (``C`` is symmetric and ``C p = p``): one Dense layer.
    """
    if keras is None:
        import keras

    protos = to_space(colors, mode)
    if mode == "rescaling":
        protos = protos / 255.0
    protos = protos @ CENTER
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs) if mode == "rescaling" else inputs
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(len(colors), activation="softmax")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    scale = 0.05 / (float(np.abs(protos).max()) / 100.0)
    dense.set_weights([(2 * protos.T * scale).astype(np.float32),
                       (-(protos ** 2).sum(axis=1) * scale).astype(np.float32)])
    return model


def export_saved_model(model, folder):
    """An inference SavedModel with a ``serving_default`` signature (Keras 3 ``export``)."""
    model.export(folder, verbose=False) if _accepts_verbose(model) else model.export(folder)
    return folder


def _accepts_verbose(model):
    import inspect
    try:
        return "verbose" in inspect.signature(model.export).parameters
    except (TypeError, ValueError):
        return False


# A hand-written AN2DL 2022 model.py, the way the course template has it.
MODEL_PY_2022 = textwrap.dedent('''\
    import os
    import numpy as np
    import tensorflow as tf


    class model:
        def __init__(self, path):
            self.model = tf.saved_model.load(os.path.join(path, "SubmissionModel"))
            self.serve = self.model.signatures["serving_default"]
            self.input_name = list(self.serve.structured_input_signature[1])[0]

        def predict(self, X):
            X = tf.cast(X, tf.float32)
    {preprocess}
            out = self.serve(**{{self.input_name: X}})
            probabilities = list(out.values())[0]
            return tf.argmax(probabilities, axis=-1)
    ''')

PREPROCESS = {
    "raw": "",
    "caffe": "        X = X[..., ::-1] - tf.constant([103.939, 116.779, 123.68])\n",
    "div255": "        X = X / 255.0\n",
}


def model_py_2022(preprocess="raw", body=None):
    """The hand-written model.py with the given preprocessing line, or a whole custom body."""
    if body is not None:
        return textwrap.dedent(body)
    return MODEL_PY_2022.format(preprocess=PREPROCESS[preprocess].rstrip("\n") or "        pass")


def write_zip(path, files, saved_models=None):
    """A zip with ``files`` {name: text or bytes} and SavedModel folders {zip dir: folder}."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in files.items():
            z.writestr(name, content)
        for target, folder in (saved_models or {}).items():
            for where, _, names in os.walk(folder):
                for name in sorted(names):
                    full = os.path.join(where, name)
                    rel = os.path.relpath(full, folder).replace(os.sep, "/")
                    z.write(full, target.rstrip("/") + "/" + rel)
    return path


def copy_tree(src, dst):
    shutil.copytree(src, dst)
    return dst
