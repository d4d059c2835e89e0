"""Where independent simulations run: in this process (the default) or on the workers of a Ray cluster.

The entry points that launch many independent simulations (:func:`lpm.counterfactual` and with it
``lpm run`` and ``lpm sweep``, ``lpm forecast``'s ensemble, :func:`lpm.optimize.evaluate_plans` and
the optimiser's exact validation) cut their work into *batches of whole scenarios* (e.g. arms x
seeds, or a chunk of an ensemble) and hand the batches to an :class:`Executor`, which runs one
function over them and returns the results in order. The cut is made by the entry point from its
own arguments (``chunk``, the CPU batch size), never by the executor, and every draw of a scenario
is keyed by its own seed (:mod:`lpm.rng`), so an executor decides only *where* each batch runs:
the results are the ones the in-process run gives, bit for bit on the CPU.

* :class:`InProcessExecutor` (the default) runs the batches one after the other, here.
* :class:`RayExecutor` sends each batch to a Ray task (``pip install 'lpm[ray]'``): on a local Ray
  instance it starts, on a cluster already running (``address="auto"``), or on a remote head
  (``address="HOST:PORT"``). The inputs every batch shares (model, population, graph, arms) are put
  in Ray's object store once and read by every worker; each batch's own arguments go with its
  task. A task whose worker process dies is run again (``max_retries``); a task that raises is not
  (a simulation that fails fails the same way twice), and its error is raised here.

What goes to a worker is pickled (cloudpickle): the model, its interventions and the recorded
observables travel by value where they are closures and by reference where they are functions of an
installed module, so every node needs the same ``lpm`` (and torch) installed as the driver.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Callable, Optional, Protocol, Sequence, TypeVar, runtime_checkable

import torch

from lpm.errors import ConfigError, DependencyError

__all__ = ["Executor", "InProcessExecutor", "RayExecutor", "make_executor", "resolve_executor", "task_device",
           "add_executor_options", "EXECUTORS", "RAY_INSTALL"]

#: Names ``--executor`` accepts.
EXECUTORS = ("inprocess", "ray")
#: How to install the Ray extra, as error messages say it.
RAY_INSTALL = "pip install 'lpm[ray]'"

R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Runs one function over independent tasks and returns the results in task order.

    ``map(fn, tasks, shared=(a, b), device=d)`` returns ``[fn(a, b, task) for task in tasks]``:
    ``shared`` holds what every task reads (sent once), ``device`` where the tasks compute (a remote
    executor asks for a GPU per task when it is ``cuda``). ``remote`` says whether tasks leave this
    process (then ``fn`` and its arguments must pickle, and autograd graphs cannot come back).
    """

    remote: bool

    def map(self, fn: Callable[..., R], tasks: Sequence[Any], *, shared: Sequence[Any] = (),
            device: str | torch.device = "cpu") -> list[R]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Every task here, one after the other (the default executor)."""

    remote = False

    def map(self, fn: Callable[..., R], tasks: Sequence[Any], *, shared: Sequence[Any] = (),
            device: str | torch.device = "cpu") -> list[R]:
        """``[fn(*shared, task) for task in tasks]``."""
        return [fn(*shared, task) for task in tasks]

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> "InProcessExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "InProcessExecutor()"


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise DependencyError(f"Expected the 'ray' package for the Ray executor (got {type(exc).__name__}: {exc}); "
                              f"install it with: {RAY_INSTALL}") from None
    return ray


def _run_task(fn: Callable[..., R], threads: int, *args: Any) -> R:
    """A Ray task: ``fn(*args)`` with as many torch threads as the task holds CPUs."""
    # Ray sets OMP_NUM_THREADS from the task's CPUs, but torch may have read another value when it
    # was first imported in this (reused) worker process
    torch.set_num_threads(threads)
    return fn(*args)


def _check_address(address: Optional[str]) -> Optional[str]:
    if address is None:
        return None
    if not isinstance(address, str) or not address.strip():
        raise ConfigError(f"Expected a Ray address: None, 'auto', 'HOST:PORT' or 'ray://HOST:PORT' (got {address!r})")
    address = address.strip()
    if address == "auto":
        return address
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"Expected a Ray address: None, 'auto', 'HOST:PORT' or 'ray://HOST:PORT' (got {address!r})")
    return address


class RayExecutor:
    """Each task a Ray task, on a local Ray instance or a cluster.

    Args:
        address: ``None`` joins the Ray instance this process already has, else the cluster in
            ``$RAY_ADDRESS``, else starts a local one; ``"auto"`` joins the cluster started on this
            machine with ``ray start --head``; ``"HOST:PORT"`` the cluster whose head is there (the
            GCS port ``ray start --head`` prints, 6379 by default); ``"ray://HOST:PORT"`` through Ray
            Client (port 10001).
        num_cpus: CPUs each task holds (and torch threads it computes with).
        num_gpus_per_task: GPUs each task holds; default one when the work runs on ``cuda``, none
            otherwise. Ray makes a task's GPUs its only visible ones, so it computes on ``cuda:0``.
        max_retries: times a task is run again after its worker process died (not after it raised).
        local_cpus: CPUs of a local instance this executor starts (default: all of the machine's).

    Raises:
        DependencyError: Ray is not installed (``pip install 'lpm[ray]'``).
        ConfigError: an address that is not ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``, or counts
            out of range.
    """

    remote = True

    def __init__(self, address: Optional[str] = None, *, num_cpus: int = 1, num_gpus_per_task: Optional[float] = None,
                 max_retries: int = 3, local_cpus: Optional[int] = None) -> None:
        _import_ray()  # fail here, not at the first batch
        self.address = _check_address(address)
        for name, value, low in (("num_cpus", num_cpus, 1), ("max_retries", max_retries, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"Expected {name} to be an int >= {low} (got {value!r})")
        if local_cpus is not None and (isinstance(local_cpus, bool) or not isinstance(local_cpus, int) or local_cpus < 1):
            raise ConfigError(f"Expected local_cpus to be None or an int >= 1 (got {local_cpus!r})")
        if num_gpus_per_task is not None and (isinstance(num_gpus_per_task, bool)
                                              or not isinstance(num_gpus_per_task, (int, float))
                                              or not num_gpus_per_task >= 0):
            raise ConfigError(f"Expected num_gpus_per_task to be None or a number >= 0 (got {num_gpus_per_task!r})")
        self.num_cpus, self.num_gpus_per_task = num_cpus, num_gpus_per_task
        self.max_retries, self.local_cpus = max_retries, local_cpus
        self._started = False  # whether this executor started the Ray instance (and so shuts it down)

    def _ray(self):
        ray = _import_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                       "log_to_driver": False}
            if self.address is not None:
                options["address"] = self.address
            elif not os.environ.get("RAY_ADDRESS"):
                options["num_cpus"] = self.local_cpus
            ray.init(**options)
            self._started = True
        return ray

    def map(self, fn: Callable[..., R], tasks: Sequence[Any], *, shared: Sequence[Any] = (),
            device: str | torch.device = "cpu") -> list[R]:
        """``[fn(*shared, task) for task in tasks]``, each call a Ray task; ``shared`` is put in the
        object store once. Raises what a task raised (Ray's error is an instance of its type)."""
        tasks = list(tasks)
        if not tasks:
            return []
        ray = self._ray()
        gpus = self.num_gpus_per_task
        if gpus is None:
            gpus = 1 if torch.device(device).type == "cuda" else 0
        remote = ray.remote(_run_task).options(num_cpus=self.num_cpus, num_gpus=gpus, max_retries=self.max_retries,
                                               retry_exceptions=False)
        refs = [ray.put(value) for value in shared]
        return ray.get([remote.remote(fn, self.num_cpus, *refs, task) for task in tasks])

    def close(self) -> None:
        """Shut down the Ray instance if this executor started it (a joined cluster stays up)."""
        if self._started:
            _import_ray().shutdown()
            self._started = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus}, "
                f"num_gpus_per_task={self.num_gpus_per_task}, max_retries={self.max_retries})")


