"""What every calibration script shares: fitted-parameter files, the Lightning loop with a wall-time
budget, offline wandb logging, checkpoints that resume, and the ``lpm calibrate`` registry.

A calibration is a :class:`CalibrationModule` (a ``LightningModule`` whose ``training_step`` runs
``simulate`` and returns a differentiable loss) fitted by :func:`fit`. Each ``fit_*.py`` module exposes

    calibrate(data: list[Path], out: Path, *, budget_s, device, seed, ...) -> dict
    evaluate(params: Path, data: list[Path], *, device, seed) -> dict[str, float]

which the CLI (``lpm calibrate | evaluate KIND``) calls through :data:`KINDS`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
from torch.utils.data import IterableDataset

from lpm.errors import ConfigError, DataFormatError

__all__ = ["KINDS", "PARAM_SCHEMAS", "OPTIONAL_PARAMS", "split_index", "save_params", "load_params", "check_params", "check_checkpoint", "CalibrationModule", "fit", "FitResult", "atomic_write_json", "STRATEGIES"]

#: ``lpm calibrate KIND`` -> the module implementing it.
KINDS = {
    "cascades": "lpm.calibration.fit_cascades",
    "sentiment": "lpm.calibration.fit_sentiment",
    "stance": "lpm.calibration.fit_stance",
}

_PARAMS_FORMAT = 1

_INF = math.inf
#: Per kind, every fitted parameter's name and its open range ``(low, high)``: the values the fit's
#: constraint maps (sigmoid, softplus, exp, tanh) can produce and the inverse maps accept (a fitted
#: transmissibility of exactly 1 has no logit). A fitted-parameter file must hold exactly these names.
PARAM_SCHEMAS: dict[str, dict[str, tuple[float, float]]] = {
    "cascades": {"transmissibility": (0.0, 1.0), "audience": (0.0, _INF), "audience_spread": (0.0, _INF),
                 "attention": (0.0, 1.0), "attention_spread": (0.0, _INF), "feed_half_life_h": (0.0, _INF),
                 "feed_tail": (1.0, _INF), "resharer_audience": (0.0, _INF), "resharer_audience_spread": (0.0, _INF),
                 "resharer_item_spread": (0.0, _INF), "first_level_audience_ratio": (0.0, _INF),
                 "feed_item_spread": (0.0, _INF), "resharer_half_life_h": (0.0, _INF)},
    "sentiment": {"burst_size": (0.0, _INF), "burst_rise_h": (0.0, _INF), "burst_decay_h": (0.0, _INF),
                  "shock_valence": (-_INF, _INF), "emotion_decay": (0.0, _INF), "coupling": (0.0, _INF),
                  "baseline_negative_share": (0.0, 1.0), "evidence_posts": (0.0, _INF)},
    "stance": {"support_bias": (-_INF, _INF), "deny_bias": (-_INF, _INF), "query_bias": (-_INF, _INF),
               "belief_slope": (0.0, _INF), "arousal_slope": (0.0, _INF), "arousal_decay": (0.0, _INF),
               "coupling": (0.0, _INF), "initial_belief": (-1.0, 1.0), "evidence_rate_true": (0.0, _INF),
               "evidence_rate_false": (0.0, _INF), "evidence_rate_unverified": (0.0, _INF),
               "thread_concentration": (0.0, _INF)},
}
#: Per kind, parameters a file may lack: mechanisms added later (files fitted before them load
#: without; each fit module says how it reads their absence) or optional in the model's world.
OPTIONAL_PARAMS: dict[str, frozenset[str]] = {
    "cascades": frozenset({"resharer_audience", "resharer_audience_spread", "resharer_item_spread",
                           "first_level_audience_ratio", "feed_item_spread", "resharer_half_life_h"}),
    "stance": frozenset({"thread_concentration"}),
    "sentiment": frozenset({"evidence_posts"}),
}


def atomic_write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write JSON atomically through :func:`lpm.io_atomic.atomic_write_text` (unique temporary name,
    fsync, ``os.replace``, umask-respecting mode): a crash never leaves half a file."""
    from lpm.io_atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
    return path


