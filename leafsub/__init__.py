"""leafsub: from trained Keras or PyTorch models to a verified CodaLab submission zip.

The Python API mirrors the CLI and returns result objects, which a notebook shows as
their report (verdict, metrics, failures, images):

    leafsub.export(model, "runs/resnet", preprocess="caffe", class_names=[...])
    leafsub.build(["runs/resnet", "runs/effnet"], tta=["identity", "hflip"], output="submission.zip")
    leafsub.evaluate("submission.zip", data="test.npz")
    leafsub.compare("old.zip", "new.zip", data="test.npz")

Neither TensorFlow nor PyTorch is imported by ``import leafsub``: each function imports
what it needs when it runs (and the evaluator's parent process imports neither), so
``import leafsub`` and ``leafsub --help`` stay fast, and a PyTorch user needs no
TensorFlow (``pip install "leafsub[torch]"``; Keras users: ``leafsub[tensorflow]``).
"""

__version__ = "0.1.0"

__all__ = ["export", "export_forecaster", "build", "evaluate", "compare", "__version__"]


def export_forecaster(*args, **kwargs):
    """Export a Keras forecaster with its input window and scaling; see
    :func:`leafsub.exporter.forecast.export_forecaster`."""
    from .exporter.forecast import export_forecaster as _export
    return _export(*args, **kwargs)

# Defaults shared with exporter/export.py (DEFAULT_PROBE_COUNT, DEFAULT_TOLERANCE), spelled
# here so that the signature shows them without importing the exporter.
_PROBE_COUNT = 8
_TOLERANCE = 1e-4


def export(model, run_dir, preprocess=None, class_names=None, probe=None, preprocess_fn=None,
           output=None, name=None, arch=None, input_size=None, layout=None,
           probe_count=_PROBE_COUNT, tolerance=_TOLERANCE, force=False):
    """Export a trained model to ``run_dir``: an inference-only model, its card and goldens.

    Args:
      model: a Keras model (Keras 3 or tf_keras), a path to a SavedModel folder, a
        ``.keras`` or an ``.h5`` file (needs ``leafsub[tensorflow]``); or a
        ``torch.nn.Module`` (needs ``leafsub[torch]``; written as TorchScript).
      run_dir: the folder to write (must not exist or be empty, unless ``force``).
      preprocess: what training applied before the model: a mode (``"caffe"``, ``"tf"``,
        ``"torch"``, ``"rescale"``, ``"none"``), an architecture preset (``"resnet50"``), a
        spec dict (``{"mode": "affine", "scale": [...], "offset": [...]}``) or, for torch,
        the validation ``transforms.Compose``.
      class_names: class names in label order.
      probe: a few validation images ``[n, h, w, 3]``, RGB 0-255 (else a fixed synthetic
        batch): their outputs are the goldens every later step checks against.
      preprocess_fn: (Keras) the function training really applied, e.g.
        ``tf.keras.applications.resnet50.preprocess_input``; export identifies or checks it.
      output: ``"probabilities"`` or ``"logits"``; detected when None.
      name: a name for the card (default: the run dir's name).
      arch: (Keras) an architecture name, used as a preset when ``preprocess`` is None.
      input_size: (torch) ``(height, width)`` the model takes, when the Compose does not say.
      layout: (torch) what ``forward`` takes: ``"NCHW"`` (default) or ``"NHWC"``.
      probe_count: how many probe images to keep.
      tolerance: the probability difference later steps accept as reproduced.
      force: replace an existing run dir.

    Returns:
      an ``ExportResult`` (``.run_dir``, ``.card``, ``.notes``, ``.to_dict()``).

    Raises:
      UsageError (exit 2) for bad arguments, unreadable models or a missing framework;
      CheckFailed (exit 1) when the export does not reproduce the model.

    Example:
      >>> leafsub.export(model, "runs/resnet", preprocess="caffe",        # doctest: +SKIP
      ...                class_names=train_ds.class_names, probe=x_val[:8])
    """
    from .errors import UsageError
    from .exporter.export_torch import is_torch_module

    if is_torch_module(model):
        from .exporter.export_torch import export_torch

        for given, value in (("preprocess_fn", preprocess_fn), ("arch", arch)):
            if value is not None:
                raise UsageError("%s= is for Keras models; for a torch.nn.Module pass the "
                                 "validation transforms.Compose as preprocess=." % given)
        return export_torch(model, run_dir, preprocess=preprocess, class_names=class_names,
                            probe=probe, output=output, name=name, input_size=input_size,
                            layout=layout or "NCHW", probe_count=probe_count,
                            tolerance=tolerance, force=force)
    for given, value in (("input_size", input_size), ("layout", layout)):
        if value is not None:
            raise UsageError("%s= is for torch.nn.Module models; a Keras model states its own "
                             "input shape." % given)
    from .exporter.export import export as _export

    return _export(model, run_dir, preprocess=preprocess, class_names=class_names, probe=probe,
                   preprocess_fn=preprocess_fn, output=output, name=name, arch=arch,
                   probe_count=probe_count, tolerance=tolerance, force=force)


