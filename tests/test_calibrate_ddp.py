"""Cascade calibration across processes with Lightning's DDP (gloo, CPU): two ranks, each simulating
half of the step's ensemble, give the one-process loss, gradients and parameters.

The two-process fit runs this file as a program (``python tests/test_calibrate_ddp.py OUT``):
Lightning's launcher starts rank 1 by running the same command again with ``LOCAL_RANK=1``, as it
does for ``lpm calibrate --devices 2``. Rank 0 writes what the fit saw to ``OUT``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lpm.calibration.common import fit
from lpm.calibration.fit_cascades import DEFAULTS, CascadeCalibration, CascadeWorld, simulate_cascades
from lpm.cli import main
from lpm.errors import ConfigError
from lpm.targets import cascade_targets

STEPS = 2
HOURS = [1 / 6, 0.5]


def _module() -> CascadeCalibration:
    """A small random problem: 4 scenarios x 3 cascades per step, relaxed (random) reshare draws, so
    that each rank's half of the ensemble must come from the same per-scenario draws as in one process."""
    world = CascadeWorld(agents=300, items=3)
    truth = dict(DEFAULTS, audience=900.0, transmissibility=0.01)
    observed = cascade_targets(simulate_cascades(world, truth, hours=HOURS, batch=3, seed=5), HOURS)
    return CascadeCalibration(observed, world, dict(truth, audience=600.0, feed_half_life_h=0.4), fixed=(),
                              batch=4, fit_horizon_h=0.5, estimator="relaxed", temperature=0.7,
                              dtype=torch.float64, seed=3)


class _Record(Callback):
    """The gradients each step applies (after DDP's all-reduce) and the parameters after it."""

    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []
        self.params: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        self.grads.append({n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None})

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.params.append({n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad})


def _fit(work_dir: Path, devices: int) -> dict:
    record = _Record()
    result = fit(_module(), kind="cascades", max_steps=STEPS, logger="none", progress=False, work_dir=work_dir,
                 devices=devices, strategy="ddp" if devices > 1 else "auto", callbacks=[record])
    return {"losses": [loss for _, _, loss in result["history"]], "grads": record.grads, "params": record.params,
            "rank": result["global_rank"]}


def test_two_processes_give_the_one_process_loss_gradients_and_steps(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    ranks = subprocess.Popen([sys.executable, __file__, str(tmp_path / "ddp.pt"), str(tmp_path / "ddp")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    one = _fit(tmp_path / "one", devices=1)  # while the two ranks start
    _, err = ranks.communicate(timeout=300)
    assert ranks.returncode == 0, err[-3000:]
    two = torch.load(tmp_path / "ddp.pt")
    assert len(two["losses"]) == len(one["losses"]) == STEPS
    # The loss is computed on the gathered ensemble, the same float64 values in the same order as in
    # one process: the first step's is equal to the last bit. The gradient's per-scenario parts are
    # summed per rank and then across ranks (another order), so it agrees to float64 rounding:
    # relative 1e-12, and so do the parameters after each step and the later losses.
    assert two["losses"][0] == one["losses"][0]
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-12)
    for got, want in zip(two["grads"], one["grads"]):
        assert got.keys() == want.keys() and len(want) >= 6
        for name in want:
            assert torch.allclose(got[name], want[name], rtol=1e-12, atol=1e-15), name
    assert any(float(g.abs().max()) > 1e-6 for g in one["grads"][0].values())  # the comparison is not of zeros
    for got, want in zip(two["params"], one["params"]):
        for name in want:
            assert torch.allclose(got[name], want[name], rtol=1e-12, atol=1e-15), name
    assert one["params"][-1]["model.cascade.raw_audience"] != one["params"][0]["model.cascade.raw_audience"]


def test_strategy_and_devices_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="strategy"):
        fit(_module(), kind="cascades", max_steps=1, logger="none", progress=False, work_dir=tmp_path,
            strategy="fsdp")
    with pytest.raises(ConfigError, match="devices"):
        fit(_module(), kind="cascades", max_steps=1, logger="none", progress=False, work_dir=tmp_path, devices=0)
    with pytest.raises(ConfigError, match="one GPU"):
        fit(_module(), kind="cascades", max_steps=1, logger="none", progress=False, work_dir=tmp_path, devices=2,
            device="cuda:1")



def test_sharding_needs_a_module_that_splits_and_an_even_split(tmp_path, capsys):
    """A fit that cannot split its ensemble refuses several processes before any starts; the CLI
    refuses other kinds, a batch that does not divide over the processes, and an executor with
    nothing independent to run, before fitting."""

    class OneProcess(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(3))

    with pytest.raises(ConfigError, match="splits its simulated ensemble"):
        fit(OneProcess(), kind="stance", max_steps=1, logger="none", progress=False, work_dir=tmp_path, devices=2)
    data = tmp_path / "data.csv"
    data.write_text("x\n")
    out = str(tmp_path / "f.json")
    assert main(["calibrate", "stance", "--data", str(data), "--out", out, "--devices", "2"]) == 2
    assert "only with 'cascades'" in capsys.readouterr().err
    assert main(["calibrate", "cascades", "--data", str(data), "--out", out, "--devices", "2", "--batch", "3"]) == 2
    assert "multiple of the fit's processes" in capsys.readouterr().err
    assert main(["calibrate", "cascades", "--data", str(data), "--out", out, "--executor", "ray"]) == 2
    assert "with 'cascades --posterior'" in capsys.readouterr().err


class _Shipping:
    """A stand-in for a remote executor: every task's function and inputs go through pickle (as to a
    Ray worker), and the tasks run in reverse order; results come back in task order."""

    remote = True

    def map(self, fn, tasks, *, shared=(), device="cpu"):
        fn, shared = pickle.loads(pickle.dumps((fn, tuple(shared))))
        done = {i: fn(*shared, pickle.loads(pickle.dumps(task))) for i, task in reversed(list(enumerate(tasks)))}
        return [done[i] for i in range(len(tasks))]

    def close(self) -> None:
        pass


def test_posterior_replicates_through_an_executor_equal_the_in_process_ones():
    """The posterior's seed replicates are independent simulations: through the default, an explicit
    in-process and a shipping executor, the posterior (mode, covariance, noise) is the same bit for bit."""
    from lpm.calibration.cascade_posterior import cascade_posterior
    from lpm.executor import InProcessExecutor

    def posterior(executor):
        module = _module()
        observed = cascade_targets(simulate_cascades(module.world, dict(DEFAULTS, audience=900.0), hours=HOURS,
                                                     batch=3, seed=5), HOURS)
        return cascade_posterior(module, observed, rounds=1, iterations=1, seed_replicates=4, exact_batch=1, seed=1,
                                 executor=executor)

    default, here, shipped = posterior(None), posterior(InProcessExecutor()), posterior(_Shipping())
    for other in (here, shipped):
        assert torch.equal(other.mean, default.mean) and torch.equal(other.covariance, default.covariance)
        assert other.meta["noise_sd"] == default.meta["noise_sd"]
    assert all(sd > 0 for sd in default.meta["noise_sd"]["simulation"])  # the replicates differ: seeded apart

if __name__ == "__main__":  # one rank of the two-process fit (see the module docstring)
    seen = _fit(Path(sys.argv[2]), devices=2)
    if seen["rank"] == 0:
        torch.save(seen, sys.argv[1])