def resolve_executor(executor: Optional[Executor]) -> Executor:
    """``executor``, or an :class:`InProcessExecutor` for ``None``.

    Raises:
        ConfigError: something that is not an executor (no ``map`` and ``remote``).
    """
    if executor is None:
        return InProcessExecutor()
    if not (callable(getattr(executor, "map", None)) and isinstance(getattr(executor, "remote", None), bool)):
        raise ConfigError(f"Expected an executor (InProcessExecutor, RayExecutor or one with map() and remote; "
                          f"got {type(executor).__name__})")
    return executor


def task_device(executor: Executor, device: str | torch.device) -> torch.device:
    """The device a task computes on: a remote task sees only the GPU Ray gave it, as ``cuda:0``."""
    device = torch.device(device)
    return torch.device("cuda", 0) if executor.remote and device.type == "cuda" else device


def make_executor(name: Optional[str] = "inprocess", address: Optional[str] = None) -> Executor:
    """The executor ``--executor NAME [--address A]`` asks for.

    Raises:
        ConfigError: an unknown name, or an address without ``ray``.
        DependencyError: ``ray`` without Ray installed.
    """
    name = name or "inprocess"
    if name not in EXECUTORS:
        raise ConfigError(f"Expected an executor among {list(EXECUTORS)} (got {name!r})")
    if name == "inprocess":
        if address is not None:
            raise ConfigError(f"Expected --executor ray with --address (got --address {address} without it)")
        return InProcessExecutor()
    return RayExecutor(address)


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--address`` on a command that launches independent simulations."""
    parser.add_argument("--executor", choices=EXECUTORS, default="inprocess",
                        help="where the independent batches run: here (default) or on Ray workers "
                             f"({RAY_INSTALL}); the numbers are the same")
    parser.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                        help="with --executor ray: the cluster to join (auto: the one `ray start` runs here; "
                             "default: $RAY_ADDRESS, else a local Ray instance)")
