"""Generate data/lotka_volterra.csv: noisy, irregular, partly missing observations.

The trajectory is solved with SciPy's DOP853 at rtol = atol = 1e-12 (not with
odeverify), so the data set is independent of the code it is used to check.
Run from the repository root: ``python data/make_lotka_volterra.py``.
"""

from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

SEED = 20261128
A, B, C, D = 1.5, 1.0, 1.0, 3.0  # the "true" parameters
Z0 = (10.0, 5.0)


def main():
    rng = np.random.default_rng(SEED)
    times = np.concatenate([[0.0], np.sort(rng.uniform(0.05, 3.0, size=15))])

    def f(t, z):
        x, y = z
        return [A * x - B * x * y, C * x * y - D * y]

    sol = solve_ivp(f, (0.0, 3.0), Z0, method="DOP853", rtol=1e-12, atol=1e-12, t_eval=times)
    obs = sol.y.T * (1.0 + 0.05 * rng.standard_normal(sol.y.T.shape))
    missing = rng.random(obs.shape) < 0.1
    missing[0] = False
    obs[missing] = np.nan
    out = Path(__file__).with_name("lotka_volterra.csv")
    with out.open("w") as fh:
        fh.write("t,x,y\n")
        for t, (x, y) in zip(times, obs):
            cell = lambda v: "" if np.isnan(v) else f"{v:.6f}"  # noqa: E731
            fh.write(f"{t:.6f},{cell(x)},{cell(y)}\n")
    print(f"wrote {out} ({len(times)} rows)")


if __name__ == "__main__":
    main()
