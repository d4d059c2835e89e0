"""``simulate``: loop a model's step, record observables, checkpoint through time, save and resume."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as _grad_checkpoint

from lpm.errors import ConfigError, NumericalError, StateError
from lpm.graph import Graph
from lpm.io_atomic import atomic_path, file_in_the_way
from lpm.model import Model, StepEvents
from lpm.observables import DEFAULT, Observable
from lpm.relax import Estimator, ScoreFunction, StraightThrough, magic_box
from lpm.rng import CounterRNG
from lpm.state import PopulationState

__all__ = ["simulate", "Trajectory"]

_SAVE_FORMAT = 2  # 2: payload checksum and run fingerprint

Seed = Union[int, Sequence[int], Tensor]


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Recorded observables of a simulation, per step and scenario.

    Shapes:
        times_h: ``(S,)`` hours since the start; ``S = steps + 1`` (the initial state is recorded).
        values: ``{name: (S, B, ...)}``.
        final: the state after the last step.
    """

    times_h: Tensor
    values: dict[str, Tensor]
    final: PopulationState
    dt: float = field(default=1.0)

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.values:
            raise KeyError(f"Expected one of the recorded observables {sorted(self.values)} (got {name!r})")
        return self.values[name]

    def __contains__(self, name: str) -> bool:
        return name in self.values

    @property
    def num_scenarios(self) -> int:
        return self.final.batch_size

    def to_pandas(self):
        """A long table: one row per (scenario, step), one column per observable component.

        Vector observables become ``name[k]`` columns.
        """
        import numpy as np
        import pandas as pd

        steps, batch = self.times_h.numel(), self.num_scenarios
        columns: dict[str, np.ndarray] = {
            "scenario": np.repeat(np.arange(batch), steps),
            "step": np.tile(np.arange(steps), batch),
            "time_h": np.tile(self.times_h.detach().cpu().numpy(), batch),
        }
        for name, value in self.values.items():
            array = value.detach().cpu().double().numpy().reshape(steps, batch, -1)
            array = np.transpose(array, (1, 0, 2)).reshape(batch * steps, -1)
            if array.shape[1] == 1 and value.dim() == 2:
                columns[name] = array[:, 0]
            else:
                for k in range(array.shape[1]):
                    columns[f"{name}[{k}]"] = array[:, k]
        return pd.DataFrame(columns)

    def to_parquet(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_pandas` to Parquet atomically (a temporary file renamed into place)."""
        path = Path(path)
        frame = self.to_pandas()
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return path


def _check_inputs(model: Model, state: PopulationState, graph: Graph, steps: int,
                  generator: Optional[torch.Generator], seed: Optional[Seed],
                  checkpoint_every: Optional[int], save_path, save_every: Optional[int]) -> CounterRNG:
    if not isinstance(model, Model):
        raise ConfigError(f"Expected 'model' to be lpm.Model (got {type(model).__name__})")
    if not isinstance(state, PopulationState):
        raise StateError(f"Expected 'state' to be lpm.PopulationState (got {type(state).__name__})")
    if not isinstance(graph, Graph):
        raise ConfigError(f"Expected 'graph' to be lpm.Graph (got {type(graph).__name__})")
    if graph.num_nodes != state.num_agents:
        raise StateError(f"Expected a state of {graph.num_nodes} agents to match the graph (got {state.num_agents})")
    if graph.device != state.device:
        raise StateError(f"Expected the graph and the state on one device (got {graph.device} and {state.device})")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ConfigError(f"Expected 'steps' to be a non-negative int (got {steps!r})")
    for name, value in (("checkpoint_every", checkpoint_every), ("save_every", save_every)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"Expected '{name}' to be a positive int or None (got {value!r})")
    if save_every is not None and save_path is None:
        raise ConfigError("Expected 'save_path' when 'save_every' is given (got save_path=None)")
    if save_path is not None:
        # checked before any step: a path whose folder cannot exist would fail only at the first snapshot
        blocker = file_in_the_way(save_path)
        if blocker is not None:
            raise ConfigError(f"Expected a writable location for save_path {str(save_path)!r} "
                              f"(got {str(blocker)!r}, a file, where a folder is needed)")
    for name, param in model.named_parameters():
        if param.dtype != state.opinion.dtype:
            raise ConfigError(
                f"Expected model parameter '{name}' of dtype {state.opinion.dtype} like the state "
                f"(got {param.dtype}; call model.to(dtype))"
            )
        if param.device != state.device:
            raise ConfigError(f"Expected model parameter '{name}' on {state.device} (got {param.device})")
    model.check(state)
    if (generator is None) == (seed is None):
        raise ConfigError("Expected exactly one of 'generator' or 'seed' (randomness is always explicit)")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ConfigError(f"Expected 'generator' to be a torch.Generator (got {type(generator).__name__})")
        seed = torch.randint(-(2**63), 2**63 - 1, (state.batch_size,), generator=generator, dtype=torch.int64,
                             device=generator.device)
    rng = CounterRNG.from_seed(seed, state.batch_size, state.device)
    state.validate()
    return rng


def _record(record: Mapping[str, Observable], state: PopulationState, events: StepEvents,
            log_prob: Optional[Tensor]) -> list[Tensor]:
    out = []
    for fn in record.values():
        value = fn(state, events)
        if log_prob is not None:
            value = value * magic_box(log_prob).reshape(-1, *([1] * (value.dim() - 1)))
        out.append(value)
    return out


def _run(model: Model, state: PopulationState, graph: Graph, t0: int, count: int,
         rng: CounterRNG, estimator: Estimator, record: Mapping[str, Observable],
         log_prob: Optional[Tensor]) -> tuple[PopulationState, Optional[Tensor], list[list[Tensor]]]:
    """``count`` steps from step index ``t0``; returns the state, summed log-prob and records."""
    rows = []
    for t in range(t0, t0 + count):
        state, events = model.step(state, graph, t, rng, estimator)
        if log_prob is not None and events.log_prob is not None:
            log_prob = log_prob + events.log_prob
        rows.append(_record(record, state, events, log_prob))
    return state, log_prob, rows


def _run_checkpointed(model, state, graph, t0, count, rng, estimator, record, log_prob):
    """As :func:`_run`, keeping only the chunk's inputs for backward and replaying the chunk there.

    The replay draws the same random numbers because draws are a function of (seed, step).
    """
    n_state = len(state.flat())
    n_record = len(record)

    def chunk(*tensors: Tensor) -> tuple[Tensor, ...]:
        s = PopulationState.from_flat(list(tensors[:n_state]), like=state)
        lp = tensors[n_state] if log_prob is not None else None
        s, lp, rows = _run(model, s, graph, t0, count, rng, estimator, record, lp)
        stacked = [torch.stack([row[k] for row in rows]) for k in range(n_record)]
        return (*s.flat(), *([lp] if lp is not None else []), *stacked)

    inputs = state.flat() + ([log_prob] if log_prob is not None else [])
    outputs = _grad_checkpoint(chunk, *inputs, use_reentrant=False)
    new_state = PopulationState.from_flat(list(outputs[:n_state]), like=state)
    new_log_prob = outputs[n_state] if log_prob is not None else None
    stacked = outputs[n_state + (1 if log_prob is not None else 0):]
    rows = [[stacked[k][i] for k in range(n_record)] for i in range(count)]
    return new_state, new_log_prob, rows


def _guard_finite(state: PopulationState, step: int) -> None:
    name = state.nonfinite()
    if name is not None:
        raise NumericalError(f"Expected a finite '{name}' at step {step} (got NaN or Inf)")


def _hash_tensor(digest, t: Tensor) -> None:
    t = t.detach().cpu().contiguous()
    digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def _hash_tensors(tensors) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        if t is None:
            digest.update(b"none")
        else:
            _hash_tensor(digest, t)
    return digest.hexdigest()


def _describe(value, depth: int = 0) -> Optional[str]:
    """A stable text of a plain configuration value (numbers, strings, dataclasses, lists of them)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    if isinstance(value, Tensor):
        return _hash_tensors([value])
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and depth < 3:
        return type(value).__name__ + "(" + ",".join(
            f"{f.name}={_describe(getattr(value, f.name), depth + 1)}" for f in dataclasses.fields(value)) + ")"
    if isinstance(value, (list, tuple)) and depth < 3:
        return "[" + ",".join(str(_describe(v, depth + 1)) for v in value) + "]"
    return None


def _fingerprint(model: Model, graph: Graph, state: PopulationState) -> dict[str, str]:
    """Hashes of what a resumed run must share with the run that saved: the model (its modules,
    settings, parameters and buffers), the graph and the initial state. Computed once per call."""
    digest = hashlib.sha256()
    for name, module in model.named_modules():
        digest.update(f"{name}:{type(module).__name__}".encode())
        for key in sorted(vars(module)):
            if key.startswith("_") or key == "training":
                continue
            text = _describe(vars(module)[key])
            if text is not None:
                digest.update(f"{key}={text};".encode())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(name.encode())
        _hash_tensor(digest, tensor)
    graph_hash = _hash_tensors([graph.rowptr.long(), graph.col.long(), graph.weight])
    return {"model": digest.hexdigest(), "graph": graph_hash, "initial state": _hash_tensors(state.flat())}


def _payload_checksum(payload: dict) -> str:
    tensors = [torch.tensor(int(payload["step"])), *payload["state"], payload["seeds"],
               *[v for row in payload["rows"] for v in row], payload["log_prob"]]
    return _hash_tensors(tensors)


def _save(path: Path, step: int, state: PopulationState, rng: CounterRNG,
          rows: list[list[Tensor]], log_prob: Optional[Tensor], fingerprint: dict[str, str]) -> None:
    """Write a resumable snapshot atomically: a crash mid-write leaves the previous one intact.

    The snapshot carries a SHA-256 of its tensors (a flipped byte is caught on load) and the
    fingerprint of the run (model, graph, initial state) it belongs to."""
    payload = {
        "format": _SAVE_FORMAT,
        "step": step,
        "state": [t.detach().cpu() for t in state.flat()],
        "seeds": rng.seeds.cpu(),
        "rows": [[v.detach().cpu() for v in row] for row in rows],
        "log_prob": None if log_prob is None else log_prob.detach().cpu(),
        "fingerprint": dict(fingerprint),
    }
    payload["checksum"] = _payload_checksum(payload)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def simulate(
    model: Model,
    state: PopulationState,
    graph: Graph,
    *,
    steps: int,
    record: Optional[Mapping[str, Observable]] = None,
    seed: Optional[Seed] = None,
    generator: Optional[torch.Generator] = None,
    estimator: Estimator = StraightThrough(),
    checkpoint_every: Optional[int] = None,
    save_path: Optional[str | os.PathLike] = None,
    save_every: Optional[int] = None,
    resume: bool = False,
    progress: bool = False,
) -> Trajectory:
    """Run ``steps`` steps of ``model`` from ``state`` on ``graph`` for all ``B`` scenarios at once.

    Args:
        model: the composed dynamics.
        state: initial state (validated here, once).
        graph: follower graph on the state's device.
        steps: number of steps.
        record: observables to record, ``{name: fn(state, events) -> (B, ...)}``;
            :data:`lpm.observables.DEFAULT` if ``None``.
        seed: an int (scenario ``b`` gets an independent seed derived from it and ``b``) or ``B``
            seeds, one per scenario (repeat a seed to give scenarios common random numbers). Every
            draw is a function of (scenario seed, step, agent): see :mod:`lpm.rng`.
        generator: alternatively, a ``torch.Generator`` from which the ``B`` seeds are drawn
            (exactly one of ``seed`` / ``generator``).
        estimator: how discrete events are sampled and differentiated (:mod:`lpm.relax`). With
            :class:`~lpm.relax.ScoreFunction`, recorded observables carry the score-function
            gradient of their expectation (their values are unchanged).
        checkpoint_every: gradient checkpointing through time: keep only every k-th state for
            backward and replay the steps in between (memory ~ steps / k states instead of steps).
        save_path: file for resumable snapshots (state, seeds, records so far, a checksum of these
            tensors and a fingerprint of the model, graph and initial state).
        save_every: snapshot every k steps (and at the end); requires ``save_path``.
        resume: continue from the snapshot at ``save_path`` if one exists. A resumed run gives the
            same trajectory as an uninterrupted one; gradients do not flow across the resume. The
            snapshot must pass its checksum, come from a run with the same seeds, model, graph and
            initial state, and hold a valid state (ranges), else the resume is refused.
        progress: show a progress bar.

    Returns:
        The :class:`Trajectory`, including the initial state at step 0.

    Raises:
        ConfigError, StateError: invalid arguments (checked before any step runs); a snapshot to
            resume from that is corrupted (checksum), out of range, or from another run (seeds,
            model, graph or initial state differ), naming the snapshot and the difference.
        NumericalError: a NaN or Inf in the state at a save point or at the end.

    Warns:
        UserWarning: an intervention or item scheduled at or after the end of the run (a no-op).

    Shapes:
        state: ``opinion (B, N, T)``, ``emotion (B, N, E)``, ``activity (B, N)``;
        each recorded observable ``(steps + 1, B, ...)``.
    """
    record = DEFAULT if record is None else record
    if not isinstance(record, Mapping) or not all(isinstance(k, str) and callable(f) for k, f in record.items()):
        bad = record if not isinstance(record, Mapping) else {k: f for k, f in record.items()
                                                               if not (isinstance(k, str) and callable(f))}
        raise ConfigError(f"Expected record as {{name: fn(state, events)}} with callables (got {bad!r})")
    if isinstance(model, Model) and isinstance(state, PopulationState):
        state = model.init_state(state)  # the components' own state (the cascade's), where missing
    rng = _check_inputs(model, state, graph, steps, generator, seed, checkpoint_every, save_path, save_every)
    for message in model.idle_after(steps * model.dt):
        warnings.warn(message, stacklevel=2)
    scoring = isinstance(estimator, ScoreFunction)
    log_prob = state.opinion.new_zeros(state.batch_size) if scoring else None
    save_path = Path(save_path) if save_path is not None else None

    t = 0
    rows = [_record(record, state, StepEvents(), log_prob)]
    fingerprint = _fingerprint(model, graph, state) if save_path is not None else {}
    if resume and save_path is not None and save_path.exists():
        t, state, rows, log_prob = _load(save_path, steps, state, rng, len(record), fingerprint)

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=t, disable=not progress, unit="step", desc="simulate")
    runner = _run if checkpoint_every is None else _run_checkpointed
    # Without checkpointing or saving, steps still run in chunks so the progress bar moves.
    chunk = checkpoint_every or save_every or max(1, (steps - t) // 100)
    while t < steps:
        count = min(chunk, steps - t)
        if save_every is not None:
            count = min(count, save_every - t % save_every)
        state, log_prob, new_rows = runner(model, state, graph, t, count, rng, estimator, record, log_prob)
        rows.extend(new_rows)
        t += count
        bar.update(count)
        if save_path is not None and save_every is not None and (t % save_every == 0 or t == steps):
            _guard_finite(state, t)
            _save(save_path, t, state, rng, rows, log_prob, fingerprint)
    bar.close()
    _guard_finite(state, t)

    values = {name: torch.stack([row[k] for row in rows]) for k, name in enumerate(record)}
    times = torch.arange(steps + 1, dtype=torch.float64) * model.dt
    return Trajectory(times_h=times, values=values, final=state, dt=model.dt)


def _load(path: Path, steps: int, like: PopulationState, rng: CounterRNG, n_record: int,
          fingerprint: dict[str, str]):
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable snapshot is reported as such, with its path
        raise StateError(f"Expected a readable lpm snapshot at {path} (got {type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != _SAVE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise StateError(f"Expected snapshot format {_SAVE_FORMAT} at {path} (got {found!r})")
    try:
        checksum = _payload_checksum(payload)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise StateError(f"Expected a complete lpm snapshot at {path} (got {type(exc).__name__}: {exc})") from None
    if checksum != payload.get("checksum"):
        raise StateError(f"Expected the snapshot at {path} to match its checksum (got {checksum[:12]}..., stored "
                         f"{str(payload.get('checksum'))[:12]}...: the file is corrupted)")
    stored = payload.get("fingerprint") or {}
    differ = [name for name in fingerprint if stored.get(name) != fingerprint[name]]
    if differ:
        raise ConfigError(f"Expected the snapshot at {path} to come from a run with the same model, graph and initial "
                          f"state (got a different {' and '.join(differ)})")
    step = int(payload["step"])
    if step > steps:
        raise ConfigError(f"Expected the snapshot at {path} to be at most at step {steps} (got step {step})")
    if payload["rows"] and len(payload["rows"][0]) != n_record:
        raise ConfigError(f"Expected a snapshot recording {n_record} observables (got {len(payload['rows'][0])})")
    device, dtype = like.device, like.opinion.dtype
    stored = list(payload["state"])
    expected = len(like.flat())
    if like.cascade is None and len(stored) == expected + 6 and all(t.numel() == 0 for t in stored[5:11]):
        del stored[5:11]  # written before the cascade state was nested: six empty cascade fields
    if len(stored) != expected:
        raise StateError(f"Expected a snapshot of {expected} state tensors at {path} (got {len(stored)})")
    state = PopulationState.from_flat(
        [t.to(device=device, dtype=dtype if t.is_floating_point() else None) for t in stored], like=like
    )
    if state.opinion.shape != like.opinion.shape:
        raise StateError(f"Expected a snapshot of shape {tuple(like.opinion.shape)} (got {tuple(state.opinion.shape)})")
    if not torch.equal(payload["seeds"], rng.seeds.cpu()):
        raise ConfigError(f"Expected the snapshot at {path} to come from a run with the same seeds (they differ)")
    try:
        state.validate()
    except StateError as exc:
        raise StateError(f"Expected a valid state in the snapshot at {path} (got: {exc})") from None
    rows = [[v.to(device) for v in row] for row in payload["rows"]]
    log_prob = payload["log_prob"].to(device=device, dtype=dtype) if payload["log_prob"] is not None else None
    return step, state, rows, log_prob
