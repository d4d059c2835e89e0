"""Tutorial 5: LLM archetypes answered by your own OpenAI-compatible endpoint.

lpm never asks a language model about every agent at every step. It samples personas from
published marginals (age, country, interests, ...), groups them into ``K`` archetypes by k-means,
and asks a model once per (archetype, context): "you are this persona; you see this post; how likely
are you to share it, how does it move your stance and your emotions?". The answers become ``(K, C)``
tables that the cascade, opinion and emotion dynamics gather by archetype at every step.

Any server that speaks the OpenAI chat-completions protocol can answer: vLLM
(``vllm serve MODEL`` -> ``http://localhost:8000/v1``), Ollama (``http://localhost:11434/v1``),
llama.cpp's ``llama-server``, or a hosted API. The steps:

1. Point the backend at the endpoint: ``OpenAICompatibleBackend(model=..., base_url=...)``. It
   validates every answer against the decision schema and retries malformed ones; an answer that
   still fails raises ``BackendError`` rather than becoming a default value.
2. Put it behind a ``DecisionCache`` (SQLite on disk) with ``CachedBackend``: a decision is asked
   once and read back from disk by every later run (and by teammates who share the file).
3. ``ArchetypeSetup.build`` samples personas, clusters them, and asks for the decision table
   (``K x C`` requests at most).
4. Hand the setup to the misinformation scenario's model and arms: the claim's reshare
   probability is now each archetype's own, and the fact-check label acts on each user as its
   archetype took the label's text. Run the counterfactual.
5. Build the setup again: every decision now comes from the cache, the endpoint is not called.

Run it against your server::

    python examples/05_llm_archetypes_own_endpoint.py --base-url http://localhost:8000/v1 --model MODEL

(``OPENAI_BASE_URL`` and ``LPM_LLM_MODEL`` are read when the flags are absent; ``OPENAI_API_KEY``
for a hosted API.) ``--small`` (or ``LPM_EXAMPLES_SMALL=1``) runs a small population, as CI does
against a stand-in server on the loopback interface.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

import lpm
from lpm.archetypes import ArchetypeSetup, CachedBackend, DecisionCache, OpenAICompatibleBackend
from lpm.scenarios import misinformation


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"),
                        help="the endpoint, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL)")
    parser.add_argument("--model", default=os.environ.get("LPM_LLM_MODEL"),
                        help="the served model's name (default: $LPM_LLM_MODEL)")
    parser.add_argument("--small", action="store_true", default=os.environ.get("LPM_EXAMPLES_SMALL") == "1",
                        help="a small run (CI)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="decision cache file (default: a fresh one in a temporary folder)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    agents, k, seeds = (3_000, 6, 4) if args.small else (50_000, 32, 8)

    # 1-2. The endpoint, behind a decision cache on disk.
    cache_path = args.cache or Path(tempfile.mkdtemp(prefix="lpm-tutorial-")) / "decisions.sqlite"
    endpoint = OpenAICompatibleBackend(model=args.model, base_url=args.base_url, max_concurrency=4)
    backend = CachedBackend(endpoint, DecisionCache(cache_path))

    # 3. Personas -> K archetypes -> one decision per (archetype, context).
    contexts = misinformation.CONTEXTS  # the claim, the rebuttal, the fact-check label
    setup = ArchetypeSetup.build(agents, k, contexts, backend, seed=0)
    stats = backend.stats()
    print(f"archetypes: {k} from {agents:,} personas; endpoint {args.base_url} model {args.model}")
    print(f"first build: {stats['calls']} endpoint calls, {stats['cache_hits']} cache hits, "
          f"{stats['prompt_tokens']} prompt tokens, {stats['completion_tokens']} completion tokens")
    claim = contexts.index(misinformation.CLAIM)
    table = setup.table
    sizes = setup.archetypes.sizes
    print("archetype  users  share_probability(claim)  stance_shift(label)")
    label = contexts.index(misinformation.LABEL)
    for a in range(k):
        print(f"{a:>9}  {int(sizes[a]):>5}  {float(table.share_probability[a, claim]):>24.4f}  "
              f"{float(table.stance_shift[a, label]):>19.4f}")

    # 4. The misinformation scenario's model and two of its arms, driven by the archetypes.
    graph = misinformation.build_graph(agents, seed=0, device=torch.device("cpu"))
    population = misinformation.build_population(graph, batch=1, seed=0)
    model = misinformation.build_model(graph, misinformation.STEP_H, seed=0, archetypes=setup)
    arms = misinformation.build_arms(graph, archetypes=setup)
    arms = {name: arms[name] for name in ("none", "label@1h")}
    steps = round((12.0 if args.small else 36.0) / misinformation.STEP_H)
    with torch.no_grad():
        result = lpm.counterfactual(model, population, graph, arms, steps=steps, seeds=seeds)
    summary = result.summary().set_index("arm")
    differences = result.differences().set_index("arm")
    print(f"\n{result.headline} vs {result.baseline} ({seeds} paired seeds, 90% bootstrap interval)")
    for arm in result.arms:
        d = differences.loc[arm]
        print(f"{arm:<10} reach {summary.loc[arm, 'final_reach']:>9.1f}  difference {d.difference:+9.2f} "
              f"[{d.lo:+.2f}, {d.hi:+.2f}]")

    # 5. The same setup again: every decision is read from the cache.
    again = CachedBackend(endpoint, DecisionCache(cache_path))
    ArchetypeSetup.build(agents, k, contexts, again, seed=0)
    stats = again.stats()
    print(f"\nsecond build: {stats['calls']} endpoint calls, {stats['cache_hits']} cache hits ({cache_path})")


if __name__ == "__main__":
    main()
