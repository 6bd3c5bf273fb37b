"""leafsub runtime, TensorFlow: the operations the runtime core (``spec.py``) runs on.

``TensorFlowOps`` fills in ``spec.Ops``'s table with TensorFlow; ``Member`` is
``spec.BaseMember`` over it and a SavedModel. Everything else (preprocessing, TTA,
ensembling) is ``spec.py``'s, re-exported here with module-level names for leafsub's
checks (``runtime.preprocess(images, spec)``, ...). It imports only the standard library,
numpy and tensorflow, all a submission can count on having on the platform.
"""

import numpy as np
import tensorflow as tf

# --- leafsub: spec import --- (model.py holds spec.py's text just above instead)
try:
    from .spec import *  # noqa: F401,F403  (leafsub.submission_template.spec)
except ImportError:  # a copy beside leafsub_spec.py: the evaluator's child, the self-check
    from leafsub_spec import *  # noqa: F401,F403
# --- end of the spec import ---


def load_saved_model(path):
    """Load a SavedModel for inference and return ``f(batch) -> np.ndarray``.

    Uses ``tf.saved_model.load`` and the ``serving_default`` signature, so it
    works under Keras 2 and Keras 3 alike and never touches optimizer state.
    """
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    # leafsub export writes one input and one output (it checks the model it is given)
    (input_name, input_spec), = signature.structured_input_signature[1].items()
    (output_name,) = signature.structured_outputs

    def call(batch):
        x = tf.cast(batch, input_spec.dtype)
        return signature(**{input_name: x})[output_name].numpy()

    call.saved_model = loaded  # keep the trackable objects alive
    return call


class TensorFlowOps(Ops):
    """spec.Ops's framework operations, in TensorFlow."""

    @staticmethod
    def as_batch(images):
        x = TensorFlowOps.as_samples(images)
        if x.shape.rank == 3:
            x = x[tf.newaxis]
        if x.shape.rank != 4:
            raise ValueError("expected images of shape [N, H, W, C], got shape %s" % (x.shape,))
        return x

    @staticmethod
    def as_samples(x):
        x = tf.convert_to_tensor(x)
        return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)

    @staticmethod
    def channels_last(x):
        return tf.transpose(x, [0, 2, 3, 1])

    @staticmethod
    def interpolate(x, size, method):
        return tf.image.resize(x, size, method=method)

    @staticmethod
    def flip(x, axis):
        return tf.reverse(x, [axis])

    @staticmethod
    def rot90(x, k):
        return tf.image.rot90(x, k=k)

    @staticmethod
    def concat(tensors):
        return tf.concat(tensors, axis=0)

    @staticmethod
    def constant(values):
        return tf.constant(values, tf.float32)

    @staticmethod
    def load(path, spec):
        return load_saved_model(path)


class Member(BaseMember):
    """One model of a submission: a SavedModel, with its preprocessing and output kind."""

    ops = TensorFlowOps


# leafsub's checks call the runtime by module-level names (runtime.preprocess(x, spec), ...).
resize, normalize, preprocess, preprocess_samples = (
    TensorFlowOps.resize, TensorFlowOps.normalize, TensorFlowOps.preprocess,
    TensorFlowOps.preprocess_samples)
geometry, tta_batch, tta_view = TensorFlowOps.geometry, TensorFlowOps.tta_batch, TensorFlowOps.tta_view
