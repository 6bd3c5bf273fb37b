"""TTA's stacked views reach the model in slices of the batch, with the same answers."""

import numpy as np
import pytest

from conftest import tiny_keras_model
from leafsub.submission_template import runtime
from submissions import export_saved_model

VIEWS_8 = ["identity", "hflip", "vflip", "rot90", "rot180", "rot270", "crop_center", "crop_tl"]


class Recorder:
    """Wraps a model call and remembers the batch size of every call."""

    def __init__(self, call):
        self.call, self.sizes = call, []

    def __call__(self, batch):
        self.sizes.append(int(batch.shape[0]))
        return self.call(batch)


def test_call_in_slices_keeps_the_order_and_bounds_every_call():
    batch = np.arange(70, dtype=np.float32)[:, None]
    call = Recorder(lambda b: np.asarray(b) * 2)
    out = runtime.call_in_slices(call, batch, 32)
    assert call.sizes == [32, 32, 6]
    assert np.array_equal(out, batch * 2)
    call.sizes.clear()
    assert np.array_equal(runtime.call_in_slices(call, batch, 70), batch * 2)
    assert call.sizes == [70]


@pytest.fixture(scope="module")
def member(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tta") / "saved_model")
    export_saved_model(tiny_keras_model((24, 24, 3), n_classes=5, rescaling=1 / 255.0), folder)
    return runtime.Member(folder, {"mode": "none"}, (24, 24), "probabilities")


def _one_stacked_call(member, x, views):
    """What Member.predict_proba did before: all k x N views in one model call."""
    batch = runtime.normalize(runtime.tta_batch(runtime.resize(x, member.input_size), views),
                              member.spec)
    return runtime.merge_views(runtime.to_probabilities(member.call(batch), member.output_kind),
                               len(views))


@pytest.mark.parametrize("n, expected_calls", [(32, [64] * 4), (80, [80] * 8), (1, [8]),
                                               (12, [64, 32])])
def test_member_feeds_the_views_in_slices_of_the_batch_and_answers_the_same(member, n,
                                                                           expected_calls):
    x = np.random.default_rng(n).uniform(0, 255, (n, 24, 24, 3)).astype(np.float32)
    before = _one_stacked_call(member, x, VIEWS_8)
    real = member.call
    member.call = Recorder(real)
    try:
        now = member.predict_proba(x, VIEWS_8)
    finally:
        sizes, member.call = member.call.sizes, real
    assert sizes == expected_calls
    assert now.shape == (n, 5)
    np.testing.assert_allclose(now, before, rtol=0, atol=1e-6)
    assert np.array_equal(now.argmax(axis=1), before.argmax(axis=1))


def test_no_tta_is_still_one_call_per_chunk(member):
    x = np.random.default_rng(0).uniform(0, 255, (64, 24, 24, 3)).astype(np.float32)
    real = member.call
    member.call = Recorder(real)
    try:
        runtime.Ensemble([member], chunk_size=64).predict_proba(x)
    finally:
        sizes, member.call = member.call.sizes, real
    assert sizes == [64]
