"""Resuming a calibration from a truncated, corrupted or foreign Lightning checkpoint: one typed error
naming the file and what to do, before any step runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lpm.calibration.common import CalibrationModule, fit
from lpm.cli import main
from lpm.errors import DataFormatError

HINT = "delete it, or run without --resume to start the fit over"


def _quadratic(size: int = 1):
    import lightning.pytorch as pl

    class Quadratic(CalibrationModule, pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.x = nn.Parameter(torch.zeros(size))
            self.seed = 0

        def loss(self, seed: int) -> torch.Tensor:
            return ((self.x - 1.0) ** 2).sum()

        def fitted_params(self) -> dict[str, float]:
            return {"x": float(self.x[0].detach())}

    return Quadratic()


def _fit(work, module=None, steps: int = 2, resume: bool = False):
    return fit(module or _quadratic(), kind="cascades", max_steps=steps, work_dir=work, resume=resume, logger="none",
               progress=False)


def _corrupt(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flipped":
        middle = bytearray(data)
        for i in range(len(middle) // 3, len(middle) // 3 + 64):
            middle[i] ^= 0xFF
        path.write_bytes(bytes(middle))
    elif how == "text":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    elif how == "not-a-checkpoint":
        torch.save({"weights": torch.zeros(3)}, path)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    work = tmp_path_factory.mktemp("fit")
    _fit(work)
    return (work / "checkpoints" / "last.ckpt").read_bytes()


@pytest.mark.parametrize("how, found", [
    ("truncated", "Expected a readable Lightning checkpoint"), ("empty", "Expected a readable Lightning checkpoint"),
    ("flipped", "Expected a readable Lightning checkpoint"), ("text", "Expected a readable Lightning checkpoint"),
    ("not-a-checkpoint", "Expected a Lightning checkpoint with ['state_dict', 'optimizer_states'"),
])
def test_a_broken_checkpoint_is_refused_naming_file_and_remedy(tmp_path, checkpoint_bytes, how, found):
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(checkpoint_bytes)
    _corrupt(last, how)
    with pytest.raises(DataFormatError) as info:
        _fit(tmp_path, steps=4, resume=True)
    message = str(info.value)
    assert found in message and str(last) in message and message.endswith(HINT), message


def test_a_checkpoint_of_another_model_is_refused(tmp_path, checkpoint_bytes):
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(checkpoint_bytes)
    with pytest.raises(DataFormatError, match=r"Expected a checkpoint of this fit's parameters at .*last.ckpt \(got "
                                              r"another model's: differs in \['x'\]\)"):
        _fit(tmp_path, module=_quadratic(size=2), steps=4, resume=True)


def test_a_good_checkpoint_still_resumes(tmp_path, checkpoint_bytes):
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(checkpoint_bytes)
    assert _fit(tmp_path, steps=3, resume=True)["steps"] == 3


def test_the_cli_says_it_in_one_line(tmp_path, capsys):
    from lpm.calibration.fit_cascades import DEFAULTS, CascadeWorld, simulate_cascades
    from lpm.data.rumdetect import write_rumdetect

    table = simulate_cascades(CascadeWorld(agents=200, items=2), DEFAULTS, hours=[1.0, 72.0], batch=2, seed=9)
    data = write_rumdetect(table, tmp_path / "data")
    last = tmp_path / "work" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 cut short")
    out = tmp_path / "fit.json"
    code = main(["calibrate", "cascades", "--data", str(data), "--out", str(out), "--work-dir", str(tmp_path / "work"),
                 "--resume", "--agents", "100", "--items", "2", "--logger", "none", "--quiet", "--split", "all"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("lpm: error: DataFormatError: Expected a readable Lightning checkpoint at ")
    assert str(last) in err[0] and err[0].endswith(HINT) and not out.exists()
