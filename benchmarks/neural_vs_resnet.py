"""Neural ODE against a discrete Euler ResNet on the irregularly sampled spiral data, over seeds.

Run from the repository root (not part of the test suite; about 5 minutes)::

    PYTHONPATH=. python benchmarks/neural_vs_resnet.py [--steps 60 150] [--seeds 0 1 2 3 4]

Both models use the same MLP (2, 16, 2), the same initialisation (``seed``),
the same optimiser (L-BFGS with exact gradients) and the same loss on the
first 10 trajectories of ``data/spiral.csv``; the held-out error is the RMSE
on the last 6, predicted from their observed initial states. The ResNet
compares an observation at time t with its layer round(t/h) (see
``odeverify._train``); two steps h are reported. The noise s.d. of the data
is 0.03, the floor a perfect model would reach.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

import odeverify as ov

ROOT = Path(__file__).resolve().parents[1]
MODELS = (("Neural ODE", {}), ("ResNet h=0.2", dict(model="resnet", resnet_step=0.2)),
          ("ResNet h=0.5", dict(model="resnet", resnet_step=0.5)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[60, 150])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    data = ov.load_trajectories(ROOT / "data" / "spiral.csv")
    train, test = data.select(range(10)), data.select(range(10, 16))
    mlp = ov.MLPField((2, 16, 2))
    print(f"{'iters':>5} {'seed':>4} " + " ".join(f"{name + ' train/test':>26}" for name, _ in MODELS))
    results = {}
    for steps in args.steps:
        for seed in args.seeds:
            cells = []
            for name, kw in MODELS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # overflow in rejected line-search points
                    res = ov.fit(mlp, train, optimizer="lbfgs", steps=steps, seed=seed, **kw)
                results[steps, seed, name] = (res.rmse(train), res.rmse(test))
                cells.append(f"{results[steps, seed, name][0]:12.4f} /{results[steps, seed, name][1]:8.4f}")
            print(f"{steps:>5} {seed:>4} " + " ".join(f"{c:>26}" for c in cells), flush=True)
        means = [np.mean([results[steps, s, name][1] for s in args.seeds]) for name, _ in MODELS]
        wins = sum(results[steps, s, "Neural ODE"][1] < results[steps, s, "ResNet h=0.2"][1] for s in args.seeds)
        print(f"{steps:>5} mean test RMSE: " + ", ".join(f"{name} {m:.4f}" for (name, _), m in zip(MODELS, means))
              + f"; Neural ODE below ResNet h=0.2 in {wins} of {len(args.seeds)} seeds")
    return results


if __name__ == "__main__":
    main()
