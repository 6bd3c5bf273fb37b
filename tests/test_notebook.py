"""A student in a notebook: the API shows its parameters, and an evaluation renders itself.

A small notebook is executed by a real Jupyter kernel (nbclient + ipykernel, in the test
extra): it reads the signatures of leafsub's API, evaluates a submission built here, and
shows the result as the cell's last expression. The executed cell must carry the report
as HTML: the verdict, the metrics, the misclassified images.
"""

import os
import sys

import numpy as np
import pytest

import leafsub

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the [test] extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the [test] extra")
pytest.importorskip("ipykernel", reason="ipykernel is in the [test] extra")
torch = pytest.importorskip("torch", reason="torch is the [torch] extra")

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_api_shows_real_parameters_and_docstrings():
    import inspect

    for name, first in (("export", ["model", "run_dir", "preprocess", "class_names"]),
                        ("build", ["models", "weights", "combine", "tta", "profile"]),
                        ("evaluate", ["submission", "data", "profile", "runtime"]),
                        ("compare", ["a", "b", "data", "profile"])):
        fn = getattr(leafsub, name)
        params = list(inspect.signature(fn).parameters)
        assert params[:len(first)] == first, (name, params)
        assert "Args:" in fn.__doc__ and "Returns:" in fn.__doc__


def test_the_api_wrappers_pass_every_parameter_of_the_functions_they_call():
    """leafsub.build/evaluate spell their parameters out: a parameter added underneath
    must be added there too."""
    import inspect

    from leafsub.builder.build import build
    from leafsub.evaluator.compare import compare
    from leafsub.evaluator.evaluate import evaluate
    from leafsub.exporter.export import export
    from leafsub.exporter.export_torch import export_torch

    for ours, theirs in ((leafsub.build, build), (leafsub.evaluate, evaluate),
                         (leafsub.compare, compare), (leafsub.export, export),
                         (leafsub.export, export_torch)):
        mine = inspect.signature(ours).parameters
        for name, p in inspect.signature(theirs).parameters.items():
            if name == "module":
                name = "model"   # export_torch's first parameter is leafsub.export's model
            assert name in mine, "leafsub.%s lacks %s" % (ours.__name__, name)


@pytest.fixture(scope="module")
def torch_zip(tmp_path_factory):
    """A 4-class torch CNN, exported and built for torch-generic as it is (no profile
    edited: the class count comes from the model), and its test data."""
    sys.path.insert(0, HERE)
    from torch_helpers import MEAN, STD, Compose, Normalize, ToTensor, color_images, trained_cnn

    root = tmp_path_factory.mktemp("notebook")
    images, labels = color_images(160, size=96, seed=1)
    np.savez(root / "test.npz", images=images, labels=labels)
    leafsub.export(trained_cnn(0, steps=60, size=96), root / "run",
                   preprocess=Compose([ToTensor(), Normalize(MEAN, STD)]),
                   class_names=["dark", "light", "red", "blue"], probe=images[:8])
    leafsub.build([str(root / "run")], profile="torch-generic", output=root / "sub.zip",
                  progress=False)
    return root


@pytest.mark.slow
def test_a_notebook_renders_an_evaluation_inline(torch_zip):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import inspect, leafsub\n"
                                  "print(inspect.signature(leafsub.evaluate))"),
        nbformat.v4.new_code_cell("result = leafsub.evaluate(%r, %r, profile='torch-generic')\n"
                                  "result" % (str(torch_zip / "sub.zip"),
                                              str(torch_zip / "test.npz"))),
    ]
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(torch_zip)}})
    client.execute()
    signature = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert "(submission, data, profile=None, runtime=None" in signature

    outputs = nb.cells[1].outputs
    shown = [o for o in outputs if o.output_type == "execute_result"]
    assert shown, outputs
    html = shown[0]["data"]["text/html"]
    assert html.startswith('<div class="leafsub-report">')
    assert 'class="verdict pass"' in html and "PASSED" in html
    assert "Accuracy" in html and 'id="misclassified"' in html
    if 'class="miss"' in html:   # the misclassified images themselves, embedded
        assert '<img src="data:image/png;base64,' in html
    # scoped styles: the notebook's own page is left alone
    assert "body{" not in html and ".leafsub-report .verdict" in html
    # progress went to the cell's stderr stream, as a redrawn bar
    errors = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "images" in errors and "\r" in errors