def build(models, weights=None, combine=None, tta=None, profile=None, output="submission.zip",
          json_path=None, force=False, compression="auto", preprocess=None, progress=True,
          workers=None, classes=None):
    """Build a submission zip from exported run dirs, checked before it is written.

    Args:
      models: run dirs written by :func:`export` (a list, or "a,b,c").
      weights: one number per model (normalised); implies ``combine="weighted"``.
      combine: "mean" (default), "weighted", "geometric", "vote", or "module:function"
        for your own combiner ``f(probabilities, weights) -> scores``.
      tta: view names (identity, hflip, vflip, rot90, rot180, rot270, crop_center,
        crop_tl, crop_tr, crop_bl, crop_br); default identity.
      profile: a built-in profile name (``leafsub build --help`` lists them) or a
        profile JSON path (default an2dl-2022).
      output: the zip to write.
      json_path: also write the result (or the failure) as JSON there.
      force: replace an existing ``output``.
      compression: "auto", "deflate" or "store".
      preprocess: per model, a mode or architecture preset overriding the card's.
      progress: print progress messages (stderr; a notebook shows them too).
      workers: compression threads (default: all CPUs).
      classes: the number of classes, for a generic profile (generic, torch-generic);
        default: the models' own.

    Returns:
      a ``BuildResult`` (``.path``, ``.sha256``, ``.size_bytes``, ``.members``,
      ``.checks``, ``.to_dict()``).

    Raises:
      UsageError (exit 2) for bad arguments or unreadable run dirs; CheckFailed (exit 1)
      when the self-check or the size limit fails. No zip is written then.

    Example:
      >>> leafsub.build(["runs/resnet", "runs/effnet"], tta=["identity", "hflip"],  # doctest: +SKIP
      ...               profile="an2dl-2022", output="submission.zip")
    """
    from .builder.build import build as _build

    return _build(models, weights=weights, combine=combine, tta=tta, profile=profile,
                  output=output, json_path=json_path, force=force, compression=compression,
                  preprocess=preprocess, progress=progress, workers=workers, classes=classes)


def evaluate(submission, data, profile=None, runtime=None, python=None, batch_size=None,
             time_limit=None, memory_limit=None, json_path=None, html_path=None, progress=True,
             isolate=True, detective=True, variants=True, keep_workdir=False,
             expect_preprocess=None, card=None, classes=None):
    """Replay the platform's hidden-test protocol on ``submission`` and score it on ``data``.

    The submission runs in a separate, confined child process (never in this one); this
    process imports neither TensorFlow nor PyTorch. In a notebook, the returned result
    displays as its report: verdict, metrics, failures and misclassified images.

    Args:
      submission: the submission zip.
      data: labelled images (a folder of class sub-folders, an .npz or an .h5), or a list
        of them (one phase each).
      profile: a built-in profile name or a profile JSON path (default an2dl-2022).
      runtime: e.g. ``"tensorflow==2.15.1"``: run the child under that version (a cached
        virtual environment, created on first use).
      python: run the child with this interpreter instead (exclusive with ``runtime``).
      batch_size: images per ``predict`` call (default: the profile's).
      time_limit: seconds for the whole replay (default: the profile's).
      memory_limit: MB of memory for the child (default: the profile's).
      json_path, html_path: also write the result as JSON / a self-contained HTML report.
      progress: show progress (a bar on a terminal or in a notebook, lines in a log).
      isolate: OS isolation (private network, confined reads and writes) where available.
      detective, variants: run the mismatch detective / the harness variants.
      keep_workdir: keep the temporary folder (its path is in the result).
      expect_preprocess: the preprocessing training used (caffe, tf, torch, rescale,
        none): the detective confirms or contradicts it.
      card: a run dir written by :func:`export`: its card states the preprocessing.
      classes: the class count, for a generic profile (generic, torch-generic); default:
        the data's (its class names, else its largest label + 1).

    Returns:
      an ``EvaluationResult`` (``.passed``, ``.accuracy``, ``.checks``, ``.metrics``,
      ``.exit_code``, ``.to_dict()``).

    Raises:
      UsageError (exit 2) for bad arguments or unreadable data. A broken submission is
      not an exception: it is a result with failed checks.

    Example:
      >>> result = leafsub.evaluate("submission.zip", "test.npz")   # doctest: +SKIP
      >>> result.passed, result.accuracy                              # doctest: +SKIP
      (True, 0.8125)
    """
    from .evaluator.evaluate import evaluate as _evaluate

    return _evaluate(submission, data, profile=profile, runtime=runtime, python=python,
                     batch_size=batch_size, time_limit=time_limit, memory_limit=memory_limit,
                     json_path=json_path, html_path=html_path, progress=progress,
                     isolate=isolate, detective=detective, variants=variants,
                     keep_workdir=keep_workdir, expect_preprocess=expect_preprocess, card=card,
                     classes=classes)


def compare(a, b, data, profile=None, n_boot=2000, seed=0, level=0.95, alpha=0.05,
            json_path=None, progress=True, **evaluate_kwargs):
    """Is submission ``b`` better than ``a`` on ``data``, or is the difference noise?

    Replays both zips on the same labelled images, then reports the accuracy of each, the
    difference B - A with a paired bootstrap interval, McNemar's exact test on the images
    where exactly one is right, and the change per class.

    Args:
      a, b: the two submission zips (A the reference, B the candidate).
      data: the labelled data (as for :func:`evaluate`).
      profile: the challenge profile name or JSON path (as for :func:`evaluate`).
      n_boot, seed, level: the paired bootstrap of the accuracy difference.
      alpha: significance level of the verdict.
      json_path: also write the comparison as JSON here.
      progress: show progress.
      **evaluate_kwargs: passed on to :func:`evaluate` (runtime, python, batch_size,
        time_limit, memory_limit).

    Returns:
      a ``CompareResult`` (``.to_dict()``, ``.exit_code``).
    """
    from .evaluator.compare import compare as _compare

    return _compare(a, b, data, profile=profile, n_boot=n_boot, seed=seed, level=level,
                    alpha=alpha, json_path=json_path, progress=progress, **evaluate_kwargs)