def save_params(path: str | os.PathLike, kind: str, params: Mapping[str, float],
                meta: Optional[Mapping[str, Any]] = None) -> Path:
    """Write fitted parameters ``{name: value}`` (constrained, human-readable values) for ``kind``."""
    bad = {k: v for k, v in params.items() if not (isinstance(v, (int, float)) and math.isfinite(v))}
    if bad:
        raise ConfigError(f"Expected finite parameter values (got {bad})")
    return atomic_write_json(path, {"format": _PARAMS_FORMAT, "kind": kind,
                                    "params": {k: float(v) for k, v in params.items()}, "meta": dict(meta or {})})


def check_params(params: Mapping[str, Any], schema: Mapping[str, tuple[float, float]], where: str,
                 optional: frozenset[str] = frozenset()) -> dict[str, float]:
    """``params`` as floats, checked against ``schema`` (``{name: (low, high)}``, open ranges; every
    value finite): every name present but those in ``optional``, no other name, every value a number
    in its range.

    Raises:
        DataFormatError: naming ``where`` (the file) and the offending key.
    """
    missing = sorted(set(schema) - set(params) - set(optional))
    if missing:
        raise DataFormatError(f"Expected every parameter {sorted(schema)} in {where} (got no {missing})")
    unknown = sorted(set(params) - set(schema))
    if unknown:
        raise DataFormatError(f"Expected only the parameters {sorted(schema)} in {where} (got unknown {unknown})")
    values = {}
    for name, (low, high) in schema.items():
        if name not in params:
            continue
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataFormatError(f"Expected a number for {name!r} in {where} (got {value!r})")
        value = float(value)
        if not math.isfinite(value):
            raise DataFormatError(f"Expected a finite {name!r} in {where} (got {value})")
        if not low < value < high:
            raise DataFormatError(f"Expected {name!r} in ({low}, {high}) in {where} (got {value})")
        values[name] = value
    return values


