"""``lpm bench cpu|gpu``: the default model's step against the memory floor (BENCHMARKS.md 2, 2b).

For each number of agents N, on one device: the default scenario's model (biased-assimilation
opinions, second-order emotion contagion, Hawkes activity; ``lpm.scenarios.default``) on its
Holme-Kim graph (m = 5, triad closure 0.3), built on that device. Timed, alternately in one process
so that a loaded machine slows every path alike, with medians over repeats:

* one step (``Model.step``, no gradient) and one step plus backward (the gradient of the next
  state's sum reaches every parameter), for each path: ``reference`` (only the plain-torch
  references registered for the device) and ``fused`` (what lpm registers there: the CPU fast
  path; on CUDA the fused Triton kernels, registered for the bench although users opt in to them);
* a CSR sparse matrix-vector product over the same graph (``torch.sparse_csr_tensor @ x``), the
  least any neighbour aggregation reads;
* the fixed cost of a ``simulate`` call (``steps=0``: checks, validation, initial records);
* on the CPU, each also in process CPU time (the ratios then leave out time other processes held
  the cores);
* the memory bandwidth (a large copy, bytes read + written) and from it the step's floor: each of
  the step's three aggregations reads the CSR arrays and its d values per agent and writes d
  values, ``(N + 1) * 4 + E * 4 + 2 * N * d * 4`` bytes (d = 1 activity, 1 opinion, 2 emotion).

Peak memory: the resident set (CPU, ``/proc/self``, measured with freed blocks returned to the system)
or the allocator's peak (CUDA) during a forward+backward step: ``step_peak_bytes`` above what was
resident before it (the step's temporaries and what autograd saves), ``bytes_per_agent`` the peak
above the process before the graph was built, per agent (graph, state and step).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch

from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.kernels import registry
from lpm.rng import CounterRNG
from lpm.scenarios import default as default_scenario
from lpm.simulate import simulate

__all__ = ["bench_step", "format_step_table", "PATHS", "CPU_SIZES", "GPU_SIZES"]

PATHS = ("reference", "fused")
CPU_SIZES = (100_000, 1_000_000)
GPU_SIZES = (100_000, 1_000_000, 10_000_000)
DT_H = 1.0 / 3.0  # the default scenario's step
_COPY_BYTES = 1 << 28  # bandwidth probe: 256 MiB copied


def _device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("Expected a CUDA device for `lpm bench gpu` (got none: torch.cuda.is_available() is False; "
                          f"torch {torch.__version__}, built with CUDA {torch.version.cuda})")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"Expected device 'cpu' or 'cuda' (got {device!r})")
    return dev


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn: Callable[[], Any]) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _timed_both(device: torch.device, fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (all threads) of ``fn``: on a shared CPU the wall
    clock also counts the time other processes held the cores."""
    cpu = time.process_time()
    wall = _timed(device, fn)
    return wall, time.process_time() - cpu


@contextlib.contextmanager
def reference_only(device_type: str) -> Iterator[None]:
    """Only the plain-torch references serve ``device_type`` inside the block: every implementation
    registered for it is set aside and registered again afterwards."""
    removed = [impl for op in registry.OPS for impl in registry.implementations(op) if impl.device == device_type]
    for impl in removed:
        registry.unregister(impl.op, device=impl.device, dtype=impl.dtype, pair=impl.pair)
    try:
        yield
    finally:
        for impl in removed:
            registry.register(impl.op, impl.fn, device=impl.device, dtype=impl.dtype, pair=impl.pair)


def _registered(device_type: str) -> list[str]:
    return [impl.name for op in registry.OPS for impl in registry.implementations(op) if impl.device == device_type]


