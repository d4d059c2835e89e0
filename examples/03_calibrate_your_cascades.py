"""Tutorial 3: calibrate the cascade model to your own reshare cascades.

lpm fits its parameters to data by gradient descent through the simulator. This tutorial fits the
per-exposure reshare probability (``transmissibility``) of the cascade model to a folder of reshare
trees. So that the answer is known, the "data" are cascades simulated with a planted value, written
in the format real data come in; replace the folder with yours (Twitter15/16 as distributed, or
your own trees written in that format) and the rest is unchanged.

The steps:

1. The data format (rumdetect2017, as Twitter15/16 are distributed): a folder with ``label.txt``
   (``label:cascade_id`` per line) and ``tree/<cascade_id>.txt``, one reshare per line,
   ``['parent_user', 'parent_tweet', 'parent_minutes']->['user', 'tweet', 'minutes']``, the source's
   line coming from ``['ROOT', 'ROOT', '0.0']``; minutes are counted from the source post. A zip of
   such a folder works too. ``lpm.data.write_rumdetect`` writes any ``CascadeTable`` in it: here,
   64 (256 at full size) cascades simulated on a synthetic platform (``CascadeWorld``: a clustered follower graph whose
   items are posted by random users with large audiences beyond the graph).
2. ``lpm.data.load_rumdetect`` reads the folder into a ``CascadeTable`` and a report of what it
   read (and of every quirk of the distributed files it repaired or dropped).
3. ``lpm.calibration.fit_cascades.calibrate`` fits the model on the mean-field (expected-value)
   dynamics, which are deterministic and have exact gradients, matching the distribution of cascade
   sizes over the first hours, the shape of their growth and the share of reshares straight from the
   source. The mean field treats repeated exposures on a clustered graph as independent, so its
   answer is biased; ``debias=1`` adds one round of indirect inference: simulate exact cascades at
   the estimate, fit them the same way, and correct by what that fit got wrong. On the planted data
   only ``transmissibility`` is free, the other parameters held at the values the data were made
   with; on your data every parameter but ``attention`` is free (``attention`` and
   ``transmissibility`` act only through their product: ``DEFAULT_FIXED``), fitted on the
   training part of a deterministic 80/20 split so that ``evaluate`` and ``check`` can score the
   held-out part.
4. The fit is a JSON file (``lpm.calibration.common.load_params`` reads and validates it); its meta
   keeps the plain fit and every correction round.
5. ``apply_params`` sets the fitted values on a scenario's cascade (here the misinformation
   scenario's), as ``lpm run misinformation --params FILE`` does.

Run ``python examples/03_calibrate_your_cascades.py [--data FOLDER_OR_ZIP]`` (``--small`` or
``LPM_EXAMPLES_SMALL=1`` for a quick run, as CI does). Without ``--data`` it makes the planted data.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from lpm.calibration.common import load_params
from lpm.calibration.fit_cascades import DEFAULTS, CascadeWorld, apply_params, calibrate, simulate_cascades
from lpm.data import load_rumdetect, write_rumdetect
from lpm.scenarios import misinformation

PLANTED = 0.012  # the transmissibility the synthetic cascades are simulated with
START = 0.02  # where the fit starts: 67% off


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="your cascades: a rumdetect2017 folder or zip (default: planted synthetic cascades)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the data and the fit (default: temporary)")
    parser.add_argument("--small", action="store_true", default=os.environ.get("LPM_EXAMPLES_SMALL") == "1",
                        help="a small, quick run (CI)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="lpm-tutorial-"))
    out.mkdir(parents=True, exist_ok=True)
    # the synthetic platform: 16 items per scenario, 10-minute steps, no resharer audiences
    world = CascadeWorld(agents=1_000 if args.small else 1_500, items=16, resharer_audience=False)
    truth = {k: v for k, v in dict(DEFAULTS, transmissibility=PLANTED, audience=3000.0,
                                   feed_half_life_h=0.25).items() if k in world.params}

    # 1. The data: yours, or cascades simulated with the planted transmissibility, read to 4 hours.
    data = args.data
    if data is None:
        hours = [1 / 6, 0.5, 1.0, 2.0, 4.0]
        simulated = simulate_cascades(world, truth, hours=hours, batch=4 if args.small else 16, seed=123)
        data = write_rumdetect(simulated, out / "my_cascades")
        example = sorted((data / "tree").iterdir())[0]
        print(f"wrote {simulated.num_cascades} cascades to {data}; {example.name} begins:")
        print("  " + "\n  ".join(example.read_text().splitlines()[:3]))

    # 2. Read it back as lpm reads any rumdetect2017 data.
    table, report = load_rumdetect(data)
    sizes = table.sizes.double()
    print(f"\nloaded {table.num_cascades} cascades ({report.nodes} nodes): median size {sizes.median():.0f}, "
          f"largest {sizes.max():.0f}")

    # 3. The fit, with one round of bias correction. On the planted data only transmissibility is
    #    free (from START); on yours, everything but attention, on the training part of the split.
    planted = args.data is None
    free = ["transmissibility"] if planted else [name for name in world.params if name != "attention"]
    fit_file = out / "fit.json"
    calibrate([data], fit_file, split="all" if planted else "train", world=world,
              init=dict(truth, transmissibility=START), fixed=[name for name in world.params if name not in free],
              fit_horizon_h=4.0, max_steps=40 if args.small else 80, debias=1, logger="none", progress=False)

    # 4. The fit file: the corrected estimate, and the plain mean-field fit in its meta.
    params, meta = load_params(fit_file, kind="cascades")
    plain = meta["debias"]["path"][0]
    if planted:
        print(f"\ntransmissibility: planted {PLANTED:.5f}, started at {START:.5f}")
        for label, value in (("mean-field fit:", plain["transmissibility"]),
                             ("after bias correction:", params["transmissibility"])):
            print(f"{label:<23}{value:.5f} ({value / PLANTED - 1:+.1%})")
    else:
        print(f"\n{'parameter':<18}{'mean-field fit':>16}{'after bias correction':>24}")
        for name in free:
            print(f"{name:<18}{plain[name]:>16.5g}{params[name]:>24.5g}")

    # 5. The fitted values on a scenario's model.
    graph = misinformation.build_graph(2_000, seed=0, device=torch.device("cpu"))
    model = misinformation.build_model(graph, misinformation.STEP_H, seed=0)
    applied = apply_params(model, params)
    print(f"\napplied to the misinformation scenario's cascade: {', '.join(sorted(applied))}")


if __name__ == "__main__":
    main()
