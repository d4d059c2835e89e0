"""kill -9 at random points of ``lpm calibrate`` and of ``simulate``, then resume: the same result as a run
that was never interrupted."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _kill_after_writes(process: subprocess.Popen, watched: Path, writes: int, rng: random.Random,
                       within_s: float = 0.3) -> bool:
    """SIGKILL ``process`` a random ``0..within_s`` seconds after ``watched`` has been (re)written
    ``writes`` times; ``False`` when it finished first."""
    seen, last = 0, None
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        try:
            stamp = watched.stat().st_mtime_ns, watched.stat().st_ino
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != last:
            seen, last = seen + 1, stamp
            if seen >= writes:
                time.sleep(rng.uniform(0.0, within_s))
                process.send_signal(signal.SIGKILL)
                process.wait(30)
                return process.returncode == -signal.SIGKILL
        time.sleep(0.005)
    process.wait(240)
    return False


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err.decode()[-2000:]


# -- calibrate ---------------------------------------------------------------------------------------------

def _calibrate_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "lpm", "calibrate", "cascades", "--data", str(data), "--out", str(out), "--max-steps", "4",
            "--agents", "150", "--items", "2", "--logger", "none", "--quiet", "--split", "all", *extra]


def _fitted(path: Path) -> dict:
    payload = json.loads(path.read_text())
    del payload["meta"]["wall_s"]  # the wall time of the best step: the only field a restart may change
    return payload


@pytest.mark.slow
def test_kill_9_of_calibrate_at_random_points_then_resume_writes_the_same_file(tmp_path):
    from lpm.calibration.fit_cascades import DEFAULTS, CascadeWorld, simulate_cascades
    from lpm.data.rumdetect import write_rumdetect

    table = simulate_cascades(CascadeWorld(agents=400, items=4), dict(DEFAULTS, audience=1200.0), hours=[1.0, 72.0],
                              batch=8, seed=9)
    data = write_rumdetect(table, tmp_path / "data")
    straight = _start(_calibrate_args(data, tmp_path / "straight.json"))
    # Interrupted twice at random points, resumed after each: 3 processes in all.
    out, work = tmp_path / "killed.json", tmp_path / "work"
    checkpoint = work / "checkpoints" / "last.ckpt"
    rng = random.Random(15)
    kills = 0
    for writes in sorted(rng.sample(range(1, 4), 2)):
        process = _start(_calibrate_args(data, out, "--work-dir", str(work), "--resume"))
        already = torch.load(checkpoint, weights_only=False)["global_step"] if checkpoint.exists() else 0
        kills += _kill_after_writes(process, checkpoint, max(1, writes - already), rng)
    _finish(_start(_calibrate_args(data, out, "--work-dir", str(work), "--resume")))
    _finish(straight)
    assert kills >= 1  # at least one interruption landed before the fit ended
    assert _fitted(out) == _fitted(tmp_path / "straight.json")


# -- simulate ----------------------------------------------------------------------------------------------

STEPS, EVERY = 60, 5


def simulation():
    """``(model, state, graph)`` of the run the subprocess starts and the test resumes."""
    import lpm
    from lpm.dynamics import BoundedConfidence, EmotionContagion, Hawkes
    from lpm.testing import small_graph
    from tests.helpers import make_state

    model = lpm.Model(opinion=BoundedConfidence(eps=0.5, rate=0.6, tau=0.1), emotion=EmotionContagion(0.8, 0.2),
                      activity=Hawkes(mu=0.6, alpha=0.8, beta=1.5), dt=0.25).double()
    return model, make_state(400, batch=2, seed=1), small_graph(400, 6.0, seed=1)


_SIMULATE = f"""
import sys, torch, lpm
from tests.reliability.test_kill_resume import simulation
model, state, graph = simulation()
with torch.no_grad():
    lpm.simulate(model, state, graph, steps={STEPS}, seed=3, save_path=sys.argv[1], save_every={EVERY}, resume=True)
"""


def test_kill_9_of_simulate_at_random_points_then_resume_is_bit_for_bit(tmp_path):
    import lpm

    snapshot = tmp_path / "run.pt"
    rng = random.Random(16)
    kills = 0
    for writes in (rng.randint(1, 4), rng.randint(1, 4)):  # each process is killed after its own writes
        process = _start(["-c", _SIMULATE, str(snapshot)])
        kills += _kill_after_writes(process, snapshot, writes + (snapshot.exists()), rng, within_s=0.05)
    assert kills == 2 and snapshot.exists()
    model, state, graph = simulation()
    with torch.no_grad():
        resumed = lpm.simulate(model, state, graph, steps=STEPS, seed=3, save_path=snapshot, save_every=EVERY,
                               resume=True)
        reference = lpm.simulate(model, state, graph, steps=STEPS, seed=3)
    for name in reference.values:
        torch.testing.assert_close(resumed[name], reference[name], atol=0, rtol=0)
