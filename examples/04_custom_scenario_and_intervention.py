"""Tutorial 4: write your own intervention and your own scenario.

An intervention is a small ``torch.nn.Module``: from its start time on, it adds *effects* that the
dynamics read in every step (a reshare-logit offset, an exposure multiplier, a gate on who can
post, a drive on emotions, a pull on opinions, a change of the feed's ranking). A scenario is a
plain frozen dataclass: how to build the graph, the population and the model, and which arms to
compare. Neither needs a registry or a config file: they are Python objects.

The steps:

1. ``AccuracyPrompt``, a new intervention: a platform-wide prompt that asks users to think about
   accuracy before sharing (Pennycook et al. 2021, Nature 592:590, measured such prompts to lower
   the sharing of false headlines). From ``at`` it lowers every user's reshare logit by
   ``strength``, and the effect wears off with a half-life, as attention to accuracy fades. Its
   start time and strength are ``nn.Parameter``s read through a smooth step and a softplus, so
   outcomes are differentiable in both.
2. A scenario, ``rumour_in_two_communities``: two communities with 85% of follows inside
   (``Graph.sbm_homophily``); opinions lean by community; a claim is posted by the three
   most-followed accounts of the community that agrees with it. Its cascade parameters are hand-set
   for the tutorial, not fitted: the sources also reach an audience beyond the graph (5% of users,
   spread at random, as a popular account's followers are), a reshare stays visible in feeds with a
   one-hour half-life, and users who agree with the claim reshare it more. Arms: nothing, the
   accuracy prompt early (30 min) or late (4 h), and a fact-check label at 1 h for comparison.
3. ``lpm.scenario.run_scenario`` builds and runs it: arms x seeds in one batch, paired. With an
   audience beyond the graph nearly every user is exposed at least once, so reach says little here;
   the outcome compared is the number of reshares (adjusted by its control variate).
4. Because the prompt is differentiable, the gradient of the expected number of reshares with
   respect to its strength and its start time comes from one backward pass through the mean-field
   (expected-value) dynamics.

This file also defines ``SCENARIO`` at module level, so ``lpm.scenario.load_scenario(path)`` loads
it like a built-in scenario. Run ``python examples/04_custom_scenario_and_intervention.py``
(``--agents N --seeds S``; ``--small`` or ``LPM_EXAMPLES_SMALL=1`` for a quick run, as CI does).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os

import torch

import lpm
from lpm.dynamics import Cascade, Item
from lpm.interventions import Effects, FactCheckLabel, Intervention, Shape, smooth_elapsed
from lpm.params import positive, softplus
from lpm.relax import Expected
from lpm.scenario import Scenario, run_scenario


# 1. The intervention ------------------------------------------------------------------------------
class AccuracyPrompt(Intervention):
    """A prompt to consider accuracy, shown to every user at ``at`` (hours).

    Every user's reshare logit of every item drops by ``strength * 2**(-elapsed / half_life_h)``.

    Args:
        at: start time in hours (learnable).
        strength: logit units at the start (learnable, > 0).
        half_life_h: hours until the effect has halved.
        width: hours over which the prompt switches on (the smooth step that makes ``at`` differentiable).
        scenarios: an optional ``(B,)`` mask of the scenarios it applies to (set by ``lpm.counterfactual``).
    """

    def __init__(self, at: float, strength: float = 0.4, half_life_h: float = 6.0, width: float = 0.25,
                 scenarios=None) -> None:
        super().__init__(at, width, scenarios)
        self.raw_strength = positive("strength", strength)
        self.decay = math.log(2.0) / half_life_h

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        on = self.on(time_h, shape.batch, shape.like)  # (B, 1): 0 before `at`, 1 after
        fading = torch.exp(-self.decay * smooth_elapsed(time_h, self.at, self.width))
        offset = -softplus(self.raw_strength) * on * fading  # (B, 1)
        effects.add("reshare_logit", offset[..., None] * shape.like.new_ones(shape.items))  # (B, 1, C)


# 2. The scenario ----------------------------------------------------------------------------------
def build_graph(agents: int, seed: int, device: torch.device) -> lpm.Graph:
    graph, _ = lpm.Graph.sbm_homophily(agents, 2, 10.0, 0.85, seed=seed)  # 2 communities, mean degree 10
    return graph.to(device)


def community(agents: int) -> torch.Tensor:
    return torch.arange(agents) * 2 // agents  # sbm_homophily's blocks are contiguous and equal


def build_population(graph: lpm.Graph, batch: int, seed: int) -> lpm.PopulationState:
    n = graph.num_nodes
    lean = community(n).double() * 2 - 1  # community 0 leans -, community 1 leans +
    noise = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    opinion = (0.5 * lean + 0.3 * noise).clamp(-1, 1).float().view(1, n, 1).expand(batch, n, 1).contiguous()
    return lpm.PopulationState.create(opinion, torch.zeros(batch, n, 2)).to(graph.device)


def claim_sources(graph: lpm.Graph) -> tuple[int, ...]:
    followers = graph.out_degree().clone()
    followers[community(graph.num_nodes) == 0] = -1  # the claim starts in the community that agrees
    return tuple(torch.argsort(followers, descending=True)[:3].tolist())


def build_model(graph: lpm.Graph, dt: float, seed: int) -> lpm.Model:
    claim = Item(source=claim_sources(graph), stance=1.0, topic=0)
    cascade = Cascade([claim], transmissibility=0.005, alignment_weight=1.5, audience=0.05 * graph.num_nodes,
                      feed_half_life_h=1.0)
    return lpm.Model(cascade=cascade, dt=dt)


def build_arms(graph: lpm.Graph) -> dict:
    return {
        "none": [],
        "prompt@0.5h": [AccuracyPrompt(at=0.5)],
        "prompt@4h": [AccuracyPrompt(at=4.0)],
        "label@1h": [FactCheckLabel(0, at=1.0)],
    }


SCENARIO = Scenario(
    name="rumour_in_two_communities",
    description="A claim spreading from the community that agrees with it; accuracy prompts vs a label.",
    build_graph=build_graph,
    build_population=build_population,
    build_model=build_model,
    arms=build_arms,
    agents=20_000,
    days=1.0,
    dt=1.0 / 6.0,
    seeds=16,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=None, help="users (default 20,000; 3,000 with --small)")
    parser.add_argument("--seeds", type=int, default=None, help="paired seeds per arm (default 16; 8 with --small)")
    parser.add_argument("--small", action="store_true", default=os.environ.get("LPM_EXAMPLES_SMALL") == "1",
                        help="a small, quick run (CI)")
    args = parser.parse_args()
    args.agents = args.agents or (3_000 if args.small else SCENARIO.agents)
    args.seeds = args.seeds or (8 if args.small else SCENARIO.seeds)
    return args


def main() -> None:
    args = parse_args()
    scenario = dataclasses.replace(SCENARIO, agents=args.agents, seeds=args.seeds)

    # 3. Run the scenario: arms x seeds, paired.
    result = run_scenario(scenario, progress=False).counterfactual
    summary = result.summary().set_index("arm")
    outcome = "final_reshares_adjusted"
    differences = result.differences(outcome).set_index("arm")
    print(f"{scenario.name}: {scenario.agents:,} users, {len(result.arms)} arms x {len(result.seeds)} seeds, "
          f"{scenario.days * 24:.0f} hours")
    print(f"\n{'arm':<13}{'reshares (mean [90% band])':>30}{'difference in ' + outcome:>40}")
    for arm in result.arms:
        row, d = summary.loc[arm], differences.loc[arm]
        band = f"{row.final_reshares:.1f} [{row.final_reshares_lo:.0f}, {row.final_reshares_hi:.0f}]"
        diff = f"{d.difference:+.1f} [{d.lo:+.1f}, {d.hi:+.1f}]"
        print(f"{arm:<13}{band:>30}{diff:>40}")

    # 4. Gradients: expected reshares after a day under the early prompt, on the mean-field dynamics.
    graph = scenario.build_graph(scenario.agents, scenario.seed, torch.device("cpu"))
    prompt = AccuracyPrompt(at=0.5)
    model = scenario.build_model(graph, scenario.dt, scenario.seed).with_interventions([prompt])
    state = scenario.build_population(graph, 1, scenario.seed)
    trajectory = lpm.simulate(model, state, graph, steps=scenario.steps, seed=0, estimator=Expected(),
                              record=lpm.observables.CASCADE)
    expected = trajectory["reshares"][-1].sum()
    expected.backward()
    strength = softplus(prompt.raw_strength).item()
    # d/d strength = d/d raw * d raw / d strength, and d softplus(raw) / d raw = sigmoid(raw)
    per_strength = prompt.raw_strength.grad.item() / torch.sigmoid(prompt.raw_strength).item()
    print(f"\nexpected reshares after {scenario.days * 24:.0f} h with the prompt at 0.5 h: {expected.item():.1f}")
    print(f"d reshares / d strength = {per_strength:+.2f} per logit unit (at strength {strength:.2f}); "
          f"d reshares / d start time = {prompt.at.grad.item():+.2f} per hour")


if __name__ == "__main__":
    main()