# ---------------------------------------------------------------- memory
def _proc_status(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set (Linux)


def _mmap_threshold(nbytes: int) -> None:
    """glibc's malloc serves blocks of at least ``nbytes`` by mmap and returns them to the system on
    free (no-op elsewhere). With a low threshold the resident set follows the live tensors, so the
    peak of a step can be read from it; its default, adapted upward as blocks are freed, keeps freed
    memory resident (faster, so the timed steps run with a high one). Setting it turns that
    adaptation off, which would leave the heap's trim threshold at 128 KiB (freed memory at the top
    of the heap returned, and faulted in again by the next step's tensors), so the trim threshold is
    set as the adaptation sets it: twice the mmap threshold."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, int(nbytes))  # -3: M_MMAP_THRESHOLD
        libc.mallopt(-1, 2 * int(nbytes))  # -1: M_TRIM_THRESHOLD


def _memory(device: torch.device) -> Optional[int]:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _proc_status("VmRSS")


def _peak(device: torch.device) -> Optional[int]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return _proc_status("VmHWM")


# ---------------------------------------------------------------- floors
def _bandwidth(device: torch.device) -> float:
    """Bytes per second of a large copy (read + written), median of 5."""
    src = torch.empty(_COPY_BYTES // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = [_timed(device, lambda: dst.copy_(src)) for _ in range(5)]
    return 2 * _COPY_BYTES / statistics.median(times)


def step_floor_bytes(num_nodes: int, num_edges: int, dims: Sequence[int]) -> int:
    """Bytes the step's aggregations must move at least: per aggregation of ``d`` values, the CSR
    arrays (int32), the values read once and the results written (float32)."""
    return sum((num_nodes + 1) * 4 + num_edges * 4 + 2 * num_nodes * d * 4 for d in dims)


def _spmv(graph: Graph, device: torch.device) -> Callable[[], torch.Tensor]:
    values = torch.ones(graph.num_edges, dtype=torch.float32, device=device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        matrix = torch.sparse_csr_tensor(graph.rowptr, graph.col, values, (graph.num_nodes, graph.num_nodes),
                                         check_invariants=False)
    x = torch.rand(graph.num_nodes, 1, dtype=torch.float32, device=device)
    return lambda: matrix @ x


# ---------------------------------------------------------------- the model's step
def _loss(state) -> torch.Tensor:
    return state.opinion.sum() + state.emotion.sum() + state.emotion_velocity.sum() + state.activity.sum()


class _Stepper:
    """The default model on one graph, stepped from one fixed state (a pure function of it)."""

    def __init__(self, num_nodes: int, batch: int, seed: int, warmup: int, device: torch.device) -> None:
        start = time.perf_counter()
        self.graph = Graph.holme_kim(num_nodes, default_scenario.GraphConfig.m, default_scenario.GraphConfig.p_triad,
                                     seed=seed, device=device)
        _sync(device)
        self.graph_s = time.perf_counter() - start
        self.initial = default_scenario.build_population(self.graph, batch, seed)
        self.model = default_scenario.build_model(self.graph, DT_H, seed).to(device)
        self.rng = CounterRNG.from_seed(seed, batch, device)
        self.seed, self.t, self.device = seed, warmup, device
        state = self.model.init_state(self.initial)
        with torch.no_grad():
            for t in range(warmup):  # some activity traces and posts, as in a running simulation
                state, _ = self.model.step(state, self.graph, t, self.rng)
        self.state = state

    def forward(self) -> None:
        with torch.no_grad():
            self.model.step(self.state, self.graph, self.t, self.rng)

    def forward_backward(self) -> None:
        state, _ = self.model.step(self.state, self.graph, self.t, self.rng)
        _loss(state).backward()
        self.model.zero_grad(set_to_none=True)

    def setup(self) -> None:
        simulate(self.model, self.initial, self.graph, steps=0, seed=self.seed)

    @property
    def dims(self) -> tuple[int, ...]:
        return 1, self.state.opinion.size(-1), self.state.emotion.size(-1)


def _path(name: str, device: torch.device):
    return reference_only(device.type) if name == "reference" else contextlib.nullcontext()


def _median_ms(values: list[float]) -> float:
    return 1e3 * statistics.median(values)


def _bench_size(num_nodes: int, device: torch.device, *, batch: int, seed: int, repeats: int, warmup: int,
                backward: bool, setup: bool) -> list[dict[str, Any]]:
    if device.type == "cpu":
        _mmap_threshold(1 << 16)
    baseline = _memory(device) or 0
    stepper = _Stepper(num_nodes, batch, seed, warmup, device)
    spmv = _spmv(stepper.graph, device)
    bandwidth = _bandwidth(device)
    times: dict[str, dict[str, list[float]]] = {p: {"fwd": [], "fwd_bwd": [], "setup": [], "fwd_cpu": [],
                                                    "fwd_bwd_cpu": [], "setup_cpu": []} for p in PATHS}
    peaks: dict[str, dict[str, Optional[int]]] = {}
    for path in PATHS:  # untimed first calls: the CPU library's build, allocator warm-up
        with _path(path, device):
            stepper.forward()
            if backward:
                stepper.forward_backward()
                before = _memory(device)
                _reset_peak(device)
                stepper.forward_backward()
                _sync(device)
                peak = _peak(device)
                peaks[path] = {"peak": peak, "step": None if peak is None or before is None else peak - before}
    if device.type == "cpu":
        _mmap_threshold(1 << 25)  # glibc's largest adaptive threshold (32 MiB)
    spmv_times, spmv_cpu = [], []
    for _ in range(repeats):
        for path in PATHS:
            with _path(path, device):
                for key, fn in (("fwd", stepper.forward), ("fwd_bwd", stepper.forward_backward)):
                    if key == "fwd" or backward:
                        wall, cpu = _timed_both(device, fn)
                        times[path][key].append(wall)
                        times[path][key + "_cpu"].append(cpu)
        wall, cpu = _timed_both(device, spmv)
        spmv_times.append(wall)
        spmv_cpu.append(cpu)
    if setup:
        for path in PATHS:
            with _path(path, device):
                wall, cpu = _timed_both(device, stepper.setup)
                times[path]["setup"].append(wall)
                times[path]["setup_cpu"].append(cpu)
    spmv_ms = _median_ms(spmv_times)
    spmv_cpu_ms = _median_ms(spmv_cpu) if device.type == "cpu" else None
    edges = stepper.graph.num_edges
    floor_bytes = step_floor_bytes(num_nodes, edges, stepper.dims)
    floor_ms = 1e3 * floor_bytes / bandwidth
    spmv_floor_ms = 1e3 * step_floor_bytes(num_nodes, edges, (1,)) / bandwidth
    rows = []
    reference_fwd = _median_ms(times["reference"]["fwd"])
    reference_bwd = _median_ms(times["reference"]["fwd_bwd"]) if backward else None
    for path in PATHS:
        fwd = _median_ms(times[path]["fwd"])
        fwd_bwd = _median_ms(times[path]["fwd_bwd"]) if backward else None
        peak = peaks.get(path, {}).get("peak")
        row: dict[str, Any] = {
            "device": str(device), "n": num_nodes, "edges": edges, "batch": batch, "threads": torch.get_num_threads(),
            "path": path, "implementations": [] if path == "reference" else _registered(device.type),
            "fwd_ms": fwd, "fwd_bwd_ms": fwd_bwd, "spmv_ms": spmv_ms,
            "fwd_over_spmv": fwd / spmv_ms, "fwd_bwd_over_spmv": None if fwd_bwd is None else fwd_bwd / spmv_ms,
            "fwd_cpu_ms": None, "fwd_bwd_cpu_ms": None, "spmv_cpu_ms": spmv_cpu_ms,
            "fwd_over_spmv_cpu": None, "fwd_bwd_over_spmv_cpu": None,
            "speedup_fwd": reference_fwd / fwd,
            "speedup_fwd_bwd": None if fwd_bwd is None else reference_bwd / fwd_bwd,
            "bytes_per_step": floor_bytes, "bandwidth_gbs": bandwidth / 1e9, "floor_ms": floor_ms,
            "floor_fraction": floor_ms / fwd, "spmv_floor_fraction": spmv_floor_ms / spmv_ms,
            "peak_bytes": peak, "step_peak_bytes": peaks.get(path, {}).get("step"),
            "bytes_per_agent": None if peak is None else (peak - baseline) / num_nodes,
            "setup_s": statistics.median(times[path]["setup"]) if setup else None,
            "setup_cpu_s": statistics.median(times[path]["setup_cpu"]) if setup and device.type == "cpu" else None,
            "graph_s": stepper.graph_s, "repeats": repeats,
        }
        if spmv_cpu_ms:  # CPU time: the work itself, whatever else ran on the machine
            row["fwd_cpu_ms"] = _median_ms(times[path]["fwd_cpu"])
            row["fwd_over_spmv_cpu"] = row["fwd_cpu_ms"] / spmv_cpu_ms
            if backward:
                row["fwd_bwd_cpu_ms"] = _median_ms(times[path]["fwd_bwd_cpu"])
                row["fwd_bwd_over_spmv_cpu"] = row["fwd_bwd_cpu_ms"] / spmv_cpu_ms
        rows.append(row)
    return rows


def bench_step(device: str = "cpu", sizes: Optional[Sequence[int]] = None, *, batch: int = 1, seed: int = 0,
               repeats: int = 5, warmup: int = 3, threads: Optional[int] = 1, backward: bool = True,
               setup: bool = True, out_json: Optional[str | Path] = None) -> list[dict[str, Any]]:
    """Time the default model's step on ``device`` for each size, reference and fused side by side.

    Args:
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:K"``).
        sizes: numbers of agents (default 1e5, 1e6 on the CPU; 1e5, 1e6, 1e7 on a GPU).
        batch: scenarios per step.
        repeats: timed steps per path and size (medians are reported).
        warmup: untimed steps from the initial state before the timed state (activity traces build up).
        threads: torch CPU threads during the benchmark (``None`` keeps the current setting); the
            fused CPU loops use as many.
        backward: also time forward + backward.
        setup: also time a ``simulate`` call's fixed cost.
        out_json: write the rows there as JSON.

    Returns:
        One row per size and path (``"reference"``, ``"fused"``); see the module docstring.

    Raises:
        ConfigError: no CUDA for a CUDA device, an unknown device, or bad sizes/counts.
    """
    dev = _device(device)
    sizes = list(sizes if sizes is not None else (GPU_SIZES if dev.type == "cuda" else CPU_SIZES))
    if not sizes or any(not isinstance(n, int) or n <= default_scenario.GraphConfig.m + 1 for n in sizes):
        raise ConfigError(f"Expected whole numbers of agents > {default_scenario.GraphConfig.m + 1} (got {sizes!r})")
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ConfigError(f"Expected repeats >= 1, warmup >= 0, batch >= 1 (got {repeats}, {warmup}, {batch})")
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    # the fused CUDA kernels are opt-in for users (LPM_FUSED_KERNELS=1): registered for the bench only
    from lpm.kernels import triton as fused_kernels

    fused = fused_kernels.fused_registered() if dev.type == "cuda" else contextlib.nullcontext()
    try:
        with fused:
            rows = [row for n in sizes for row in _bench_size(n, dev, batch=batch, seed=seed, repeats=repeats,
                                                              warmup=warmup, backward=backward, setup=setup)]
    finally:
        torch.set_num_threads(saved_threads)
    if out_json is not None:
        Path(out_json).write_text(json.dumps(rows, indent=2))
    return rows


def _num(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_step_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a plain-text table."""
    header = ["device", "n", "edges", "path", "fwd ms", "fwd+bwd ms", "SpMV ms", "fwd/SpMV", "fwd+bwd/SpMV",
              "(CPU time)", "floor frac", "peak MiB", "B/agent", "setup s"]
    body = [[row["device"], f"{row['n']:,}", f"{row['edges']:,}", row["path"], _num(row["fwd_ms"], ".1f"),
             _num(row["fwd_bwd_ms"], ".1f"), _num(row["spmv_ms"], ".2f"), _num(row["fwd_over_spmv"], ".1f") + "x",
             _num(row["fwd_bwd_over_spmv"], ".1f") + "x",
             f"{_num(row['fwd_over_spmv_cpu'], '.1f')}x / {_num(row['fwd_bwd_over_spmv_cpu'], '.1f')}x",
             _num(row["floor_fraction"], ".3f"),
             _num(None if row["peak_bytes"] is None else row["peak_bytes"] / 2**20, ".0f"),
             _num(row["bytes_per_agent"], ".0f"), _num(row["setup_s"], ".2f")] for row in rows]
    widths = [max(len(str(line[k])) for line in [header, *body]) for k in range(len(header))]
    lines = ["  ".join(str(cell).rjust(width) for cell, width in zip(line, widths)) for line in [header, *body]]
    if rows:
        row = rows[0]
        lines.append(f"threads {row['threads']}, batch {row['batch']}, medians of {row['repeats']} alternating "
                     f"repeats; memory bandwidth {row['bandwidth_gbs']:.1f} GB/s (copy); floor frac = "
                     "floor time of the step's bytes / fwd time; (CPU time): the two ratios from process CPU time")
    return "\n".join(lines)
