"""The HTML report: self-contained, escaped, and rendered by a real browser (headless Chromium)."""

import html
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from leafsub.evaluator import metrics, report_html

NAMES = ["Apple scab", "Black rot", "Cedar <rust>", "Healthy & \"fine\""]


def _images(n, seed=0):
    """n distinct 64x64 RGB images: a coloured leaf-ish ellipse on a background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    out = np.empty((n, 64, 64, 3), np.uint8)
    for i in range(n):
        bg = rng.integers(150, 230, 3)
        fg = rng.integers(20, 140, 3)
        cy, cx = rng.integers(24, 40, 2)
        mask = ((yy - cy) / 22.0) ** 2 + ((xx - cx) / 14.0) ** 2 < 1
        out[i] = np.where(mask[..., None], fg, bg)
    return out


def make_result(n=120, seed=0, passed=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    predictions = np.where(rng.random(n) < 0.8, labels, rng.integers(0, 4, n))
    m = metrics.classification_metrics(labels, predictions, 4, NAMES)
    low, high = metrics.bootstrap_ci(labels, predictions, n_boot=500)
    m["accuracy_ci"] = {"low": low, "high": high, "level": 0.95, "n_boot": 500}
    conf = rng.uniform(0.3, 1.0, n)
    return {
        "passed": passed,
        "profile": "an2dl-2022",
        "submission": "/home/student/<script>alert(1)</script>/submission.zip",
        "data": "data/val.npz",
        "n_images": n,
        "metrics": m,
        "checks": [
            {"name": "zip layout", "status": "pass", "detail": "model.py, metadata, SubmissionModel/"},
            {"name": "loads", "status": "pass", "detail": "model(path) in 2.1 s"},
            {"name": "deterministic", "status": "warn", "detail": "2 of 120 labels differ between runs"},
            {"name": "goldens", "status": "fail" if not passed else "pass",
             "detail": "probe labels differ on 3 of 16 images: <b>check preprocessing</b>"},
        ],
        "timing": {"load_s": 2.13, "predict_s": 7.5, "images_per_s": n / 7.5},
        "predictions": predictions.tolist(),
        "labels": labels.tolist(),
        "confidence": conf.tolist(),
        "misclassified": np.flatnonzero(predictions != labels).tolist(),
        "assumptions": ["The platform calls predict(X) with a tf.Tensor <float32>.",
                        "Class 0 is 'Apple scab'."],
    }


def test_report_is_self_contained_and_escaped(tmp_path):
    result = make_result()
    images = _images(result["n_images"])
    path = report_html.write_report(result, tmp_path / "report.html", images=lambda idx: images[idx])
    text = open(path, encoding="utf-8").read()
    assert '<meta name="viewport"' in text
    # no network: nothing loaded from anywhere but data: URIs
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)
    assert "<script" not in text.lower().replace("&lt;script&gt;", "")
    assert "http://" not in text and "https://" not in text
    # user strings escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Cedar &lt;rust&gt;" in text and "Healthy &amp; &quot;fine&quot;" in text
    assert "&lt;b&gt;check preprocessing&lt;/b&gt;" in text
    assert "tf.Tensor &lt;float32&gt;" in text
    # the answer first: verdict, metrics, what failed or warned; then the mistakes; passing
    # checks last, folded
    order = ['id="verdict"', 'id="metrics"', 'id="attention"', 'id="misclassified"',
             'id="per-class"', 'id="confusion"', 'id="checks"', 'id="timing"']
    assert [text.index(marker) for marker in order] == sorted(text.index(m) for m in order)
    assert "FAILED" in text and "goldens" in text
    attention = text[text.index('id="attention"'):text.index('id="misclassified"')]
    assert "What failed and what warned" in attention
    assert attention.index("goldens") < attention.index("deterministic")  # failures first
    assert 'class="check pass"' not in attention
    passed = text[text.index('id="checks"'):text.index('id="timing"')]
    assert '<details class="checks">' in passed and "2 passed" in passed
    assert passed.count('class="check pass"') == 2 and "goldens" not in passed
    n_miss = len(result["misclassified"])
    assert text.count('<figure class="miss">') == n_miss
    assert text.count("data:image/png;base64,") == n_miss
    assert "95% CI" in text


def test_gallery_is_capped_most_confident_first(tmp_path):
    result = make_result(n=400)
    text = report_html.render_report(result, images=_images(400), max_gallery=5)
    assert text.count('<figure class="miss">') == 5
    conf = np.asarray(result["confidence"])
    top = sorted(result["misclassified"], key=lambda i: (-conf[i], i))[:5]
    shown = [int(i) for i in re.findall(r'<span class="index">#(\d+)</span>', text)]
    assert shown == top
    assert "showing 5" in text


def test_minimal_result_and_no_images(tmp_path):
    """A submission that never loaded: checks only, no metrics; the page still renders."""
    result = {"passed": False, "profile": "generic", "checks": [
        {"name": "loads", "status": "fail", "detail": "ImportError: no module named 'mymodule'"}]}
    text = report_html.render_report(result)
    assert "FAILED" in text and "mymodule" in text
    assert 'id="confusion-matrix"' not in text
    # labels and predictions but no images: captions without thumbnails
    full = make_result(passed=True)
    text = report_html.render_report(full)
    assert "PASSED" in text and "no image" in text and "No images were given" in text


def test_clean_pass_has_nothing_to_attend_to_and_warnings_are_not_folded():
    result = make_result(passed=True)
    result["checks"] = [c for c in result["checks"] if c["status"] == "pass"]
    text = report_html.render_report(result)
    assert "All 3 checks passed." in text and 'id="attention"' not in text
    assert text.index('id="metrics"') < text.index('id="checks"')

    result["checks"].append({"name": "data: classes", "status": "warn", "detail": "names differ"})
    text = report_html.render_report(result)
    assert "No check failed; 1 warning below." in text
    attention = text[text.index('id="attention"'):text.index('id="misclassified"')]
    assert "<h2>Warnings</h2>" in attention and "names differ" in attention
    assert "<details" not in attention


def test_gallery_shows_two_rows_and_folds_the_rest():
    result = make_result(n=400)
    n_miss = len(result["misclassified"])
    text = report_html.render_report(result, max_gallery=40)
    gallery = text[text.index('id="misclassified"'):]
    open_part, folded = gallery.split('<details class="more">', 1)
    assert open_part.count('<figure class="miss">') == report_html.GALLERY_OPEN
    assert "<summary>%d more</summary>" % (40 - report_html.GALLERY_OPEN) in folded
    assert text.count('<figure class="miss">') == 40 and n_miss > 40
    assert '<details class="more">' not in report_html.render_report(
        result, max_gallery=report_html.GALLERY_OPEN)


def test_result_object_with_to_dict():
    class Result:
        def to_dict(self):
            return make_result(n=20)
    assert "Confusion matrix" in report_html.render_report(Result())


def test_ci_shapes():
    m = {"accuracy": 0.8}
    assert report_html._ci({}, dict(m, accuracy_ci=[0.7, 0.9])) == (0.7, 0.9, 0.95)
    assert report_html._ci({}, dict(m, accuracy_ci={"low": 0.7, "high": 0.9, "level": 0.9})) == (0.7, 0.9, 0.9)
    assert report_html._ci({}, dict(m, ci={"accuracy": [0.7, 0.9]})) == (0.7, 0.9, 0.95)
    assert report_html._ci({}, m) is None


# --------------------------------------------------------------------------- real browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]


def _chromium():
    """Path of a Chromium binary; installs the Debian package when running as root with apt-get."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, capture_output=True,
                           timeout=1200, env=env)
        except (subprocess.SubprocessError, OSError) as err:
            pytest.skip("headless Chromium is not installed and 'apt-get install chromium' failed (%s)" % err)
        path = shutil.which("chromium")
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; needs root)")