def load_params(path: str | os.PathLike, kind: Optional[str] = None,
                schema: Optional[Mapping[str, tuple[float, float]]] = None) -> tuple[dict[str, float], dict[str, Any]]:
    """``(params, meta)`` from a file written by :func:`save_params`, validated on load.

    Args:
        path: the fitted-parameter JSON.
        kind: the calibration kind the file must have been fitted for (``None``: any known kind).
        schema: ``{name: (low, high)}`` the parameters must match exactly (open ranges, finite
            values); default :data:`PARAM_SCHEMAS` of the file's kind.

    Raises:
        DataFormatError: unreadable file, wrong format, a file fitted for another kind, a missing or
            unknown parameter, a non-numeric, non-finite or out-of-range value (naming file and key).
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: invalid JSON, and bytes that are not UTF-8 (a binary file)
        raise DataFormatError(f"Expected a fitted-parameter JSON file at {path} ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != _PARAMS_FORMAT or "params" not in payload:
        raise DataFormatError(f"Expected a fitted-parameter file (format {_PARAMS_FORMAT}) at {path} "
                              f"(got keys {sorted(payload) if isinstance(payload, dict) else type(payload).__name__})")
    if kind is not None and payload.get("kind") != kind:
        raise DataFormatError(f"Expected parameters fitted for {kind!r} in {path} (got {payload.get('kind')!r})")
    params, meta = payload["params"], payload.get("meta", {})
    if not isinstance(params, dict):
        raise DataFormatError(f"Expected 'params' to be a mapping in {path} (got {type(params).__name__})")
    if not isinstance(meta, dict):
        raise DataFormatError(f"Expected 'meta' to be a mapping in {path} (got {type(meta).__name__})")
    if schema is None:
        schema = PARAM_SCHEMAS.get(payload.get("kind"))
        if schema is None:
            raise DataFormatError(f"Expected a kind among {sorted(PARAM_SCHEMAS)} in {path} (got {payload.get('kind')!r})")
    return check_params(params, schema, str(path), OPTIONAL_PARAMS.get(payload.get("kind"), frozenset())), dict(meta)


class _Steps(IterableDataset):
    """An endless stream of placeholders: a calibration draws its own simulations (seeded by
    ``global_step``, so a resumed fit replays the same draws), and ``max_steps`` ends the fit."""

    def __iter__(self) -> Iterator[int]:
        return itertools.count()


class CalibrationModule:
    """Mixin contract for a calibration ``LightningModule``.

    Subclasses implement ``loss(seed) -> scalar tensor`` (with gradients to the model's parameters),
    ``fitted_params() -> {name: float}`` and a ``seed`` attribute; the mixin provides the training
    step and the optimiser (Adam on the unconstrained parameters).
    """

    learning_rate: float = 0.05

    def configure_optimizers(self):  # noqa: D401 - Lightning hook
        return torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=self.learning_rate)

    def fitted_params(self) -> dict[str, float]:  # pragma: no cover - contract
        raise NotImplementedError

    def training_step(self, batch, batch_idx):  # noqa: D401 - Lightning hook
        """One optimiser step on ``self.loss(seed)``; the seed follows ``global_step``, so a resumed
        fit replays the same draws. Modules with several loss terms override this."""
        self.params_before_step = self.fitted_params()
        loss = self.loss(seed=self.seed * 1_000_003 + self.global_step)
        # the names every fit logs: train/<loss term>, param/<name>
        self.log("train/loss", loss, prog_bar=True)
        for name, value in self.params_before_step.items():
            self.log(f"param/{name}", value)
        return loss


class SeriesModel:
    """Mixin of the sentiment and stance calibration models: constrained values as floats, and the
    follower graph moved to a device once. The model defines ``values()`` (``{name: 0-dim
    tensor}``), ``graph`` and ``_graphs`` (a dict)."""

    def fitted_params(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.values().items()}

    def graph_on(self, device: torch.device):
        key = str(device)
        if key not in self._graphs:
            self._graphs[key] = self.graph.to(device)
        return self._graphs[key]


class _Budget:
    """Lightning callback: keep and write the best parameters so far, and the fit's history.

    The budget itself is Lightning's ``Trainer(max_time=...)`` (its ``Timer`` also travels in the
    checkpoint). Not ``ModelCheckpoint(monitor=...)`` for the best parameters: the loss of a step is
    measured at the parameters *before* its optimiser step, and a checkpoint taken then holds those
    after it, one step off."""

    def __new__(cls, *args, **kwargs):
        from lightning.pytorch.callbacks import Callback

        class Budget(Callback):
            def __init__(self, out: Optional[Path], kind: str, meta: dict) -> None:
                self.out, self.kind, self.meta = out, kind, meta
                self.start = time.perf_counter()
                self.best = math.inf
                self.best_params: dict[str, float] = {}
                self.history: list[tuple[float, int, float]] = []  # (wall s, step, loss)
                self.iterates: list[dict[str, float]] = []

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
                loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
                value = float(loss.detach())
                elapsed = time.perf_counter() - self.start
                self.history.append((elapsed, trainer.global_step, value))
                self.iterates.append(dict(module.params_before_step))
                # the loss was measured at the parameters before this optimiser step
                if math.isfinite(value) and value < self.best:
                    self.best, self.best_params = value, dict(module.params_before_step)
                    if self.out is not None and trainer.is_global_zero:  # one writer under DDP
                        save_params(self.out, self.kind, self.best_params,
                                    {**self.meta, "loss": value, "step": trainer.global_step, "wall_s": elapsed})

            # Stored in every checkpoint, so a resumed fit keeps its best-so-far parameters, its
            # history and the budget already spent (without them it restarted at loss = inf and
            # could end worse than an uninterrupted run).
            def state_dict(self) -> dict:
                return {"best": self.best, "best_params": dict(self.best_params), "history": list(self.history),
                        "iterates": list(self.iterates), "elapsed": time.perf_counter() - self.start}

            def load_state_dict(self, state: dict) -> None:
                self.best, self.best_params = float(state["best"]), dict(state["best_params"])
                self.history = [tuple(row) for row in state["history"]]
                self.iterates = [dict(row) for row in state["iterates"]]
                self.start = time.perf_counter() - float(state["elapsed"])

        return Budget(*args, **kwargs)


class FitResult(dict):
    """``{"params", "loss", "history": [(wall_s, step, loss)], "steps", "averaged", "global_rank"}`` of a
    finished fit.

    ``params`` are those of the lowest (single-simulation, hence noisy) training loss; ``averaged``
    is the mean of the last fifth of the iterates (Polyak-Ruppert averaging), the better estimate
    when the optimiser has settled and only sampling noise moves it. ``global_rank`` is this process's
    rank in a multi-process fit (0 in one process): every rank returns the same result, and only rank
    0 should write files or print.
    """


def fit(module, *, kind: str, max_steps: int, budget_s: Optional[float] = None, out: Optional[Path] = None,
        work_dir: Optional[Path] = None, resume: bool = False, logger: str = "wandb", device: str = "cpu",
        progress: bool = True, meta: Optional[Mapping[str, Any]] = None,
        gradient_clip: Optional[float] = 50.0, devices: int = 1, num_nodes: int = 1, strategy: str = "auto",
        callbacks: Sequence[Any] = ()) -> FitResult:
    """Fit ``module`` by gradient descent under a wall-time budget.

    Args:
        module: a ``LightningModule`` with the :class:`CalibrationModule` contract; it must set
            ``module.params_before_step`` (``{name: float}``) in ``training_step``.
        kind: calibration kind (written into the parameter file).
        max_steps: optimiser steps at most.
        budget_s: wall-time budget in seconds (``None``: none); the best parameters so far are in
            ``out`` whenever it runs out.
        out: fitted-parameter JSON, rewritten at every improvement.
        work_dir: checkpoints (``last.ckpt``, every step) and logs; ``resume=True`` continues from
            ``work_dir/checkpoints/last.ckpt`` when it exists (checked first: :func:`check_checkpoint`).
        logger: ``"wandb"`` (offline unless ``WANDB_MODE`` says otherwise), ``"csv"`` or ``"none"``.
        device: ``"cpu"`` or ``"cuda"``.
        gradient_clip: clip the gradient's norm to this (``None``: no clipping). Backpropagation
            through a near-critical cascade multiplies Jacobians over hundreds of steps, and the
            gradient can explode by orders of magnitude where the spread is strong; the default only
            cuts such explosions (near a fit's optimum the norms are a few units: clipping there
            would move where the noisy updates balance).

        devices, num_nodes, strategy: processes per node, nodes, and Lightning's strategy
            (:data:`STRATEGIES`). ``"ddp"`` (the default with more than one process) runs one process
            per device (CPU processes with ``device="cpu"``, over gloo; GPUs over NCCL) on each node;
            the module must split its simulated ensemble across them (``shards_ensemble``, e.g.
            :class:`~lpm.calibration.fit_cascades.CascadeCalibration`), so that every rank computes
            the single-process loss and DDP all-reduces the gradients. Lightning starts the other
            local processes by re-running this program (``LOCAL_RANK=1.. python ...``), or joins
            processes started by ``torchrun`` / SLURM (multi-node). See docs/concepts/distributed.md.
        callbacks: more Lightning callbacks (e.g. to record gradients).

    Raises:
        DataFormatError: ``resume`` and the checkpoint is unreadable or from another calibration.
        ConfigError: a bad strategy, device count or node count, or several processes for a module
            that cannot split its ensemble.
    """
    from datetime import timedelta

    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    trainer_strategy = _strategy(module, devices, num_nodes, strategy)
    if ":" in str(device) and devices * num_nodes > 1:  # Lightning takes GPUs 0..devices-1 on every node
        raise ConfigError(f"Expected device 'cuda' (GPUs 0..{devices - 1}) for a fit on {devices} devices "
                          f"(got {device!r}, one GPU)")
    # No validation_step: held-out metrics come from `lpm evaluate/check` on exact simulations after
    # the fit; selecting the kept parameters on held-out loss would spend the test split on model selection.
    work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix=f"lpm-{kind}-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    budget = _Budget(Path(out) if out is not None else None, kind, dict(meta or {}))
    checkpoints = ModelCheckpoint(dirpath=work_dir / "checkpoints", save_last=True, every_n_train_steps=1,
                                  save_top_k=0)
    if logger == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")  # no account needed unless a user turns it on
        os.environ.setdefault("WANDB_SILENT", "true")
        from lightning.pytorch.loggers import WandbLogger

        run_logger = WandbLogger(project="lpm", name=f"calibrate-{kind}", save_dir=str(work_dir),
                                 offline=os.environ["WANDB_MODE"] == "offline")
    elif logger == "csv":
        from lightning.pytorch.loggers import CSVLogger

        run_logger = CSVLogger(str(work_dir), name=kind)
    elif logger == "none":
        run_logger = False
    else:
        raise ConfigError(f"Expected logger 'wandb', 'csv' or 'none' (got {logger!r})")
    if run_logger:  # the run's configuration, so that a logged fit says how it was made
        run_logger.log_hyperparams({"kind": kind, "max_steps": max_steps, "budget_s": budget_s, "device": device,
                                    "gradient_clip": gradient_clip, "module": type(module).__name__,
                                    "learning_rate": getattr(module, "learning_rate", None), **dict(meta or {})})
    accelerator = "gpu" if str(device).startswith("cuda") else "cpu"
    # max_time: stop after the step in which the budget runs out; min_steps=1: at least one step,
    # so that there are parameters to write even when the budget is spent before the first;
    # min_epochs=0, else min_steps implies one epoch, which the endless step stream never ends
    max_time = timedelta(seconds=budget_s) if budget_s is not None else None
    trainer = pl.Trainer(max_steps=max_steps, max_epochs=-1, max_time=max_time, min_steps=1, min_epochs=0,
                         accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                         strategy=trainer_strategy,
                         logger=run_logger, callbacks=[budget, checkpoints, *callbacks], enable_progress_bar=progress,
                         enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
                         gradient_clip_val=gradient_clip, gradient_clip_algorithm="norm",
                         default_root_dir=str(work_dir))
    last = work_dir / "checkpoints" / "last.ckpt"
    if resume and last.exists():
        check_checkpoint(last, module)
    loader = torch.utils.data.DataLoader(_Steps(), batch_size=None)
    trainer.fit(module, train_dataloaders=loader, ckpt_path=str(last) if resume and last.exists() else None)
    if run_logger and hasattr(run_logger, "experiment") and logger == "wandb":
        run_logger.experiment.finish()
    tail = budget.iterates[-max(1, len(budget.iterates) // 5):] or [module.fitted_params()]
    averaged = {name: sum(it[name] for it in tail) / len(tail) for name in tail[0]}
    return FitResult(params=budget.best_params or module.fitted_params(), loss=budget.best,
                     history=budget.history, steps=trainer.global_step, averaged=averaged,
                     global_rank=trainer.global_rank)


#: ``fit(strategy=...)`` values: one process (``"auto"``), or Lightning's DDP over ``devices x num_nodes``.
STRATEGIES = ("auto", "ddp")


def _strategy(module, devices: int, num_nodes: int, strategy: str):
    """Lightning's strategy for ``devices x num_nodes`` processes, checked against what ``module`` can do."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"Expected a strategy among {STRATEGIES} (got {strategy!r})")
    for name, value in (("devices", devices), ("num_nodes", num_nodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"Expected {name} to be an integer >= 1 (got {value!r})")
    if devices * num_nodes == 1 and strategy == "auto":
        return "auto"
    if not getattr(module, "shards_ensemble", False):
        raise ConfigError(f"Expected a fit that splits its simulated ensemble across processes for {devices} "
                          f"device(s) x {num_nodes} node(s) (got {type(module).__name__}, which fits in one "
                          f"process only; use devices=1)")
    from lightning.pytorch.strategies import DDPStrategy

    # The subprocess launcher (not ddp_spawn): the fit's callbacks and results stay in the processes
    # that made them, and a process started by torchrun or SLURM joins as it is. The backend follows
    # the accelerator: gloo on CPUs, NCCL on GPUs.
    return DDPStrategy()


_RESUME_HINT = "delete it, or run without --resume to start the fit over"


def check_checkpoint(path: Path, module) -> None:
    """Refuse a checkpoint a resumed fit cannot continue from, naming the file and what to do.

    Only the last checkpoint is kept (Lightning writes it atomically, so a killed fit leaves the
    previous one whole): a truncated or corrupted one comes from outside the fit (a full disk, a
    copy cut short), and there is no earlier one to fall back to. Resuming silently from scratch
    would hide the loss of the steps already paid for, so this raises instead.

    Raises:
        DataFormatError: the file is not a readable checkpoint, lacks the training state, or holds
            parameters of another module (another kind, or another configuration of it).
    """
    try:
        # weights_only=False as Lightning itself loads it: the file is this fit's own work.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncation surfaces as RuntimeError, EOFError, UnpicklingError...
        raise DataFormatError(f"Expected a readable Lightning checkpoint at {path} to resume from (got "
                              f"{type(exc).__name__}: {str(exc)[:160]}); {_RESUME_HINT}") from exc
    needed = ("state_dict", "optimizer_states", "loops", "global_step")
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in needed):
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise DataFormatError(f"Expected a Lightning checkpoint with {list(needed)} at {path} (got {found}); "
                              f"{_RESUME_HINT}")
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    stored = checkpoint["state_dict"]
    found = {k: tuple(v.shape) for k, v in stored.items() if isinstance(v, torch.Tensor)} if isinstance(stored, dict) else {}
    if found != expected:
        diff = sorted(set(expected) ^ set(found)) or sorted(k for k in expected if expected[k] != found[k])
        raise DataFormatError(f"Expected a checkpoint of this fit's parameters at {path} (got another model's: "
                              f"differs in {diff[:5]}); {_RESUME_HINT}")


