"""The ``odeverify`` command line.

Commands: ``derive``, ``gradients``, ``check``, ``taylor``. Exit status: 0 on
success (a check that passed), 1 when a solve or a check fails, 2 for bad
input (a malformed spec, a bad option).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import __version__
from ._adjoint import adjoint_gradients
from .errors import IntegrationError, OdeverifyError
from .spec import load_spec, printable

__all__ = ["main"]


def _add_solver_options(p):
    p.add_argument("--method", help="solver (DOP853, RK45, RK23, Radau, BDF, LSODA); default from the spec or DOP853")
    p.add_argument("--mode", choices=["interpolated", "backsolve"], help="adjoint mode; default from the spec")
    p.add_argument("--rtol", type=float, help="relative tolerance; default from the spec or 1e-8")
    p.add_argument("--atol", type=float, help="absolute tolerance; default from the spec or 1e-8")


def _parser():
    parser = argparse.ArgumentParser(
        prog="odeverify", description="Derive, compute and verify adjoint gradients of ODEs."
    )
    parser.add_argument("--version", action="version", version=f"odeverify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("derive", help="print the symbolic derivation (Jacobians, adjoint and augmented dynamics)")
    p.add_argument("spec", help="a TOML problem spec, e.g. examples/lotka_volterra.toml")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    p.add_argument(
        "--only", help="comma-separated names of the matrices to print (f, jac_z, jac_theta, jac_t, adjoint_rhs, ...)"
    )
    p = sub.add_parser("gradients", help="print the loss and every gradient by the adjoint method")
    p.add_argument("spec")
    _add_solver_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser(
        "check",
        help="check the adjoint gradients against independent references (exit 0 pass, 1 fail, 2 bad input)",
    )
    p.add_argument("spec")
    _add_solver_options(p)
    p.add_argument(
        "--references",
        help="comma-separated references: adjoint, adjoint-backsolve, forward, autograd, fd (default: all that apply)",
    )
    p.add_argument("--check-rtol", type=float, help="relative tolerance of the comparison (default 1e-5)")
    p.add_argument("--check-atol", type=float, help="absolute tolerance of the comparison")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = sub.add_parser("taylor", help="Taylor remainder test of the adjoint gradients (exit 0 pass, 1 fail)")
    p.add_argument("spec")
    _add_solver_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _solver_kwargs(problem, args):
    kw = problem.adjoint_kwargs()
    for key in ("method", "mode", "rtol", "atol"):
        val = getattr(args, key, None)
        if val is not None:
            kw[key] = val
    return kw


def _header(problem):
    lines = [f"{printable(problem.name)}  ({printable(problem.source)})"]
    if problem.description:
        lines.append(f"  {printable(problem.description)}")
    s = problem.system
    for name, expr in zip(s.state_names, s.f):
        lines.append(f"  d{name}/d{s.time.name} = {expr}")
    lines.append(f"  z0 = {np.array2string(problem.z0, precision=6)}   theta = {np.array2string(problem.theta, precision=6)}")
    lines.append(f"  ts = {np.array2string(problem.ts, precision=6, threshold=12)}")
    lines.append(f"  loss: {problem.loss_description}")
    return lines


def gradient_labels(system, ts):
    """Labels of every gradient entry, in the order z0, theta, t."""
    labels = [f"∂L/∂{name}(t0)" for name in system.state_names]
    labels += [f"∂L/∂{name}" for name in system.param_names]
    labels += [f"∂L/∂t{i}" + (" (t0)" if i == 0 else " (tN)" if i == len(ts) - 1 else "") for i in range(len(ts))]
    return labels


def _cmd_derive(args, out):
    problem = load_spec(args.spec)
    names = None
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in problem.system.DERIVATION]
        if bad:
            raise OdeverifyError(f"--only: {bad[0]!r} is not one of {', '.join(problem.system.DERIVATION)}")
    if args.latex:
        out.write(problem.system.pretty(names, latex=True) + "\n")
    else:
        out.write(problem.system.pretty(names) + "\n")
    return 0


def _cmd_gradients(args, out):
    problem = load_spec(args.spec)
    kw = _solver_kwargs(problem, args)
    res = adjoint_gradients(problem.system, problem.z0, problem.ts, problem.theta, problem.loss, **kw)
    if args.json:
        d = res.to_dict()
        d["name"] = problem.name
        d["labels"] = gradient_labels(problem.system, problem.ts)
        out.write(json.dumps(d, indent=2) + "\n")
        return 0
    lines = _header(problem)
    lines.append(f"  solver: {res.method}, mode {res.mode}, rtol {res.rtol:g}, atol {np.asarray(res.atol)}")
    lines.append("")
    lines.append(f"L = {res.loss:.15g}")
    lines.append("")
    values = np.concatenate([np.ravel(res.z0), res.theta, res.t])
    labels = gradient_labels(problem.system, problem.ts)
    width = max(len(s) for s in labels)
    lines.append(f"{'quantity':<{width}}  gradient")
    for lab, val in zip(labels, values):
        lines.append(f"{lab:<{width}}  {val: .15e}")
    lines.append("")
    lines.append(f"work: {res.stats}")
    if res.z0_reconstruction_error is not None:
        lines.append(f"backsolve: reconstructed z(t0) is {res.z0_reconstruction_error:.3g} from z0 (max norm)")
    lines.append(
        f"check: dL/dt0 from the integrated a_t and from -a(t0+)·f(z0, t0) differ by {res.diagnostics['t0_discrepancy']:.3g}"
    )
    out.write("\n".join(lines) + "\n")
    return 0


def _candidate(problem, args):
    kw = _solver_kwargs(problem, args)

    def adjoint(z0, ts, theta):
        return adjoint_gradients(problem.system, z0, ts, theta, problem.loss, **kw).as_dict()

    mode = kw.get("mode", "interpolated")
    adjoint.__name__ = (
        f"odeverify adjoint ({mode}, {kw.get('method', 'DOP853')}, rtol={kw.get('rtol', 1e-8):g}, "
        f"atol={np.array2string(np.asarray(kw.get('atol', 1e-8), dtype=float), precision=3)})"
    )
    return adjoint


def _cmd_check(args, out):
    from ._check import check_gradients

    problem = load_spec(args.spec)
    settings = dict(problem.check)  # keys and types checked by load_spec
    refs = settings.get("references")
    if args.references:
        refs = [r.strip() for r in args.references.split(",") if r.strip()]
    rtol = args.check_rtol if args.check_rtol is not None else settings.get("rtol")
    atol = args.check_atol if args.check_atol is not None else settings.get("atol")
    report = check_gradients(
        problem.system, problem.z0, problem.ts, problem.theta, problem.loss,
        candidate=_candidate(problem, args), references=refs, rtol=rtol, atol=atol,
    )
    if args.json:
        out.write(report.to_json(indent=2) + "\n")
    else:
        out.write("\n".join(_header(problem)) + "\n\n" + str(report) + "\n")
    return 0 if report.passed else 1


def _cmd_taylor(args, out):
    from ._taylor import taylor_test

    problem = load_spec(args.spec)
    result = taylor_test(
        problem.system, problem.z0, problem.ts, problem.theta, problem.loss,
        candidate=_candidate(problem, args), seed=args.seed,
    )
    if args.json:
        out.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        out.write("\n".join(_header(problem)) + "\n\n" + str(result) + "\n")
    return 0 if result.passed else 1


def main(argv=None, out=None):
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    handlers = {"derive": _cmd_derive, "gradients": _cmd_gradients, "check": _cmd_check, "taylor": _cmd_taylor}
    try:
        return handlers[args.command](args, out)
    except IntegrationError as exc:
        print(f"odeverify {args.command}: solve failed: {exc}", file=sys.stderr)
        return 1
    except OdeverifyError as exc:
        print(f"odeverify {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
