"""How a run was made: provenance records, run folders never silently overwritten, offline wandb records.

Every ``lpm run`` / ``lpm sweep`` folder holds, beside its outputs, ``config.yaml`` (the resolved
configuration, which ``--config`` reads back to repeat the run) and a ``summary.json`` whose
``provenance`` names the lpm, Python and torch versions, the command line, the seeds and the time.
A folder that holds a finished run (its summary is there and no ``INCOMPLETE-*`` marker, see
:func:`lpm.io_atomic.marked_incomplete`) is not written again unless asked (``--overwrite``); a
folder left incomplete by a crash may be, since what it holds is not one run anyway.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import shlex
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from lpm.errors import ConfigError

__all__ = ["lpm_version", "provenance", "check_run_folder", "record_wandb", "to_yaml", "LOGGERS"]

log = logging.getLogger(__name__)

#: Where a run is recorded besides its folder: ``wandb`` (offline unless ``WANDB_MODE`` says
#: otherwise, as calibration fits) or ``none``.
LOGGERS = ("wandb", "none")


def lpm_version() -> str:
    """The running lpm's version (``lpm.__version__``)."""
    from lpm import __version__

    return __version__


def to_yaml(values: Mapping[str, Any]) -> str:
    """A configuration as the YAML that ``--config`` reads back (and ``--print-config`` prints)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(dict(values)))


def provenance(*, config: Optional[Mapping[str, Any]], seeds: Sequence[int],
               argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """What ``summary.json`` records about how a run was made.

    Args:
        config: the resolved configuration (:class:`lpm.config.Resolved` ``.values``), or ``None``.
        seeds: the seeds simulated (one per scenario of a plain run; per arm of a counterfactual).
        argv: the command's arguments after ``lpm`` (``None``: not run from the command line).
    """
    import torch

    return {
        "lpm_version": lpm_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": None if argv is None else shlex.join(["lpm", *argv]),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": [int(s) for s in seeds],
        "config": None if config is None else dict(config),
    }


def check_run_folder(folder: str | os.PathLike, *, overwrite: bool, summary: str = "summary.json") -> None:
    """Refuse to write into ``folder`` when it holds a finished run, unless ``overwrite``.

    Finished: ``summary`` (written last) is there and no ``INCOMPLETE-*`` marker is. Called before
    anything is simulated, so a clash costs nothing.

    Raises:
        ConfigError: the folder holds a finished run and ``overwrite`` is false.
    """
    folder = Path(folder)
    if overwrite or not (folder / summary).is_file() or any(folder.glob("INCOMPLETE-*")):
        return
    raise ConfigError(f"Expected an output folder without a finished run, or --overwrite (got {str(folder)!r}, "
                      f"which holds one: {summary} is there); pass --overwrite to replace it or --out to write "
                      f"elsewhere")


def record_wandb(folder: str | os.PathLike, *, kind: str, name: str, config: Mapping[str, Any],
                 metrics: Mapping[str, float], tables: Mapping[str, Any]) -> Path:
    """Record a finished run or sweep as a wandb run under ``folder/wandb`` and return its folder.

    Offline unless ``WANDB_MODE`` says otherwise (no account needed; ``wandb sync`` uploads it
    later), like calibration fits. ``config`` becomes the run's config, ``metrics`` its summary and
    each of ``tables`` (pandas DataFrames) a ``wandb.Table``.
    """
    import wandb

    mode = os.environ.get("WANDB_MODE", "offline")
    run = wandb.init(project="lpm", name=f"{kind}-{name}", job_type=kind, dir=str(folder), mode=mode,
                     config=dict(config), settings=wandb.Settings(console="off", silent=True))
    try:
        run.summary.update({key: float(value) for key, value in metrics.items()})
        run.log({key: wandb.Table(dataframe=frame) for key, frame in tables.items()})
    finally:
        run.finish()
    where = Path(run.dir).parent
    log.info("recorded in wandb (%s): %s", mode, where)
    return where
