"""Do archetype decisions improve the held-out stance fit on RumourEval? One row per decision backend.

Fits the stance model without archetypes on the training threads of the 80/20 thread split, then
continues it with the decisions of each backend (and with random decisions, a control for the head's
own flexibility), and prints mae_stance on the held-out threads beside the references of
``lpm check stance`` (see lpm.calibration.stance_archetypes). Decisions are cached, so a rerun calls
no backend.

    .venv/bin/python scripts/stance_archetypes.py --data ../shared/data/rumoureval2017 --k 8 \
        --backends embedding,transformers,random --out runs/stance_archetypes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lpm.archetypes import CachedBackend, DecisionCache, DecisionTable, build_archetypes, make_backend
from lpm.calibration.stance_archetypes import CONTEXTS, StanceDecisions, compare
from lpm.calibration.stance_data import load_posts
from lpm.calibration.stance_memory import thread_replies
from lpm.calibration.stance_model import StanceConfig
from lpm.embed import TextEmbedder

BACKENDS = ("embedding", "transformers", "openai", "random")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/rumoureval2017", help="RumourEval posts.csv or its folder")
    parser.add_argument("--backends", default="embedding,transformers,random",
                        help=f"comma-separated among {', '.join(BACKENDS)}")
    parser.add_argument("--k", type=int, default=16, help="archetypes")
    parser.add_argument("--agents", type=int, default=StanceConfig.agents, help="repliers per veracity scenario")
    parser.add_argument("--llm-model", default="smollm2-135m",
                        help="model of the transformers backend, or the model an openai endpoint serves")
    parser.add_argument("--base-url", default=None,
                        help="the openai backend's OpenAI-compatible endpoint (default: OPENAI_BASE_URL, else the "
                             "OpenAI API; the key from OPENAI_API_KEY)")
    parser.add_argument("--timeout-s", type=float, default=120.0,
                        help="the openai backend's deadline per request (a local server on a CPU answers slowly)")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps of the fit without archetypes")
    parser.add_argument("--extra-steps", type=int, default=100, help="further steps of every arm")
    parser.add_argument("--budget-s", type=float, default=300.0, help="wall seconds per fit stage at most")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the model's tensors are small: on a shared CPU more threads cost more)")
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap resamples of the test threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/stance_archetypes", help="folder: decision cache and results JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    chosen = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(chosen) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}; expected among {list(BACKENDS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = StanceConfig(agents=args.agents)
    posts = load_posts([Path(args.data)])
    test = thread_replies(posts, config, "test")
    embedder = TextEmbedder()
    archetypes = build_archetypes(config.agents, args.k, args.seed, embedder=embedder)
    decisions, costs = {}, {}
    for name in chosen:
        if name == "random":
            decisions[name] = StanceDecisions.random(archetypes.assignment, archetypes.k, seed=args.seed)
            continue
        options = ({"embedder": embedder} if name == "embedding" else
                   {"model": args.llm_model, "base_url": args.base_url, "json_mode": "schema", "temperature": 0.0,
                    "timeout_s": args.timeout_s}
                   if name == "openai" else {"model": args.llm_model})
        kind = make_backend(name, **options)
        backend = CachedBackend(kind, DecisionCache(out / "decision_cache.sqlite"), chunk_size=8)  # keeps partial work
        started = time.perf_counter()
        table = DecisionTable.build(archetypes.persona_texts, CONTEXTS, backend, embedder)
        costs[name] = {**backend.stats(), **backend.seconds(), "build_wall_s": time.perf_counter() - started}
        backend.cache.close()
        decisions[name] = StanceDecisions.from_table(table, archetypes.assignment)
    rows = compare(posts, decisions, config, steps=args.steps, extra_steps=args.extra_steps, budget_s=args.budget_s,
                   seed=args.seed, draws=args.draws)
    held_out = {"threads": test.veracity.numel(), "replies": int(test.every.sum())}
    (out / "results.json").write_text(json.dumps({"rows": rows, "costs": costs, "test": held_out, "args": vars(args)},
                                                 indent=2) + "\n")
    print(f"held-out threads: {held_out['threads']}, replies: {held_out['replies']}")
    print("| arm | held-out mae_stance | kl_stance | minus no-archetypes [90% paired bootstrap] "
          "| gains (belief, arousal, evidence) |")
    print("|---|---|---|---|---|")
    for row in rows:
        gains = ", ".join(f"{row[g]:+.3f}" for g in ("belief_gain", "arousal_gain", "evidence_gain") if g in row)
        print(f"| {row['arm']} | {row['mae_stance']:.4f} | {row['kl_stance']:.4f} | {row['diff']:+.4f} "
              f"[{row['diff_low']:+.4f}, {row['diff_high']:+.4f}] | {gains} |")
    for name, cost in costs.items():
        print(f"{name}: {cost['calls']} calls, {cost['cache_hits']} cache hits, {cost['wall_s']:.1f} s wall, "
              f"{cost['cpu_s']:.1f} s CPU", file=sys.stderr)
    print(f"wrote {out / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
