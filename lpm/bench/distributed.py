"""The measurements behind :mod:`lpm.distributed.capacity` and ``docs/concepts/distributed.md``.

``python -m lpm.bench.distributed halo --agents 1000000 --out runs/halo.json``: halo fraction, edge
cut, balance and time of each partitioner at 2-64 parts on the default scenario's Holme-Kim graph.

``python -m lpm.bench.distributed equal --agents 100000 --ranks 2 --steps 180 --out runs/equal.json``:
a partitioned run of the default scenario (gloo, CPU) against the single-process run: the largest
state difference, whether every post was drawn the same, and (``--grad-steps``) gradients.

``python -m lpm.bench.distributed memory --agents 200000 --out runs/memory.json``: peak resident
memory of a step above what the run holds (Linux ``/proc``), on graphs of two densities, solved for
bytes per agent and per edge.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

log = logging.getLogger(__name__)

__all__ = ["measure_halo", "measure_equal", "measure_memory", "main"]


def _default(agents: int, seed: int, m: int = 5, batch: int = 1, shock_h: Optional[float] = None):
    from lpm.scenarios.default import Config, GraphConfig, ShockConfig, scenario

    config = Config(graph=GraphConfig(m=m), shock=ShockConfig() if shock_h is None else ShockConfig(start_h=shock_h))
    sc = scenario(config)
    graph = sc.build_graph(agents, seed, torch.device("cpu"))
    return sc, graph, sc.build_population(graph, batch, seed), sc.build_model(graph, sc.dt, seed)


def measure_halo(agents: int, parts: Sequence[int], methods: Sequence[str], seed: int = 0,
                 graph_kind: str = "holme_kim") -> list[dict]:
    """Partition statistics per (method, parts) on the default scenario's graph of ``agents``
    (``graph_kind="holme_kim"``), or on a homophilous block model (``"sbm"``: 1,000 communities, 10
    followees per agent, 90% of them inside the community, ids shuffled so blocks are not contiguous)."""
    from lpm.distributed import partition, partition_stats
    from lpm.graph import Graph

    if graph_kind == "sbm":
        graph, _ = Graph.sbm_homophily(agents, 1000, 10.0, 0.9, seed=seed)
        graph = graph.permute(torch.randperm(agents, generator=torch.Generator().manual_seed(seed)))
    else:
        _, graph, _, _ = _default(agents, seed)
    rows = []
    for method in methods:
        for p in parts:
            start = time.perf_counter()
            owner = partition(graph, p, method=method, seed=seed)
            seconds = time.perf_counter() - start
            stats = partition_stats(graph, owner, p)
            rows.append({"graph": graph_kind, "method": method, "parts": p, "agents": agents, "edges": graph.num_edges,
                         "seconds": seconds, **stats.__dict__})
            log.info("%s", rows[-1])
    return rows


def _equal_worker(rank: int, world: int, port: int, agents: int, steps: int, grad_steps: int, method: str,
                  out: str) -> None:
    import torch.distributed as dist

    import lpm
    from lpm.distributed import (PartitionedGraph, all_reduce_sum, gather_agents, local_state, localize_model,
                                 partition, rank_layout, simulate_partitioned, sync_gradients)

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        sc, graph, state, model = _default(agents, 0, batch=1)
        owner = partition(graph, world, method=method)
        part = PartitionedGraph(rank_layout(graph, owner, rank, world))
        local_model = localize_model(model, part.agents, graph.num_nodes)
        local = local_state(state, part.agents)
        start = time.perf_counter()
        with torch.no_grad():
            traj = simulate_partitioned(local_model, local, part, steps=steps, seed=0)
        seconds = time.perf_counter() - start
        fields = ("opinion", "emotion", "emotion_velocity", "activity")
        gathered = {k: gather_agents(getattr(traj.final, k), part) for k in fields}
        grads = None
        if grad_steps:
            short = simulate_partitioned(local_model, local, part, steps=grad_steps, seed=0)
            s = short.final
            negative = torch.sigmoid((-s.emotion[..., 0] - 0.1) / 0.02).sum(1)
            sums = all_reduce_sum(torch.stack([s.opinion.sum((1, 2)), negative, s.activity.sum(1)]), part.group)
            (sums.sum(0) / graph.num_nodes).sum().backward()
            sync_gradients(local_model)
            grads = {n: p.grad.clone() for n, p in local_model.named_parameters() if p.grad is not None}
        if rank != 0:
            return
        with torch.no_grad():
            ref = lpm.simulate(model, state, graph, steps=steps, seed=0)
        result = {"agents": agents, "ranks": world, "steps": steps, "method": method,
                  "partitioned_s": seconds, "halo": int(part.layout.halo.numel()),
                  "max_abs_diff": {k: float((gathered[k] - getattr(ref.final, k)).abs().max()) for k in fields},
                  "posts_equal": bool(torch.equal(traj["posts"], ref["posts"])),
                  "posts_total": float(ref["posts"].sum()),
                  "posts_max_step_diff": float((traj["posts"] - ref["posts"]).abs().max())}
        if grad_steps:
            short_ref = lpm.simulate(model, state, graph, steps=grad_steps, seed=0).final
            negative = torch.sigmoid((-short_ref.emotion[..., 0] - 0.1) / 0.02).sum(1)
            loss = ((short_ref.opinion.sum((1, 2)) + negative + short_ref.activity.sum(1)) / graph.num_nodes).sum()
            model.zero_grad()
            loss.backward()
            result["grad_steps"] = grad_steps
            result["grad_max_rel_diff"] = {
                n: float((grads[n] - p.grad).abs().max() / p.grad.abs().max().clamp_min(1e-30))
                for n, p in model.named_parameters() if p.grad is not None}
        Path(out).write_text(json.dumps(result, indent=1))
    finally:
        dist.destroy_process_group()


def measure_equal(agents: int, ranks: int, steps: int, grad_steps: int = 0, method: str = "auto") -> dict:
    """A partitioned run of the default scenario on ``ranks`` gloo processes against the single-process run."""
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "equal.json")
        mp.spawn(_equal_worker, args=(ranks, port, agents, steps, grad_steps, method, out), nprocs=ranks, join=True)
        return json.loads(Path(out).read_text())


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _memory_child(agents: int, m: int, backward: bool, steps: int) -> dict:
    """Peak resident memory of ``steps`` steps above the resident memory before them (run in a fresh process)."""
    import lpm

    torch.set_num_threads(1)
    _, graph, state, model = _default(agents, 0, m=m)
    state = model.init_state(state)
    rng = lpm.rng.CounterRNG.from_seed(0, 1)
    with torch.no_grad():
        model.step(state, graph, 0, rng)  # allocator warm-up, lazily built graph views
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current resident size
    before = _rss("VmRSS")
    with torch.set_grad_enabled(backward):
        s = state
        for t in range(steps):
            s, _ = model.step(s, graph, t, rng)
        if backward:
            (s.opinion.sum() + s.emotion.sum() + s.activity.sum()).backward()
    return {"agents": agents, "edges": graph.num_edges, "m": m, "backward": backward, "steps": steps,
            "peak_above_bytes": _rss("VmHWM") - before}


def measure_memory(agents: int, ms: Sequence[int] = (3, 10), steps: int = 4) -> dict:
    """Bytes per agent and per edge of a step's peak (forward, and forward + backward per kept step),
    solved from two graph densities at the same ``agents``; each point in a fresh process."""
    points = []
    for backward in (False, True):
        for m in ms:
            code = (f"import json; from lpm.bench.distributed import _memory_child; "
                    f"print(json.dumps(_memory_child({agents}, {m}, {backward}, {steps if backward else 1})))")
            # large blocks mmapped and returned on free: resident memory then follows live tensors, not
            # what glibc's heap kept from earlier steps
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
            points.append(json.loads(done.stdout.strip().splitlines()[-1]))
            log.info("%s", points[-1])
    out = {"points": points}
    for backward in (False, True):
        a, b = [p for p in points if p["backward"] == backward]
        per = a["steps"] if backward else 1
        per_edge = (b["peak_above_bytes"] - a["peak_above_bytes"]) / (b["edges"] - a["edges"]) / per
        per_agent = (a["peak_above_bytes"] / per - per_edge * a["edges"]) / agents
        out["backward" if backward else "step"] = {"per_agent": per_agent, "per_edge": per_edge}
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lpm.bench.distributed", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("halo", "equal", "memory"))
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--parts", default="2,4,8,16,32,64")
    parser.add_argument("--methods", default="metis,label_propagation,block")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=180)
    parser.add_argument("--grad-steps", type=int, default=0)
    parser.add_argument("--method", default="auto")
    parser.add_argument("--graph", choices=("holme_kim", "sbm"), default="holme_kim")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.what == "halo":
        result = measure_halo(args.agents, [int(p) for p in args.parts.split(",")], args.methods.split(","),
                              graph_kind=args.graph)
    elif args.what == "equal":
        result = measure_equal(args.agents, args.ranks, args.steps, args.grad_steps, args.method)
    else:
        result = measure_memory(args.agents)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
