"""Runge–Kutta methods as data (Butcher tableaux) and one pure step function.

Public: the methods themselves. The private ``odeverify._rk`` is the adaptive stepping loop that runs the
embedded pairs (``method="dopri5"``, ``"tsit5"``) from these tableaux.

A one-step method (notes §2.4) advances ``z_{i+1} = z_i + h sum_j b_j k_j`` with
stages ``k_j = f(z_i + h sum_l A_jl k_l, t_i + c_j h)``. Euler's method (§2.5)
is the one-stage tableau ``A = [[0]], b = [1], c = [0]``. Every method here is
explicit, so :func:`rk_step` is a pure function built from additions and
multiplications only: with ``xp=autograd.numpy`` it is differentiable by
autograd with respect to the state, the step size, the time and anything the
right-hand side closes over (used by the discretise-then-differentiate
references and by :mod:`odeverify.theory`).

References
----------
E. Hairer, S. P. Nørsett, G. Wanner, *Solving Ordinary Differential Equations I*,
2nd ed., Springer 1993, §II.1–II.6 (tableaux of RK4, the 3/8 rule, Heun,
midpoint, Ralston, Dormand–Prince 5(4) and its dense output) and §II.10 (DOP853).
Ch. Tsitouras, "Runge–Kutta pairs of order 5(4) satisfying only the first column
simplifying assumption", Computers & Mathematics with Applications 62 (2011)
770–775 (Tsit5 and its interpolant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgumentError, InvalidTypeError

__all__ = ["Tableau", "TABLEAUX", "get_tableau", "rk_step", "odeint_fixed"]


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge–Kutta method.

    Attributes
    ----------
    name : str
    A : ndarray, shape (s, s)
        Strictly lower-triangular stage coefficients.
    b : ndarray, shape (s,)
        Weights of the solution.
    c : ndarray, shape (s,)
        Nodes (fractions of the step).
    order : int
        Classical order of ``b``.
    b_err : ndarray, shape (s,), or None
        Weights of an embedded solution of order ``order - 1`` (for error
        estimates), when the method has one.
    P : ndarray, shape (s + e, d), or None
        Continuous extension (dense output): within a step,
        ``z(t + theta h) = z + h sum_j b_j(theta) k_j`` with
        ``b_j(theta) = sum_m P[j, m] theta^(m + 1)``, so ``P.sum(axis=1) == b``
        (over the first s rows). Rows past the s-th weight the ``e`` extra
        stages of ``A_extra`` (DOP853's order-7 interpolant needs three).
    E : ndarray, shape (2, s), or None
        The two error estimators of DOP853 (Hairer's ``err5`` and ``err3``
        weights) instead of ``b_err``: the step's error norm is
        ``|err5|^2 / sqrt(|err5|^2 + 0.01 |err3|^2)`` (scaled RMS norms).
    A_extra : ndarray, shape (e, s + e), or None
        Stage coefficients of the extra stages that only the dense output
        evaluates (on ``[k_1, ..., k_s, extra_1, ...]``).
    c_extra : ndarray, shape (e,), or None
    """

    name: str
    A: np.ndarray
    b: np.ndarray
    c: np.ndarray
    order: int
    b_err: np.ndarray | None = None
    P: np.ndarray | None = None
    E: np.ndarray | None = None
    A_extra: np.ndarray | None = None
    c_extra: np.ndarray | None = None

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def fsal(self) -> bool:
        """First same as last: the last stage is f at the new state, so it starts the next step."""
        return bool(self.c[-1] == 1.0 and np.array_equal(self.A[-1], self.b))

    def check(self, tol=1e-14):
        """Verify the tableau's consistency conditions (row sums, order conditions up to order 4)."""
        A, c = self.A, self.c
        if not np.allclose(np.triu(A), 0, atol=tol):
            raise InvalidArgumentError(f"{self.name}: A is not strictly lower triangular (not explicit)")
        if not np.allclose(A.sum(axis=1), c, atol=tol):
            raise InvalidArgumentError(f"{self.name}: the rows of A do not sum to c")
        conds = order_conditions(self, min(self.order, 4))
        bad = {k: v for k, v in conds.items() if abs(v) > 1e-12}
        if bad:
            raise InvalidArgumentError(f"{self.name}: order conditions violated: {bad}")
        return True


