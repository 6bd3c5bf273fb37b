"""leafsub: from trained Keras models to a verified CodaLab submission zip.

The Python API mirrors the CLI and returns result objects:

    leafsub.export(model, "runs/resnet", preprocess="caffe", class_names=[...])
    leafsub.build(["runs/resnet", "runs/effnet"], tta=["identity", "hflip"], output="submission.zip")
    leafsub.evaluate("submission.zip", data="test.npz")

TensorFlow is imported only when a function that needs it runs, so that
``import leafsub`` and ``leafsub --help`` stay fast.
"""

__version__ = "0.1.0"

__all__ = ["export", "export_forecaster", "build", "evaluate", "compare", "__version__"]


def export_forecaster(*args, **kwargs):
    """Export a Keras forecaster with its input window and scaling; see
    :func:`leafsub.exporter.forecast.export_forecaster`."""
    from .exporter.forecast import export_forecaster as _export
    return _export(*args, **kwargs)


def export(*args, **kwargs):
    """Export a trained model; see :func:`leafsub.exporter.export.export` (Keras) and
    :func:`leafsub.exporter.export_torch.export_torch` (a ``torch.nn.Module``)."""
    from .exporter.export_torch import export_torch, is_torch_module
    if args and is_torch_module(args[0]) or is_torch_module(kwargs.get("model")):
        if "model" in kwargs:
            kwargs["module"] = kwargs.pop("model")
        return export_torch(*args, **kwargs)
    from .exporter.export import export as _export
    return _export(*args, **kwargs)


def build(*args, **kwargs):
    """Build a submission zip; see :func:`leafsub.builder.build.build`."""
    from .builder.build import build as _build
    return _build(*args, **kwargs)


def evaluate(*args, **kwargs):
    """Replay the hidden-test protocol; see :func:`leafsub.evaluator.evaluate.evaluate`."""
    from .evaluator.evaluate import evaluate as _evaluate
    return _evaluate(*args, **kwargs)


def compare(*args, **kwargs):
    """Compare two submissions; see :func:`leafsub.evaluator.compare.compare`."""
    from .evaluator.compare import compare as _compare
    return _compare(*args, **kwargs)
