"""Do archetype decisions improve the per-label cascade fit on Twitter15? One row per decision backend.

Starts from a cascade fit without archetypes (``lpm calibrate cascades``), continues it on the
training cascades with the per-label loss, without archetypes and with the decisions of each
backend (and with random decisions, a control for the learnable head's own flexibility), and prints
the per-label loss on the held-out cascades (see lpm.calibration.cascade_archetypes). Decisions are
cached, so a rerun calls no backend.

    .venv/bin/python scripts/cascade_archetypes.py --params /work/fits/t15i.json --k 8 \
        --backends embedding,transformers,random --extra-steps 50 --out runs/cascade_archetypes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lpm.archetypes import CachedBackend, DecisionCache, DecisionTable, build_archetypes, make_backend
from lpm.calibration.cascade_archetypes import CONTEXTS, LABELS, CascadeDecisions, compare
from lpm.calibration.cascade_world import load_cascades, world_from_meta
from lpm.calibration.common import load_params
from lpm.embed import TextEmbedder

#: ``label-offsets`` is a reference, not a backend: a free reshare-logit offset per label (CascadeDecisions.per_label)
BACKENDS = ("embedding", "transformers", "openai", "random", "label-offsets")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/twitter15.zip", help="rumdetect2017 zip or folder")
    parser.add_argument("--params", required=True, help="a cascade fit without archetypes (its world is in its meta)")
    parser.add_argument("--backends", default="embedding,transformers,random",
                        help=f"comma-separated among {', '.join(BACKENDS)}")
    parser.add_argument("--k", type=int, default=8, help="archetypes")
    parser.add_argument("--agents", type=int, default=None, help="agents of the simulated world (default: the fit's)")
    parser.add_argument("--llm-model", default="smollm2-135m",
                        help="model of the transformers backend, or the model an openai endpoint serves")
    parser.add_argument("--base-url", default=None,
                        help="the openai backend's OpenAI-compatible endpoint (default: OPENAI_BASE_URL, else the "
                             "OpenAI API; the key from OPENAI_API_KEY)")
    parser.add_argument("--timeout-s", type=float, default=120.0,
                        help="the openai backend's deadline per request (a local server on a CPU answers slowly)")
    parser.add_argument("--extra-steps", type=int, default=50, help="Adam steps of every arm on the per-label loss")
    parser.add_argument("--budget-s", type=float, default=None, help="wall seconds per arm's fit at most")
    parser.add_argument("--batch", type=int, default=4, help="scenarios per training step")
    parser.add_argument("--eval-batch", type=int, default=8, help="scenarios per evaluation seed")
    parser.add_argument("--eval-seeds", type=int, default=4, help="evaluation seeds (the same for every arm)")
    parser.add_argument("--exact-seeds", type=int, default=2,
                        help="seeds of sampled (exact) cascades for a second evaluation (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap resamples of the test cascades")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-seeds", default="0",
                        help="comma-separated seeds of the random control's decisions (one arm each)")
    parser.add_argument("--decisions-only", action="store_true", help="build (and cache) the decisions, then stop")
    parser.add_argument("--out", default="runs/cascade_archetypes", help="folder: decision cache and results JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    chosen = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(chosen) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}; expected among {list(BACKENDS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params, meta = load_params(Path(args.params), kind="cascades")
    world = world_from_meta(meta)
    if args.agents is not None:
        world = world.__class__(**{**world.__dict__, "agents": args.agents})
    embedder = TextEmbedder()
    started = time.process_time()
    archetypes = build_archetypes(world.agents, args.k, args.seed, embedder=embedder)
    print(f"{args.k} archetypes of {world.agents} agents in {time.process_time() - started:.1f} s CPU", file=sys.stderr)
    contexts = [CONTEXTS[label] for label in LABELS]
    decisions, costs = {}, {}
    for name in chosen:
        if name == "random":
            seeds = [int(s) for s in args.random_seeds.split(",") if s]
            for s in seeds:
                arm = name if len(seeds) == 1 else f"{name} {s}"
                decisions[arm] = CascadeDecisions.random(archetypes.assignment, archetypes.k, seed=s)
            continue
        if name == "label-offsets":
            decisions[name] = CascadeDecisions.per_label(world.agents)
            continue
        options = ({"embedder": embedder} if name == "embedding" else
                   {"model": args.llm_model, "base_url": args.base_url, "json_mode": "schema", "temperature": 0.0,
                    "timeout_s": args.timeout_s}
                   if name == "openai" else {"model": args.llm_model})
        kind = make_backend(name, **options)
        backend = CachedBackend(kind, DecisionCache(out / "decision_cache.sqlite"), chunk_size=8)  # keeps partial work
        wall, cpu = time.perf_counter(), time.process_time()
        table = DecisionTable.build(archetypes.persona_texts, contexts, backend, embedder)
        costs[name] = {**backend.stats(), **backend.seconds(), "build_wall_s": time.perf_counter() - wall,
                       "build_cpu_s": time.process_time() - cpu}
        backend.cache.close()
        decisions[name] = CascadeDecisions.from_table(table, archetypes.assignment)
        costs[name]["share_logit"] = decisions[name].share_logit.tolist()
        costs[name]["arousal"] = decisions[name].arousal.tolist()
        print(f"{name}: {costs[name]}", file=sys.stderr)
    if args.decisions_only:
        (out / "decisions.json").write_text(json.dumps({"costs": costs, "args": vars(args)}, indent=2) + "\n")
        return 0
    train = load_cascades([Path(args.data)], split="train")
    test = load_cascades([Path(args.data)], split="test")
    partial = out / "results.partial.json"
    done: list[dict] = []

    def progress(row: dict, module) -> None:
        done.append(row)
        # the fitted arm, to check it again later (e.g. exact trees): base parameters, gains and head
        torch.save(module.model.state_dict(), out / f"{row['arm'].replace(' ', '_').replace(',', '')}.pt")
        partial.write_text(json.dumps({"rows": done, "costs": costs, "args": vars(args)}, indent=2) + "\n")
        print(f"{row['arm']}: {row}", file=sys.stderr)

    rows = compare(train, test, world, params, decisions, fixed=meta.get("fixed", ("attention",)),
                   extra_steps=args.extra_steps, batch=args.batch, eval_batch=args.eval_batch,
                   eval_seeds=[100_000 + i for i in range(args.eval_seeds)], draws=args.draws, seed=args.seed,
                   budget_s=args.budget_s, exact_seeds=[200_000 + i for i in range(args.exact_seeds)],
                   progress=progress)
    held_out = {"train": train.num_cascades, "test": test.num_cascades}
    (out / "results.json").write_text(json.dumps({"rows": rows, "costs": costs, "cascades": held_out,
                                                  "args": vars(args)}, indent=2) + "\n")
    print(f"training cascades: {held_out['train']}, held-out: {held_out['test']}")
    print("| arm | held-out per-label loss | minus no archetypes [90% paired bootstrap] | training loss "
          "| exact: held-out | minus no archetypes | training | gains |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        gains = ", ".join(f"{row['params'][g]:+.3f}" for g in ("reshare_gain", "arousal_gain") if g in row["params"])
        cells = []
        for prefix in ("", "exact_"):
            if f"{prefix}test_loss" not in row:
                cells += ["", "", ""]
                continue
            diff = (f"{row[prefix + 'diff']:+.4f} [{row[prefix + 'diff_low']:+.4f}, {row[prefix + 'diff_high']:+.4f}]"
                    if prefix + "diff" in row else "")
            cells += [f"{row[prefix + 'test_loss']:.4f}", diff, f"{row[prefix + 'train_loss']:.4f}"]
        print(f"| {row['arm']} | {' | '.join(cells)} | {gains} |")
    print(f"wrote {out / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
