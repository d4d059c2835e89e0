"""``lpm plan``: devices, memory and per-step communication for one partitioned population
(:func:`lpm.distributed.capacity.plan_capacity`, whose docstring and ``docs/concepts/distributed.md``
state the measurements and assumptions)."""

from __future__ import annotations

import argparse

from lpm.errors import ConfigError

__all__ = ["add_parser"]


def _count(text: str) -> float:
    """``1e8``, ``100000000`` or ``100_000_000``."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e8 (got {text!r})") from None
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 (got {text!r})")
    return value


def _cmd_plan(args: argparse.Namespace) -> int:
    from lpm.distributed.capacity import DEVICES, plan_capacity

    devices = list(DEVICES) if args.device == "all" else [args.device]
    if args.device != "all" and args.device not in DEVICES:
        raise ConfigError(f"Expected --device among {sorted(DEVICES)} or all (got {args.device!r})")
    header = ("agents", "device", "devices", "nodes", "GB/device", "halo fraction", "GB sent/step", "GB/device/step",
              "exchange ms/step")
    rows, notes = [], []
    for agents in args.agents:
        for device in devices:
            plan = plan_capacity(agents, device, edges_per_agent=args.edges_per_agent, scenarios=args.scenarios,
                                 fit=args.fit, steps_kept=args.steps_kept)
            nodes = -(-plan.devices // DEVICES[device].per_node)
            rows.append((f"{plan.agents:.3g}", device, str(plan.devices), str(nodes), f"{plan.memory_per_device_gb:.1f}",
                         f"{plan.halo_fraction:.2f}", f"{plan.comm_per_step_gb:.2f}", f"{plan.comm_per_device_gb:.3f}",
                         f"{plan.comm_ms:.2f}"))
            notes = plan.assumptions
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    print("assumptions:")
    for note in notes:
        print(f"  - {note}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``lpm plan`` on the CLI's subparsers."""
    plan = sub.add_parser("plan", help="devices, memory and per-step halo traffic for a population split across GPUs")
    plan.add_argument("--agents", type=_count, nargs="+", default=[1e8, 1e9], metavar="N",
                      help="population sizes, e.g. 1e8 1e9 (default: both)")
    plan.add_argument("--device", default="all", help="h100, h200 or all (default: all)")
    plan.add_argument("--edges-per-agent", type=float, default=10.0,
                      help="follow edges per agent (default 10: the default scenario's Holme-Kim graph)")
    plan.add_argument("--scenarios", type=int, default=1, help="scenarios per batch (default 1)")
    plan.add_argument("--fit", action="store_true", help="plan for a fit (gradients through --steps-kept steps)")
    plan.add_argument("--steps-kept", type=int, default=1,
                      help="with --fit: steps between gradient checkpoints, all kept for backward (default 1)")
    plan.set_defaults(func=_cmd_plan)