def split_index(ids: "list[str] | tuple[str, ...]", part: str, *, holdout: float = 0.2, seed: int = 0) -> list[int]:
    """Indices of the ``part`` (``"train"``, ``"test"`` or ``"all"``) of a deterministic hold-out split.

    A unit is held out when a hash of ``(seed, id)`` falls below ``holdout``: the split depends only
    on the ids, so it is the same in every process and for every subset of the data, and about a
    ``holdout`` share of units (cascades, threads, events) is never seen by a fit on ``"train"``.
    """
    import hashlib

    if part not in ("train", "test", "all"):
        raise ConfigError(f"Expected split 'train', 'test' or 'all' (got {part!r})")
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"Expected a hold-out share in (0, 1) (got {holdout})")
    if part == "all":
        return list(range(len(ids)))
    keep = []
    for i, unit in enumerate(ids):
        digest = hashlib.sha256(f"{seed}:{unit}".encode()).digest()
        held_out = int.from_bytes(digest[:8], "big") / 2.0**64 < holdout
        if held_out == (part == "test"):
            keep.append(i)
    return keep


def apply_fitted(model, path: str | os.PathLike) -> tuple[str, list[str], list[str]]:
    """Apply a fitted-parameter file to a scenario's model: ``(kind, applied, not applicable)``.

    Cascade fits (``lpm calibrate cascades``) set the scenario's cascade parameters; sentiment and
    stance fits are fitted on their own calibration models, whose parameters have no one-to-one
    counterpart in the scenarios, so they are refused rather than half-applied.
    """
    import importlib

    try:
        kind = json.loads(Path(path).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None  # load_params names the problem
    if kind is not None and kind != "cascades":
        raise ConfigError(f"Expected parameters fitted by 'lpm calibrate cascades' for a scenario (got kind {kind!r} in {path})")
    params, meta = load_params(path, "cascades")
    fits = importlib.import_module(KINDS["cascades"])
    # the fit's reading interval goes with its parameters: attention is a share of one reading
    applied = fits.apply_params(model, params, reading_interval_h=fits.world_from_meta(meta).reading_interval_h)
    if not applied:
        raise ConfigError(f"Expected the scenario's cascade to have at least one of {sorted(params)} (got none)")
    return kind, applied, sorted(set(params) - set(applied))


def config_from_meta(meta: Mapping[str, Any], config_class: type, convert: Optional[Mapping[str, Any]] = None):
    """The fixed config a fit stored in its parameter file's ``meta["config"]`` (unknown keys ignored;
    ``convert`` maps a field name to a function undoing JSON's changes, e.g. lists back to tuples)."""
    import dataclasses

    stored = meta.get("config", {})
    if not isinstance(stored, Mapping):
        raise DataFormatError(f"Expected a config mapping in the fitted file's meta (got {type(stored).__name__})")
    names = {f.name for f in dataclasses.fields(config_class)}
    convert = convert or {}
    return config_class(**{k: convert.get(k, lambda v: v)(v) for k, v in stored.items() if k in names})