def order_conditions(tab: Tableau, order: int) -> dict:
    """Residuals of the Butcher order conditions up to ``order`` (at most 4)."""
    A, b, c = tab.A, tab.b, tab.c
    res = {}
    if order >= 1:
        res["sum b = 1"] = b.sum() - 1
    if order >= 2:
        res["b.c = 1/2"] = b @ c - 1 / 2
    if order >= 3:
        res["b.c^2 = 1/3"] = b @ c**2 - 1 / 3
        res["b.A.c = 1/6"] = b @ A @ c - 1 / 6
    if order >= 4:
        res["b.c^3 = 1/4"] = b @ c**3 - 1 / 4
        res["b.(c*A.c) = 1/8"] = b @ (c * (A @ c)) - 1 / 8
        res["b.A.c^2 = 1/12"] = b @ A @ c**2 - 1 / 12
        res["b.A.A.c = 1/24"] = b @ A @ A @ c - 1 / 24
    return res


def _t(name, A, b, c, order, b_err=None, P=None):
    return Tableau(
        name,
        np.array(A, dtype=float),
        np.array(b, dtype=float),
        np.array(c, dtype=float),
        order,
        None if b_err is None else np.array(b_err, dtype=float),
        None if P is None else np.array(P, dtype=float),
    )


EULER = _t("euler", [[0]], [1], [0], 1)
MIDPOINT = _t("midpoint", [[0, 0], [1 / 2, 0]], [0, 1], [0, 1 / 2], 2)
HEUN = _t("heun", [[0, 0], [1, 0]], [1 / 2, 1 / 2], [0, 1], 2, b_err=[1, 0])
RALSTON = _t("ralston", [[0, 0], [2 / 3, 0]], [1 / 4, 3 / 4], [0, 2 / 3], 2)
KUTTA3 = _t("kutta3", [[0, 0, 0], [1 / 2, 0, 0], [-1, 2, 0]], [1 / 6, 2 / 3, 1 / 6], [0, 1 / 2, 1], 3)
RK4 = _t(
    "rk4",
    [[0, 0, 0, 0], [1 / 2, 0, 0, 0], [0, 1 / 2, 0, 0], [0, 0, 1, 0]],
    [1 / 6, 1 / 3, 1 / 3, 1 / 6],
    [0, 1 / 2, 1 / 2, 1],
    4,
)
RK38 = _t(
    "rk38",
    [[0, 0, 0, 0], [1 / 3, 0, 0, 0], [-1 / 3, 1, 0, 0], [1, -1, 1, 0]],
    [1 / 8, 3 / 8, 3 / 8, 1 / 8],
    [0, 1 / 3, 2 / 3, 1],
    4,
)
DOPRI5 = _t(
    "dopri5",
    [
        [0, 0, 0, 0, 0, 0, 0],
        [1 / 5, 0, 0, 0, 0, 0, 0],
        [3 / 40, 9 / 40, 0, 0, 0, 0, 0],
        [44 / 45, -56 / 15, 32 / 9, 0, 0, 0, 0],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0, 0],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0, 0],
        [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
    ],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
    [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
    5,
    b_err=[5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40],
    # Shampine's quartic continuous extension (Hairer et al. II.6, the one SciPy's RK45 uses)
    P=[
        [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
        [0, 0, 0, 0],
        [0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
        [0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
        [0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632],
        [0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
        [0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423],
    ],
)

_TSIT5_B = [
    0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396,
    0.01,
    0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
    1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
    -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
    2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841,
    0,
]
TSIT5 = _t(
    "tsit5",
    [
        [0, 0, 0, 0, 0, 0, 0],
        [0.161, 0, 0, 0, 0, 0, 0],
        [
            -0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943,
            0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569,
            0, 0, 0, 0, 0,
        ],
        [
            2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
            -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
            4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077,
            0, 0, 0, 0,
        ],
        [
            5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
            -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
            7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
            -0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635,
            0, 0, 0,
        ],
        [
            5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
            -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
            8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
            -0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835,
            -0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206,
            0, 0,
        ],
        _TSIT5_B,
    ],
    _TSIT5_B,
    [0, 0.161, 0.327, 0.9, 0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604, 1, 1],
    5,
    b_err=[
        0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271,
        0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270,
        0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813,
        1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761,
        -2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702,
        1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089,
        1 / 66,
    ],
    # Tsitouras's quartic interpolant b_j(theta), expanded in powers of theta
    P=[
        [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
        [0.0, 0.13169999999999998, -0.2234, 0.1017],
        [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
        [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
        [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
        [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
        [0.0, 1.5, -4.0, 2.5],
    ],
)


def _rows(r, c, entries):
    """A dense (r, c) array from ``{row: {column: value}}``."""
    out = np.zeros((r, c))
    for i, row in entries.items():
        for j, v in row.items():
            out[i, j] = v
    return out


# Dormand & Prince's 12-stage, eighth-order method DOP853 (Hairer, Nørsett & Wanner, §II.10, and
# Hairer's Fortran code dop853.f): nodes, stage coefficients (rows 12 and 13-15: the weights b, then the
# three extra stages of the dense output), the two error estimators (err5, err3) and the dense output's
# D rows. The same doubles as SciPy's dop853_coefficients (tests/test_tableaux.py checks that), written
# out here so that odeverify's own DOP853 needs no SciPy import.
_DOP853_C = np.array([0.0, 0.05260015195876773, 0.0789002279381516, 0.1183503419072274, 0.2816496580927726, 0.3333333333333333, 0.25, 0.3076923076923077, 0.6512820512820513, 0.6, 0.8571428571428571, 1.0, 1.0, 0.1, 0.2, 0.7777777777777778])
_DOP853_A = _rows(16, 16, {
    1: {0: 0.05260015195876773},
    2: {0: 0.0197250569845379, 1: 0.0591751709536137},
    3: {0: 0.02958758547680685, 2: 0.08876275643042054},
    4: {0: 0.2413651341592667, 2: -0.8845494793282861, 3: 0.924834003261792},
    5: {0: 0.037037037037037035, 3: 0.17082860872947386, 4: 0.12546768756682242},
    6: {0: 0.037109375, 3: 0.17025221101954405, 4: 0.06021653898045596, 5: -0.017578125},
    7: {0: 0.03709200011850479, 3: 0.17038392571223998, 4: 0.10726203044637328, 5: -0.015319437748624402, 6: 0.008273789163814023},
    8: {0: 0.6241109587160757, 3: -3.3608926294469414, 4: -0.868219346841726, 5: 27.59209969944671, 6: 20.154067550477894, 7: -43.48988418106996},
    9: {0: 0.47766253643826434, 3: -2.4881146199716677, 4: -0.590290826836843, 5: 21.230051448181193, 6: 15.279233632882423, 7: -33.28821096898486, 8: -0.020331201708508627},
    10: {0: -0.9371424300859873, 3: 5.186372428844064, 4: 1.0914373489967295, 5: -8.149787010746927, 6: -18.52006565999696, 7: 22.739487099350505, 8: 2.4936055526796523, 9: -3.0467644718982196},
    11: {0: 2.273310147516538, 3: -10.53449546673725, 4: -2.0008720582248625, 5: -17.9589318631188, 6: 27.94888452941996, 7: -2.8589982771350235, 8: -8.87285693353063, 9: 12.360567175794303, 10: 0.6433927460157636},
    12: {0: 0.054293734116568765, 5: 4.450312892752409, 6: 1.8915178993145003, 7: -5.801203960010585, 8: 0.3111643669578199, 9: -0.1521609496625161, 10: 0.20136540080403034, 11: 0.04471061572777259},
    13: {0: 0.056167502283047954, 6: 0.25350021021662483, 7: -0.2462390374708025, 8: -0.12419142326381637, 9: 0.15329179827876568, 10: 0.00820105229563469, 11: 0.007567897660545699, 12: -0.008298},
    14: {0: 0.03183464816350214, 5: 0.028300909672366776, 6: 0.053541988307438566, 7: -0.05492374857139099, 10: -0.00010834732869724932, 11: 0.0003825710908356584, 12: -0.00034046500868740456, 13: 0.1413124436746325},
    15: {0: -0.42889630158379194, 5: -4.697621415361164, 6: 7.683421196062599, 7: 4.06898981839711, 8: 0.3567271874552811, 12: -0.0013990241651590145, 13: 2.9475147891527724, 14: -9.15095847217987},
})
_DOP853_E = _rows(2, 13, {
    0: {0: 0.01312004499419488, 5: -1.2251564463762044, 6: -0.4957589496572502, 7: 1.6643771824549864, 8: -0.35032884874997366, 9: 0.3341791187130175, 10: 0.08192320648511571, 11: -0.022355307863886294},
    1: {0: -0.18980075407240762, 5: 4.450312892752409, 6: 1.8915178993145003, 7: -5.801203960010585, 8: -0.4226823213237919, 9: -0.1521609496625161, 10: 0.20136540080403034, 11: 0.02265179219836082},
})
_DOP853_D = _rows(4, 16, {
    0: {0: -8.428938276109013, 5: 0.5667149535193777, 6: -3.0689499459498917, 7: 2.38466765651207, 8: 2.117034582445028, 9: -0.871391583777973, 10: 2.2404374302607883, 11: 0.6315787787694688, 12: -0.08899033645133331, 13: 18.148505520854727, 14: -9.194632392478356, 15: -4.436036387594894},
    1: {0: 10.427508642579134, 5: 242.28349177525817, 6: 165.20045171727028, 7: -374.5467547226902, 8: -22.113666853125306, 9: 7.733432668472264, 10: -30.674084731089398, 11: -9.332130526430229, 12: 15.697238121770845, 13: -31.139403219565178, 14: -9.35292435884448, 15: 35.81684148639408},
    2: {0: 19.985053242002433, 5: -387.0373087493518, 6: -189.17813819516758, 7: 527.8081592054236, 8: -11.57390253995963, 9: 6.8812326946963, 10: -1.0006050966910838, 11: 0.7777137798053443, 12: -2.778205752353508, 13: -60.19669523126412, 14: 84.32040550667716, 15: 11.99229113618279},
    3: {0: -25.69393346270375, 5: -154.18974869023643, 6: -231.5293791760455, 7: 357.6391179106141, 8: 93.40532418362432, 9: -37.45832313645163, 10: 104.0996495089623, 11: 29.8402934266605, 12: -43.53345659001114, 13: 96.32455395918828, 14: -39.17726167561544, 15: -149.72683625798564},
})

# the order-7 interpolant F0..F6 of dop853.f (F0 = dy, F1 = h f0 - dy, F2 = 2 dy - h (f1 + f0),
# F3..F6 = h D k), evaluated as y0 + x(F0 + (1-x)(F1 + x(F2 + (1-x)(F3 + ...)))), in the power basis:
# P_k(x) is the polynomial F_k multiplies, and the dense output's theta^(m+1) rows are sum_k P_k[m+1] F_k.
def _dop853_dense_rows():
    poly = np.polynomial.Polynomial
    x, omx = poly([0.0, 1.0]), poly([1.0, -1.0])
    factors = [x, x * omx, x**2 * omx, x**2 * omx**2, x**3 * omx**2, x**3 * omx**3, x**4 * omx**3]
    M = np.zeros((7, 8))
    for k, p in enumerate(factors):
        M[k, : len(p.coef)] = p.coef
    b = _DOP853_A[12, :12]
    G = np.zeros((7, 16))  # F_k / h as weights of [k_1..k_12, f(y_new), extra_1..extra_3]
    G[0, :12] = b
    G[1] = -G[0]
    G[1, 0] += 1.0
    G[2] = 2 * G[0]
    G[2, 12] -= 1.0
    G[2, 0] -= 1.0
    G[3:] = _DOP853_D
    return (M[:, 1:].T @ G).T  # (16, 7): like P, row j weights k_j, column m the power theta^(m+1)


def _dop853():
    s = 12
    return Tableau("dop853", _DOP853_A[:s, :s].copy(), _DOP853_A[s, :s].copy(), _DOP853_C[:s].copy(), 8)


def _dop853_fsal():
    # the same method with f(y_new) as a 13th stage (weight 0): the first-same-as-last form the adaptive
    # loop steps, with the two error estimators and the three extra stages of the dense output
    s = 13
    b = np.append(_DOP853_A[12, :12], 0.0)
    return Tableau(
        "dop853", _DOP853_A[:s, :s].copy(), b, _DOP853_C[:s].copy(), 8,
        P=_dop853_dense_rows(), E=_DOP853_E.copy(), A_extra=_DOP853_A[s:, :].copy(), c_extra=_DOP853_C[s:].copy(),
    )


DOP853 = _dop853()
#: DOP853 in first-same-as-last form with its error estimators and dense output, for adaptive stepping
DOP853_ADAPTIVE = _dop853_fsal()

#: the methods by name
TABLEAUX = {t.name: t for t in (EULER, MIDPOINT, HEUN, RALSTON, KUTTA3, RK4, RK38, DOPRI5, TSIT5, DOP853)}


def get_tableau(method) -> Tableau:
    """A :class:`Tableau` by name (case-insensitive), or the tableau itself."""
    if isinstance(method, Tableau):
        return method
    if not isinstance(method, str):
        raise InvalidTypeError(f"method must be a tableau name or a Tableau, got {type(method).__name__}")
    tab = TABLEAUX.get(method.lower())
    if tab is None:
        raise InvalidArgumentError(f"method={method!r} is not a known tableau; use one of {', '.join(TABLEAUX)}")
    return tab


def rk_step(f, t, z, h, tableau: Tableau, xp=np):
    """One explicit Runge–Kutta step: ``z(t) -> z(t + h)``.

    Parameters
    ----------
    f : callable
        ``f(z, t) -> dz/dt``, same shape as ``z``.
    t : float
    z : array, shape (..., n)
    h : float
        Step size (negative to step backwards in time).
    tableau : Tableau
    xp : module
        ``numpy`` or ``autograd.numpy``; only ``+`` and ``*`` are used, so
        any array type with those operations works.

    Returns
    -------
    array, shape of ``z``
    """
    A, b, c = tableau.A, tableau.b, tableau.c
    if len(b) > 2 and hasattr(xp, "tensordot"):
        return _rk_step_stacked(f, t, z, h, A, b, c, xp)
    ks = []
    for i in range(len(b)):
        zi = z
        for j in range(i):
            if A[i, j] != 0.0:
                zi = zi + (h * A[i, j]) * ks[j]
        ks.append(f(zi, t + c[i] * h))
    out = z
    for i in range(len(b)):
        if b[i] != 0.0:
            out = out + (h * b[i]) * ks[i]
    return out


def _rk_step_stacked(f, t, z, h, A, b, c, xp):
    # The stage combinations as one contraction each: far fewer operations
    # for a tracer such as autograd than a sum of scaled terms.
    ks = []
    for i in range(len(b)):
        if i == 0:
            zi = z
        else:
            zi = z + h * xp.tensordot(A[i, :i], xp.stack(ks), axes=1)
        ks.append(f(zi, t + c[i] * h))
    return z + h * xp.tensordot(b, xp.stack(ks), axes=1)


def _concrete(x):
    """The float value of ``x`` even when autograd traces it."""
    while hasattr(x, "_value"):
        x = x._value
    return float(x)


def odeint_fixed(f, z0, ts, *, method="rk4", steps=None, max_step=None, xp=np):
    """Integrate with a fixed-step method and return the state at every time in ``ts``.

    Each interval ``[t_i, t_{i+1}]`` is split into equal steps: ``steps`` of
    them, or the fewest whose size is at most ``max_step``. Differentiable by
    autograd with respect to ``z0``, ``ts`` and whatever ``f`` closes over when
    ``xp=autograd.numpy``.

    Parameters
    ----------
    f : callable
        ``f(z, t) -> dz/dt``.
    z0 : array, shape (..., n)
    ts : sequence of float, shape (T,)
        Monotone times; ``ts[0]`` is the initial time.
    method : str or Tableau
        One of :data:`TABLEAUX`.
    steps : int or sequence of int, optional
        Steps per interval (one number for all, or one per interval).
    max_step : float, optional
        Largest step size (used when ``steps`` is not given).
    xp : module
        ``numpy`` or ``autograd.numpy``.

    Returns
    -------
    array, shape (T,) + z0.shape
    """
    tab = get_tableau(method)
    if (steps is None) == (max_step is None):
        raise InvalidArgumentError("give exactly one of steps (per interval) or max_step")
    n_int = len(ts) - 1
    if steps is not None:
        per = [steps] * n_int if np.ndim(steps) == 0 else list(steps)
        if len(per) != n_int or any(isinstance(m, bool) or int(m) != m or m < 1 for m in per):
            raise InvalidArgumentError(
                f"steps={steps!r} must be a positive integer or one positive integer per interval ({n_int})"
            )
        per = [int(m) for m in per]
    if max_step is not None and not (max_step > 0 and math.isfinite(max_step)):
        raise InvalidArgumentError(f"max_step={max_step!r} must be a positive finite number")
    out = [z0]
    z = z0
    for i in range(len(ts) - 1):
        t0, t1 = ts[i], ts[i + 1]
        m = per[i] if steps is not None else max(1, math.ceil(abs(_concrete(t1) - _concrete(t0)) / max_step - 1e-12))
        h = (t1 - t0) / m
        for k in range(m):
            z = rk_step(f, t0 + k * h, z, h, tab, xp=xp)
        out.append(z)
    return xp.stack(out)


def __dir__():
    # tab completion shows the public names, not the modules imported here (np, sp, ...)
    return sorted(__all__)
