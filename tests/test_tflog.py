"""TensorFlow's start-up chatter stays out of leafsub's output; real messages do not."""

import os
import subprocess
import sys

import pytest

from leafsub import tflog

# Verbatim from TF 2.21 (absl, before InitializeLog) and TF 2.15 (tsl logging).
STARTUP_2_21 = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796216329.262149    8653 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796216329.262807    8653 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
E0000 00:00:1796216341.773161    8969 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""
STARTUP_2_15 = """\
2026-12-02 13:01:04.216661: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
2026-12-02 13:01:04.307165: I external/local_tsl/tsl/cuda/cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
2026-12-02 13:01:04.439146: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered
2026-12-02 13:01:04.445379: E external/local_xla/xla/stream_executor/cuda/cuda_blas.cc:1515] Unable to register cuBLAS factory: Attempting to register factory for plugin cuBLAS when one has already been registered
2026-12-02 13:01:04.465586: I tensorflow/core/platform/cpu_feature_guard.cc:182] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
2026-12-02 13:01:05.281311: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] TF-TRT Warning: Could not find TensorRT
"""
# What must survive: the submission's own output and TF log lines that are not start-up noise.
REAL = """\
loading my model...
2026-12-02 13:01:09.000001: W tensorflow/core/framework/op_kernel.cc:1827] OP_REQUIRES failed at conv_ops.cc:1068 : INVALID_ARGUMENT: input depth must be evenly divisible by filter depth: 1 vs 3
W0000 00:00:1796216400.000001    8653 op_kernel.cc:1857] OP_REQUIRES failed at strided_slice_op.cc:117 : INVALID_ARGUMENT: slice index 3 of dimension 0 out of bounds.
UserWarning: Could not find cuda drivers (my own message, not TensorFlow's log line)
"""


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.delenv("LEAFSUB_DEBUG", raising=False)
    monkeypatch.delenv("LEAFSUB_VERBOSE", raising=False)


def test_startup_lines_of_both_log_formats_are_stripped_and_nothing_else(quiet):
    first, rest = REAL.split("\n", 1)
    text = STARTUP_2_21 + first + "\n" + STARTUP_2_15 + rest
    assert tflog.strip_startup(text) == REAL
    assert tflog.strip_startup(STARTUP_2_21 + STARTUP_2_15) == ""
    assert tflog.strip_startup(REAL) is REAL
    assert tflog.strip_startup("") == "" and tflog.strip_startup(None) is None


@pytest.mark.parametrize("var", ["LEAFSUB_DEBUG", "LEAFSUB_VERBOSE"])
def test_verbose_keeps_everything(quiet, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    assert tflog.verbose()
    assert tflog.strip_startup(STARTUP_2_21 + REAL) == STARTUP_2_21 + REAL
    env = tflog.quiet_env({})
    assert "TF_CPP_MIN_LOG_LEVEL" not in env      # TensorFlow's default level: everything
    monkeypatch.setenv(var, "0")
    assert not tflog.verbose()


def test_quiet_env_keeps_the_users_own_level(quiet):
    assert tflog.quiet_env({})["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert tflog.quiet_env({"TF_CPP_MIN_LOG_LEVEL": "0"})["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_captured_fd2_shows_again_what_is_not_startup_noise(quiet, capfd):
    with tflog._Captured():
        os.write(2, (STARTUP_2_21 + REAL).encode())
    assert capfd.readouterr().err == REAL


def test_captured_fd2_shows_everything_when_the_import_fails(quiet, capfd):
    with pytest.raises(ImportError):
        with tflog._Captured():
            os.write(2, STARTUP_2_21.encode())
            raise ImportError("libcudart.so.12: cannot open shared object file")
    assert capfd.readouterr().err == STARTUP_2_21


# The CLI's own path (cli.main installs the quiet import, --verbose is the group's option),
# with one extra command that imports TensorFlow the way export and demo do.
SCRIPT = """\
import sys
import click
from leafsub import cli

@click.command("import-tf")
def import_tf():
    import tensorflow as tf
    assert tf.__loader__.__class__.__name__ != "_QuietLoader"
    click.echo(int(tf.reduce_sum(tf.ones([2, 3]))))
    click.echo("after import", err=True)

cli.cli.add_command(import_tf)
cli.main(sys.argv[1:])
"""


def _import_tensorflow(*args, **env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("TF_CPP_MIN_LOG_LEVEL", "LEAFSUB_DEBUG", "LEAFSUB_VERBOSE")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", SCRIPT, *args, "import-tf"],
                          capture_output=True, text=True, timeout=300, env=full)


def test_cli_imports_tensorflow_quietly_and_verbose_shows_the_lines():
    quiet = _import_tensorflow()
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout.strip() == "6"
    assert quiet.stderr == "after import\n", quiet.stderr[-3000:]

    for loud in (_import_tensorflow("--verbose"), _import_tensorflow(LEAFSUB_DEBUG="1")):
        assert loud.returncode == 0, loud.stderr[-3000:]
        assert loud.stderr.endswith("after import\n")
        if not any(tflog.is_startup_line(line) for line in loud.stderr.splitlines()):
            pytest.skip("this TensorFlow build prints no start-up line here (GPU machine?)")


def test_cli_help_names_verbose():
    from conftest import run_cli

    proc = run_cli("--help")
    assert proc.returncode == 0 and "--verbose" in proc.stdout and "LEAFSUB_DEBUG" in proc.stdout
