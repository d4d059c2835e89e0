"""Tutorial 1: a first simulation, its observables, and a gradient through it.

The steps:

1. A follower graph: ``Graph.holme_kim`` grows a clustered scale-free network (each new user
   follows ``m`` accounts, preferring popular ones, and closes triangles with probability
   ``p_triad``), as follower graphs are. Edges run from followee to follower: information flows
   the way posts do.
2. A population: ``PopulationState.sample`` draws opinions (two camps), emotions (valence,
   arousal) and per-user traits (susceptibility, stubbornness, a heavy-tailed posting rate). Its
   tensors have a leading scenario dimension ``B``; here two scenarios run side by side.
3. A model: bounded-confidence opinions (users move toward posts within ``eps`` of their own
   view), emotion contagion with momentum, and a Hawkes process for posting (posts excite
   followers' posting, with a daily rhythm). Users are moved only by the posts they saw.
4. ``lpm.simulate`` runs one simulated day (144 steps of 10 minutes) for both scenarios at once
   and records observables every step: a ``Trajectory``, readable as a pandas table.
5. Everything is differentiable: the final polarization's gradient reaches the confidence radius
   ``eps`` and the Hawkes parameters, which is how lpm fits parameters to data.

Run ``python examples/01_first_simulation.py`` (``--agents N``; ``--small`` or
``LPM_EXAMPLES_SMALL=1`` for a quick run, as CI does). ``--plot FILE`` also draws the observables.
"""

from __future__ import annotations

import argparse
import os

import lpm
from lpm.dynamics import BoundedConfidence, EmotionContagion, Hawkes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=None, help="users (default 100,000; 2,000 with --small)")
    parser.add_argument("--small", action="store_true", default=os.environ.get("LPM_EXAMPLES_SMALL") == "1",
                        help="a small, quick run (CI)")
    parser.add_argument("--plot", default=None, help="also write the observables' plot to this PNG file")
    args = parser.parse_args()
    if args.agents is None:
        args.agents = 2_000 if args.small else 100_000
    return args


def main() -> None:
    args = parse_args()
    n = args.agents

    # 1-2. Graph and population: two scenarios (B = 2) that start from the same population.
    graph = lpm.Graph.holme_kim(n, m=5, p_triad=0.3, seed=0)
    state = lpm.PopulationState.sample(n, seed=0, batch=2, opinion="bimodal")
    print(f"graph: {graph.num_nodes:,} users, {graph.num_edges:,} follow edges; "
          f"state: opinion {tuple(state.opinion.shape)}, emotion {tuple(state.emotion.shape)}")

    # 3. The model: dt is the step length in hours (10 minutes).
    model = lpm.Model(
        opinion=BoundedConfidence(eps=0.3),
        emotion=EmotionContagion(order=2),
        activity=Hawkes(mu=0.05, alpha=0.6, beta=1.0),
        dt=1.0 / 6.0,
    )

    # 4. One simulated day; every scenario gets its own seed derived from seed=0.
    trajectory = lpm.simulate(model, state, graph, steps=144, seed=0)
    table = trajectory.to_pandas()
    hourly = table[table.step % 24 == 0]  # every 4 hours
    print("\nscenario 0, every 4 hours:")
    names = {"posts": "posts_per_step", "emotion_mean[0]": "valence", "emotion_mean[1]": "arousal"}
    columns = ["time_h", "polarization", "posts", "emotion_mean[0]", "emotion_mean[1]"]
    print(hourly[hourly.scenario == 0][columns].rename(columns=names)
          .to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    start, end = trajectory["polarization"][0].mean().item(), trajectory["polarization"][-1].mean().item()
    posts_per_hour = trajectory["posts"][1:].sum(0).mean().item() / (144 * model.dt)
    print(f"\npolarization: start {start:.4f} end {end:.4f}")
    print(f"posts per hour: {posts_per_hour:.1f} ({posts_per_hour / n:.4f} per user)")

    # 5. Gradients of the final polarization reach every parameter.
    trajectory["polarization"][-1].sum().backward()
    print(f"gradient of final polarization: d/d raw_eps {model.opinion.raw_eps.grad.item():+.4g}, "
          f"d/d raw_mu {model.activity.raw_mu.grad.item():+.4g}")

    if args.plot:
        plot(trajectory, args.plot)
        print(f"wrote {args.plot}")


def plot(trajectory: lpm.Trajectory, path: str) -> None:
    """Polarization and posting volume over time, one line per scenario (a plain matplotlib figure:
    the global backend is left alone)."""
    from matplotlib.figure import Figure

    hours = trajectory.times_h.numpy()
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    for b in range(trajectory.num_scenarios):
        left.plot(hours, trajectory["polarization"][:, b].detach().numpy(), label=f"scenario {b}")
        right.plot(hours[1:], trajectory["posts"][1:, b].detach().numpy() / trajectory.dt, label=f"scenario {b}")
    left.set(xlabel="hours", ylabel="polarization (mean |x_i - x_j|)")
    right.set(xlabel="hours", ylabel="posts per hour")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
