"""What `leafsub evaluate` shows on a terminal, as pytest does: the passing checks fold
into one line, warnings and failures print in full, the verdict stands last; --verbose
lists every check. (A real evaluate's output is checked in test_evaluate.py.)"""

from leafsub.evaluator.terminal import format_evaluation


def result(checks, passed, phases=1):
    metrics = {"accuracy": 0.8125, "accuracy_ci": {"low": 0.75, "high": 0.87},
               "balanced_accuracy": 0.8, "macro_f1": 0.79,
               "per_class": [{"class": "c%d" % i, "recall": 0.5 + i / 10} for i in range(4)]}
    return {"submission": "/tmp/x/submission.zip", "data": ["/tmp/x/test.npz"],
            "profile": "an2dl-2022", "n_images": 240, "runtime": "this Python",
            "checks": checks, "passed": passed, "metrics": metrics,
            "phases": [{"name": "phase%d" % i, "n_images": 240 // phases,
                        "metrics": {"accuracy": 0.8125}} for i in range(phases)],
            "timing": {"load_s": 1.0, "predict_s": 2.0, "images_per_s": 120, "total_s": 5.0}}


def passing(n):
    names = ["layout", "load", "output contract", "deterministic", "input not modified",
             "goldens", "mismatch detective"] + ["variant: batch size %d" % i for i in range(4)] \
        + ["data: test.npz"]
    return [{"name": names[i % len(names)] if i < len(names) else "check %d" % i,
             "status": "pass", "detail": "fine\nsecond line of a passing check"} for i in range(n)]


def test_a_passing_run_folds_its_checks_into_one_line_and_ends_with_the_verdict():
    lines = format_evaluation(result(passing(30), True))
    assert len(lines) <= 15, "\n".join(lines)
    folded = [line for line in lines if "checks passed:" in line]
    assert len(folded) == 1 and folded[0].startswith("PASS  30 checks passed: layout, load")
    assert len(folded[0]) <= 80 and "more" in folded[0]
    assert "variant:" not in folded[0]
    variants = [{"name": "variant: batch size %d" % i, "status": "pass", "detail": ""}
                for i in (1, 7)] + [{"name": "goldens", "status": "pass", "detail": ""}]
    assert "PASS  3 checks passed: variants, goldens" in format_evaluation(result(variants, True))
    assert not any("second line of a passing check" in line for line in lines)
    assert lines[-1] == "verdict: PASSED: 30 checks passed"
    # one phase: its accuracy is the overall line, not said twice
    assert sum("0.8125" in line for line in lines) == 1


def test_warnings_and_failures_print_in_full_and_the_accuracy_once():
    long_detail = "\n".join(["the first line says what failed"] + ["  detail line %d" % i
                                                                     for i in range(12)])
    checks = passing(20) + [
        {"name": "mismatch detective", "status": "fail", "detail": long_detail},
        {"name": "timing", "status": "warn", "detail": "slow: " + "word " * 40},
    ]
    lines = format_evaluation(result(checks, False))
    text = "\n".join(lines)
    assert "detail line 11" in text   # in full: no cut after 8 lines
    assert "FAIL  mismatch detective" in text and "WARN  timing" in text
    assert all(len(line) <= 80 for line in lines)
    assert sum(line.startswith("accuracy ") for line in lines) == 1
    assert sum("0.8125" in line for line in lines) == 1
    assert lines[-1] == "verdict: FAILED: 1 check failed (mismatch detective), 1 warning"
    assert lines.index(next(l for l in lines if "checks passed" in l)) < lines.index(
        next(l for l in lines if l.startswith("FAIL")))


def test_several_phases_are_listed_and_verbose_lists_every_check():
    lines = format_evaluation(result(passing(12), True, phases=2), verbose=True)
    text = "\n".join(lines)
    assert "phase0" in text and "phase1" in text
    assert "checks passed:" not in text
    assert sum(line.startswith("PASS  ") for line in lines) == 12
    assert lines[-1] == "verdict: PASSED: 12 checks passed"
