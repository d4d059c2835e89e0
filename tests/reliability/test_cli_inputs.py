"""Bad command-line inputs are one typed line, checked before anything is simulated."""

from __future__ import annotations

import pytest

import lpm
from lpm.errors import ConfigError
from tests.reliability.cli import assert_clean_failure, run_cli


@pytest.mark.parametrize("device", ["gpu", "tpu"])
def test_unknown_device(tmp_path, device):
    result = run_cli("run", "default", "--agents", "100", "--steps", "1", "--quiet", "--out", str(tmp_path),
                     "--device", device)
    assert_clean_failure(result, "ConfigError", f"--device", repr(device))


def test_out_under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "runs"
    result = run_cli("run", "default", "--agents", "100", "--steps", "1", "--quiet", "--out", str(out))
    assert_clean_failure(result, "ConfigError", "--out", str(out))
    assert "simulated in" not in result.stdout  # refused before simulating


def test_ensemble_zero_is_a_usage_error(tmp_path):
    result = run_cli("forecast", "cascades", "--params", "x.json", "--data", str(tmp_path), "--ensemble", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--ensemble" in result.stderr.splitlines()[-1] and "got 0" in result.stderr


@pytest.mark.parametrize("dt", [float("inf"), float("nan"), 0.0, True])
def test_model_dt_must_be_positive_and_finite(dt):
    with pytest.raises(ConfigError, match=f"finite step length dt.*got {dt!r}"):
        lpm.Model(activity=lpm.dynamics.Hawkes(mu=0.6, alpha=0.8, beta=1.5), dt=dt)


@pytest.mark.parametrize("options, named", [(["--max-steps", "0"], "--max-steps"), (["--budget-s", "-5"], "--budget-s"),
                                            (["--device", "tpu"], "--device"), (["--device", "gpu"], "--device")])
def test_calibrate_options_checked_before_fitting(tmp_path, options, named):
    out = tmp_path / "fit.json"
    result = run_cli("calibrate", "cascades", "--data", str(tmp_path), "--out", str(out), "--quiet", *options)
    assert_clean_failure(result, "ConfigError", named, options[1])
    assert not out.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("command", ["calibrate", "evaluate", "check"])
def test_cuda_without_a_gpu_is_one_clear_line(tmp_path, command):
    extra = ["--out", str(tmp_path / "f.json")] if command == "calibrate" else ["--params", str(tmp_path / "f.json")]
    result = run_cli(command, "cascades", "--data", str(tmp_path), "--device", "cuda", *extra)
    assert_clean_failure(result, "ConfigError", "CUDA", "--device cpu")