@pytest.fixture(scope="module")
def chromium():
    return _chromium()


def _run_chromium(binary, html_path, *extra, width=1280, height=2000):
    with tempfile.TemporaryDirectory(prefix="leafsub-chromium-") as profile:
        cmd = [binary, *CHROMIUM_FLAGS, "--user-data-dir=" + profile, "--window-size=%d,%d" % (width, height),
               *extra, "file://" + os.path.abspath(html_path)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("width, height", [(1280, 2000), (390, 2400)])  # laptop, phone
def test_report_renders_in_chromium(tmp_path, chromium, width, height):
    from PIL import Image

    result = make_result()
    images = _images(result["n_images"])
    html_path = report_html.write_report(result, tmp_path / "report.html", images=lambda idx: images[idx])

    dom = _run_chromium(chromium, html_path, "--dump-dom", width=width, height=height)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert 'id="confusion-matrix"' in text
    assert text.count('class="cm-cell') == 16
    assert text.count('<figure class="miss">') == len(result["misclassified"])
    assert text.count('<img src="data:image/png;base64,') == len(result["misclassified"])
    assert "FAILED" in text

    png = tmp_path / ("shot-%d.png" % width)
    shot = _run_chromium(chromium, html_path, "--screenshot=%s" % png, width=width, height=height)
    assert png.exists(), shot.stderr[-2000:]
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[:2] == (height, width)
    non_white = np.any(img < 235, axis=-1).mean()
    colours = len(np.unique(img.reshape(-1, 3)[::7], axis=0))
    assert non_white > 0.03, "screenshot is almost blank (%.1f %% non-white)" % (100 * non_white)
    assert colours > 50, "screenshot has only %d distinct colours" % colours
    if os.environ.get("LEAFSUB_KEEP_SCREENSHOTS"):
        shutil.copy(png, os.path.join(os.environ["LEAFSUB_KEEP_SCREENSHOTS"], png.name))


# Test-only: appended to a copy of the report (which itself has no script) so that
# --dump-dom tells where the browser laid out each part, in CSS pixels from the top.
LAYOUT_PROBE = """<script>
const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
  return {top: r.top + scrollY, bottom: r.bottom + scrollY, height: r.height}; };
const out = {};
for (const id of ["verdict", "metrics", "attention", "misclassified", "checks"])
  out[id] = box(document.getElementById(id));
const first = document.querySelector("li.check.pass");
out.first_pass_visible = first ? first.checkVisibility({contentVisibilityAuto: true}) : null;
out.checks_summary = box(document.querySelector("details.checks > summary"));
const pre = document.createElement("pre"); pre.id = "layout";
pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
</script>"""


def _layout(binary, html_path, tmp_path, width, height):
    import json

    probe = tmp_path / "layout-probe.html"
    probe.write_text(open(html_path, encoding="utf-8").read().replace(
        "</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    dom = _run_chromium(binary, probe, "--dump-dom", width=width, height=height)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom.stdout, re.S)
    assert found, "the layout probe did not run: " + dom.stdout[-500:]
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize("width, height", [(1280, 2000), (390, 2400)])  # laptop, phone
def test_screenshot_leads_with_the_verdict_and_the_metrics(tmp_path, chromium, width, height):
    """What a person sees first: the verdict, the metrics, what failed; passing checks folded."""
    from PIL import Image

    result = make_result()
    result["checks"] = result["checks"] + [
        {"name": "passing check %d" % k, "status": "pass", "detail": "fine"} for k in range(20)]
    images = _images(result["n_images"])
    html_path = report_html.write_report(result, tmp_path / "report.html", images=lambda idx: images[idx])
    box = _layout(chromium, html_path, tmp_path, width, height)

    assert box["verdict"]["bottom"] <= box["metrics"]["top"] < box["attention"]["top"]
    assert box["attention"]["bottom"] <= box["misclassified"]["top"] < box["checks"]["top"]
    # the passing checks are folded: a one-line summary, the checks themselves not laid out
    assert box["first_pass_visible"] is False
    assert box["checks_summary"]["height"] < 80
    # the verdict, the metrics and what failed fit on the first screen
    assert box["attention"]["bottom"] < height

    png = tmp_path / ("report-%d.png" % width)
    shot = _run_chromium(chromium, html_path, "--screenshot=%s" % png, width=width, height=height)
    assert png.exists(), shot.stderr[-2000:]
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    scale = img.shape[1] / width            # device pixels per CSS pixel

    def rows_with(colour, tolerance=6):
        hit = np.all(np.abs(img - np.array(colour)) <= tolerance, axis=-1).sum(axis=1) > 20
        return np.flatnonzero(hit) / scale

    fail_banner = rows_with((0xff, 0xeb, 0xe9))     # --fail-bg: the verdict and failed checks
    accuracy = rows_with((0x09, 0x69, 0xda), 40)     # --accent: the accuracy figure
    assert len(fail_banner) and fail_banner.min() < box["metrics"]["top"]
    assert len(accuracy) and box["metrics"]["top"] <= accuracy.min() < box["metrics"]["bottom"]
    if os.environ.get("LEAFSUB_KEEP_SCREENSHOTS"):
        shutil.copy(png, os.path.join(os.environ["LEAFSUB_KEEP_SCREENSHOTS"], png.name))


def test_phases_table_when_several_packs():
    result = make_result(n=40)
    result["phases"] = [{"name": "phase 1 <val>", "n_images": 40, "passed": True, "metrics": result["metrics"]},
                        {"name": "phase 2", "n_images": 40, "passed": False, "metrics": result["metrics"]}]
    text = report_html.render_report(result)
    assert 'id="phases"' in text and "phase 1 &lt;val&gt;" in text
    result["phases"] = result["phases"][:1]
    assert 'id="phases"' not in report_html.render_report(result)
