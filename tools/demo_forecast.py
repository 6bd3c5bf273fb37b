"""``leafsub demo --forecast``: the whole forecasting flow on synthetic series, in minutes.

The story of AN2DL 2023's challenge 2: series scaled to 0-1, one category 'A'-'F' each;
predict(X, categories) must return the next 9 steps in phase 1 and 18 in phase 2.

1. generate the series (a sum of two sines per category, noise), split off two test phases;
2. train a small Keras forecaster of 9 steps on the last 50 steps, standardised;
3. ``leafsub.export_forecaster`` with the scaler (as an affine) and a probe;
4. ``leafsub build`` twice: ``--horizon 9`` (phase 1) and ``--horizon 18`` (phase 2: the
   model is rolled out, its forecast fed back into the window);
5. ``leafsub evaluate`` of each on its phase, with the HTML report;
6. the usual slip: the phase 1 zip uploaded to phase 2 (9 columns where 18 are due).
"""

import os
import time

import click
import numpy as np


PROFILE = "an2dl-2023-forecast"
LENGTH, WINDOW, STEPS = 200, 50, 9
LETTERS = np.array(list("ABCDEF"))


def synthetic_series(n, horizon, seed):
    """``(x [n, 200] in 0-1, y [n, horizon], categories [n])``: two sines per category."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, 6, size=n)
    t = np.arange(LENGTH + horizon)[None, :]
    period = (12 + 4 * cats)[:, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    s = 0.5 + 0.3 * np.sin(2 * np.pi * t / period + phase) + \
        0.1 * np.sin(2 * np.pi * t / (3.3 * period) + 2 * phase) + rng.normal(0, 0.02, t.shape)
    s = np.clip(s, 0, 1).astype(np.float32)
    return s[:, :LENGTH], s[:, LENGTH:].astype(np.float64), LETTERS[cats]


def _model():
    import keras

    inputs = keras.Input((WINDOW,))
    x = keras.layers.Dense(64, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(STEPS)(x))


def run_forecast_demo(out_dir="leafsub-demo-forecast", seed=0, force=False, epochs=15,
                      say=None):
    """Run the forecasting demo; returns a dict with the paths and the key figures."""
    import keras

    from ..builder.forecast import build_forecaster
    from ..evaluator.evaluate import evaluate
    from ..exporter.forecast import export_forecaster
    from ..profiles import load_profile
    from .demo import fresh_out_dir

    say = say or (lambda msg: click.echo(msg, err=True))
    out_dir = fresh_out_dir(out_dir, force)
    started = time.time()
    profile = load_profile(PROFILE)

    say("[1/6] generating synthetic series (200 steps scaled to 0-1, categories A-F)...")
    x, y, _ = synthetic_series(1200, STEPS, seed)
    phases = {}
    for i, horizon in ((1, 9), (2, 18)):
        px, py, pc = synthetic_series(120, horizon, seed + i)
        phases[i] = os.path.join(out_dir, "phase%d.npz" % i)
        np.savez(phases[i], x=px, y=py, categories=pc)
    say("      phase1.npz (horizon 9), phase2.npz (horizon 18): 120 series each")

    say("[2/6] training a forecaster of 9 steps on the last 50, standardised...")
    mean, std = float(x.mean()), float(x.std())
    keras.utils.set_random_seed(seed)
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit((x[:, -WINDOW:] - mean) / std, (y - mean) / std, epochs=epochs, batch_size=64,
              verbose=0)
    run = os.path.join(out_dir, "runs", "dense")
    say("[3/6] leafsub.export_forecaster with the scaler and a probe...")
    export_forecaster(model, run, scaler={"scale": [1 / std], "offset": [-mean / std]},
                              probe=x[:8])

    zips = {}
    say("[4/6] leafsub build for phase 1 (horizon 9) and phase 2 (horizon 18, rolled out)...")
    for i, horizon in ((1, 9), (2, 18)):
        zips[i] = os.path.join(out_dir, "submission-phase%d.zip" % i)
        build_forecaster(run, profile, zips[i], horizon=horizon, force=True)

    say("[5/6] leafsub evaluate on each phase, as the platform calls predict(X, categories)...")
    results = {}
    for i in (1, 2):
        results[i] = evaluate(zips[i], data=phases[i], profile=PROFILE,
                              html_path=os.path.join(out_dir, "report-phase%d.html" % i),
                              json_path=os.path.join(out_dir, "phase%d.json" % i),
                              progress=False)
    say("[6/6] the phase 1 zip uploaded to phase 2 (9 columns where 18 are due)...")
    wrong = evaluate(zips[1], data=phases[2], profile=PROFILE, progress=False, variants=False)
    shape = next((c for c in wrong.checks if c["name"] == "output: shape"
                  and c["status"] == "fail"), None)
    persistence = {i: float(np.mean((np.load(phases[i])["x"][:, -1:].astype(np.float64)
                                     - np.load(phases[i])["y"]) ** 2)) for i in (1, 2)}
    elapsed = time.time() - started
    summary = {"out_dir": out_dir, "zips": zips, "phases": phases, "seconds": elapsed,
               "mse": {i: results[i].metrics["mse"] for i in (1, 2)},
               "passed": {i: results[i].passed for i in (1, 2)},
               "persistence_mse": persistence, "wrong_phase_caught": shape is not None}
    click.echo("")
    click.echo("leafsub demo --forecast finished in %.0f s. Written to %s:" % (elapsed, out_dir))
    for i in (1, 2):
        click.echo("  phase %d: %s  MSE %.5f (repeating the last value: %.5f) -> %s" % (
            i, os.path.basename(zips[i]), summary["mse"][i], persistence[i],
            "PASSED" if results[i].passed else "FAILED"))
    click.echo("  phase 1 zip on phase 2: %s" % ("FAILED, as it should: " + shape["detail"]
                                                 if shape else "NOT caught"))
    click.echo("  reports: report-phase1.html, report-phase2.html")
    return summary
