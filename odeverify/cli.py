"""The ``odeverify`` command line.

Commands: ``derive``, ``gradients``, ``check``, ``taylor``, ``sweep`` (:mod:`odeverify.sweep`). Exit status: 0 on
success (a check that passed), 1 when a solve or a check fails, 2 for bad
input (a malformed spec, a bad option), 3 when ``check`` passed but cannot
fail (a :class:`~odeverify.errors.TrivialTestWarning`, e.g. every gradient
identically zero): such a pass shows nothing, so it is not reported as 0.

Warnings raised while a command runs are printed once each, as a line
(``odeverify check: warning: ...`` on stderr) unless the report already lists
them; never as Python's raw warning with a source line. When stdout cannot
encode the report's symbols (``PYTHONIOENCODING=ascii``), they are written in
ASCII (``∂L/∂θ`` as ``dL/dtheta``).

The problem's header is printed before the work starts; on a terminal, a one-line progress display
on stderr follows the references as they are computed (nothing is drawn when stderr is piped).
NumPy, SciPy and SymPy are imported inside the commands, so ``odeverify --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path

from ._progress import TerminalProgress
from .errors import IntegrationError, InvalidArgumentError, OdeverifyError, TrivialTestWarning

__all__ = ["main", "gradient_labels", "EXIT_PASSED", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_TRIVIAL"]

#: exit status: success, a passed check
EXIT_PASSED = 0
#: exit status: a solve or a check failed
EXIT_FAILED = 1
#: exit status: bad input (a malformed spec, a bad option)
EXIT_BAD_INPUT = 2
#: exit status: the check passed but cannot fail (TrivialTestWarning), so the pass shows nothing
EXIT_TRIVIAL = 3

_EXIT_HELP = (
    "exit status: 0 success (a passed check), 1 a solve or check failed, 2 bad input, "
    "3 the check passed but cannot fail (trivial: e.g. every gradient identically zero)"
)
#: the adjoint modes (odeverify._validate.MODES, repeated here so that parsing imports no NumPy)
_MODES = ("interpolated", "backsolve", "quadrature")

#: an example per command, shown by --help
_EXAMPLES = {
    "derive": [
        ("the whole derivation as text", "odeverify derive examples/lotka_volterra.toml"),
        ("two matrices as LaTeX", "odeverify derive examples/lotka_volterra.toml --latex --only jac_z,adjoint_rhs"),
    ],
    "gradients": [
        ("loss and gradients by the adjoint", "odeverify gradients examples/lotka_volterra.toml"),
        ("as JSON, backsolve mode", "odeverify gradients examples/lotka_volterra.toml --mode backsolve --json"),
    ],
    "check": [
        ("check against every reference", "odeverify check examples/lotka_volterra.toml"),
        ("check your own gradients", "odeverify check examples/lotka_volterra.toml --candidate grads.json"),
        ("two references, looser comparison",
         "odeverify check examples/lotka_volterra.toml --references forward,fd --check-rtol 1e-4"),
    ],
    "taylor": [
        ("Taylor remainder test", "odeverify taylor examples/lotka_volterra.toml --seed 1"),
    ],
    "sweep": [
        ("200 cells on a local process pool", "odeverify sweep examples/sweep.toml --workers 2"),
        ("after an interruption, only the missing cells", "odeverify sweep examples/sweep.toml --resume"),
        ("one cell alone, with its full report", "odeverify sweep examples/sweep.toml --cell g11:RK45:1e-06:interpolated"),
    ],
}


def _epilog(*commands, tail=""):
    lines = ["examples:"]
    for command in commands:
        lines += [f"  {cmd}\n      {what}" for what, cmd in _EXAMPLES[command]]
    return "\n".join(lines) + ("\n\n" + tail if tail else "")

#: ASCII spellings of the report's symbols, for a stdout that cannot encode them
_ASCII = {
    "∂": "d", "θ": "theta", "—": "--", "–": "-", "−": "-", "≤": "<=", "≥": ">=", "·": "*", "½": "1/2",
    "Σ": "sum", "×": "x", "²": "^2", "³": "^3", "≈": "~", "⁺": "+", "⁻": "-", "→": "->", "…": "...",
    "ᵖ": "^p", "±": "+/-", "₀": "0", "∞": "inf", "∈": "in", "ε": "eps", "λ": "lambda", "‖": "||", "’": "'",
    "ᵀ": "^T", "ω": "omega", "σ": "sigma", "φ": "phi", "ŷ": "y_hat", "∘": "o", "§": "section ",
}
_ASCII_TABLE = str.maketrans(_ASCII)


def _can_encode(stream) -> bool:
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return True  # a StringIO or another text sink without an encoding takes any text
    try:
        "".join(_ASCII).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _ascii_line(line: str) -> str:
    """``line`` in ASCII; a run of 2+ spaces after a lengthened symbol gives back the extra width (tables stay aligned)."""
    out, debt, i = [], 0, 0
    while i < len(line):
        ch = line[i]
        if ch == " ":
            j = i
            while j < len(line) and line[j] == " ":
                j += 1
            run = j - i
            if run >= 2 and debt:
                give = min(debt, run - 1)
                run -= give
                debt -= give
            out.append(" " * run)
            i = j
            continue
        rep = _ASCII.get(ch, ch)
        debt += len(rep) - 1
        out.append(rep)
        i += 1
    return "".join(out).encode("ascii", "backslashreplace").decode("ascii")


class _Output:
    """The stream a command writes to: records the text (to tell which warnings it printed) and
    falls back to ASCII when the stream cannot encode the report's symbols."""

    def __init__(self, stream):
        self.stream = stream
        self.ascii_only = not _can_encode(stream)
        self.text = []

    def write(self, text):
        self.text.append(text)
        if self.ascii_only:
            text = "\n".join(_ascii_line(line) for line in text.split("\n"))
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


def _add_solver_options(p):
    p.add_argument("--method", help="solver (DOP853, RK45, RK23, Radau, BDF, LSODA); default from the spec or DOP853")
    p.add_argument("--mode", choices=list(_MODES), help="adjoint mode; default from the spec or interpolated")
    p.add_argument("--rtol", type=float, help="relative tolerance; default from the spec or 1e-8")
    p.add_argument("--atol", type=float, help="absolute tolerance; default from the spec or 1e-8")


class _Version(argparse.Action):
    """``--version``: the package's version, looked up only when asked (importlib.metadata is slow to import)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__

        sys.stdout.write(f"odeverify {__version__}\n")  # on stdout, as argparse's own version action
        parser.exit()


def _parser():
    raw = argparse.RawDescriptionHelpFormatter  # keeps the examples' lines
    parser = argparse.ArgumentParser(
        prog="odeverify", description="Derive, compute and verify adjoint gradients of ODEs.",
        epilog=_epilog(*_EXAMPLES, tail=_EXIT_HELP), formatter_class=raw,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("derive", help="print the symbolic derivation (Jacobians, adjoint and augmented dynamics)",
                       epilog=_epilog("derive"), formatter_class=raw)
    p.add_argument("spec", help="a TOML problem spec, e.g. examples/lotka_volterra.toml")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    p.add_argument(
        "--only", help="comma-separated names of the matrices to print (f, jac_z, jac_theta, jac_t, adjoint_rhs, ...)"
    )
    p = sub.add_parser("gradients", help="print the loss and every gradient by the adjoint method",
                       epilog=_epilog("gradients"), formatter_class=raw)
    p.add_argument("spec")
    _add_solver_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser(
        "check",
        help="check the adjoint gradients against independent references (exit 0 pass, 1 fail, 2 bad input, "
        "3 passed but trivial)",
        epilog=_epilog("check", tail=_EXIT_HELP), formatter_class=raw,
    )
    p.add_argument("spec")
    _add_solver_options(p)
    p.add_argument(
        "--references",
        help="comma-separated references: adjoint, adjoint-backsolve, forward, autograd, fd (default: all that apply)",
    )
    p.add_argument("--check-rtol", type=float, help="relative tolerance of the comparison (default 1e-5)")
    p.add_argument("--check-atol", type=float, help="absolute tolerance of the comparison")
    p.add_argument(
        "--candidate", metavar="FILE",
        help="check these gradients instead of odeverify's adjoint: a JSON file, the output of "
        "`odeverify gradients --json` or a mapping {\"z0\": [...], \"theta\": [...], \"t\": [...]} (read as data)",
    )
    p.add_argument(
        "--quantities",
        help="comma-separated quantities the verdict covers: z0, theta, t (default all three)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_plot_option(p, "the report (|candidate − reference| against each entry's tolerance)")
    p = sub.add_parser("taylor", help="Taylor remainder test of the adjoint gradients (exit 0 pass, 1 fail)",
                       epilog=_epilog("taylor"), formatter_class=raw)
    p.add_argument("spec")
    _add_solver_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_plot_option(p, "the residuals against h with slopes 1 and 2")
    _add_sweep_command(sub)
    return parser


def _add_plot_option(p, what):
    p.add_argument("--plot", metavar="FILE.png",
                   help=f"also write a plot of {what} to FILE (png, pdf, svg: by the suffix); needs matplotlib, "
                   "pip install 'odeverify[plot]'")


def _plot_ready(path):
    """Before any work: with ``--plot``, matplotlib must import (else the error names the extra to install)
    and ``path`` must name a file of a format matplotlib writes in an existing directory, so that a bad path
    is reported at once rather than after the whole check (and is never silently renamed: matplotlib would
    write ``DIR.png`` for a directory and ``FILE.png`` for a name without a suffix)."""
    if path is None:
        return
    from .plotting import require_matplotlib

    require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    target = Path(path)
    suffix = target.suffix.lower().lstrip(".")
    if not path or target.is_dir():
        problem = "is a directory" if path else "is empty"
        raise InvalidArgumentError(f"--plot {path!r} {problem}; give a file name, e.g. --plot report.png")
    if suffix not in formats:
        raise InvalidArgumentError(
            f"--plot {path}: the suffix {target.suffix or '(none)'!s} names no format matplotlib writes; "
            f"use one of {', '.join('.' + f for f in sorted(formats))}, e.g. --plot report.png"
        )
    if not target.parent.is_dir():
        raise InvalidArgumentError(
            f"--plot {path}: the directory {target.parent} does not exist; create it or write elsewhere"
        )


def _write_plot(result, path):
    """Save ``result.plot()`` to ``path`` (its format from the suffix); errors name the option."""
    if path is None:
        return
    fig = result.plot()
    try:
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as exc:  # an unwritable path, an unknown suffix
        raise InvalidArgumentError(f"--plot {path}: cannot write the plot: {exc}") from None


def _add_sweep_command(sub):
    from .sweep._cli import add_parser

    p = add_parser(sub)
    p.epilog, p.formatter_class = _epilog("sweep"), argparse.RawDescriptionHelpFormatter


def _cmd_sweep(args, out):
    from .sweep._cli import run

    return run(args, out)


def _solver_kwargs(problem, args):
    kw = problem.adjoint_kwargs()
    for key in ("method", "mode", "rtol", "atol"):
        val = getattr(args, key, None)
        if val is not None:
            kw[key] = val
    return kw


def _header(problem):
    import numpy as np

    from .spec import printable

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


def _tolerance_text(tol) -> str:
    """A tolerance as given (``1e-04``, not ``0.``): a number with :g, an array as a list of them."""
    import numpy as np

    arr = np.asarray(tol, dtype=float)
    if arr.ndim == 0:
        return f"{float(arr):g}"
    return "[" + ", ".join(f"{v:g}" for v in arr.ravel()) + "]"


def gradient_labels(system, ts):
    """Labels of every gradient entry, in the order z0, theta, t: the same as in ``check``'s report.

    ``∂L/∂x(t0)`` per state, ``∂L/∂θ[k] (name)`` per parameter, ``∂L/∂t<i>`` per time
    (the last marked ``(tN)``).
    """
    labels = [f"∂L/∂{name}(t0)" for name in system.state_names]
    labels += [f"∂L/∂θ[{k}] ({name})" for k, name in enumerate(system.param_names)]
    labels += [f"∂L/∂t{i}" + (" (tN)" if i == len(ts) - 1 else "") for i in range(len(ts))]
    return labels


def _print_header(problem, out, end="\n\n"):
    """The problem's header, at once: before the work, which may take a while."""
    out.write("\n".join(_header(problem)) + end)
    out.flush()


def _cmd_derive(args, out):
    from .spec import load_system

    system = load_system(args.spec)  # a derivation needs only states, params, time and rhs
    names = None
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        valid = ", ".join(system.DERIVATION)
        if not names:
            raise OdeverifyError(f"--only {args.only!r} selects nothing; give one or more of {valid}")
        bad = [n for n in names if n not in system.DERIVATION]
        if bad:
            raise OdeverifyError(f"--only: {bad[0]!r} is not one of {valid}")
    if args.latex:
        out.write(system.pretty(names, latex=True) + "\n")
    else:
        out.write(system.pretty(names, unicode=not getattr(out, "ascii_only", False)) + "\n")
    return 0


def _cmd_gradients(args, out):
    import numpy as np

    from ._adjoint import adjoint_gradients
    from .spec import load_spec

    problem = load_spec(args.spec)
    kw = _solver_kwargs(problem, args)
    if not args.json:
        _print_header(problem, out, end="\n")
    res = adjoint_gradients(problem.system, problem.z0, problem.ts, problem.theta, problem.loss, **kw)
    if args.json:
        d = res.to_dict()
        d["name"] = problem.name
        d["labels"] = gradient_labels(problem.system, problem.ts)
        out.write(json.dumps(d, indent=2) + "\n")
        return 0
    lines = [f"  solver: {res.method}, mode {res.mode}, rtol {res.rtol:g}, atol {_tolerance_text(res.atol)}", ""]
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
    from ._adjoint import adjoint_gradients

    kw = _solver_kwargs(problem, args)

    def adjoint(z0, ts, theta, rtol=kw.get("rtol", 1e-8), atol=kw.get("atol", 1e-8)):
        # rtol/atol keywords: a failing check may solve it again tighter, to tell tolerance from bug
        options = {**kw, "rtol": rtol, "atol": atol}
        return adjoint_gradients(problem.system, z0, ts, theta, problem.loss, **options).as_dict()

    mode = kw.get("mode", "interpolated")
    adjoint.__name__ = (
        f"odeverify adjoint ({mode}, {kw.get('method', 'DOP853')}, rtol={kw.get('rtol', 1e-8):g}, "
        f"atol={_tolerance_text(kw.get('atol', 1e-8))})"
    )
    return adjoint


#: the keys of `odeverify gradients --json` besides the gradients, ignored in a candidate file
_GRADIENTS_JSON_EXTRA = {
    "loss", "ts", "mode", "method", "rtol", "atol", "stats", "z0_reconstruction_error", "diagnostics", "name", "labels",
}
#: largest candidate file read, in bytes
MAX_CANDIDATE_BYTES = 10_000_000


def _read_candidate(path, problem):
    """A candidate gradient file: JSON data (never code), checked against the spec's shapes.

    Returns the mapping {"z0", "theta", "t"} (a quantity the file leaves out or sets to null is absent).
    """
    from pathlib import Path

    def bad(why):
        return InvalidArgumentError(f"--candidate {path}: {why}")

    file = Path(path)
    if not file.is_file():
        raise bad("no such file; pass a JSON file such as the output of `odeverify gradients SPEC --json`")
    if file.stat().st_size > MAX_CANDIDATE_BYTES:
        raise bad(f"the file is over the limit of {MAX_CANDIDATE_BYTES} bytes")
    try:
        data = json.loads(file.read_bytes().decode("utf-8"), parse_constant=_non_finite)
    except UnicodeDecodeError as exc:
        raise bad(f"not UTF-8 text (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
        raise bad(f"not valid JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise bad(f"holds a JSON {type(data).__name__}, not an object with keys z0, theta, t")
    unknown = set(data) - {"z0", "theta", "t"} - _GRADIENTS_JSON_EXTRA
    if unknown:
        raise bad(f"unknown key {sorted(unknown)[0]!r:.40}; a candidate has keys z0, theta, t")
    if "ts" in data and not _same_times(data["ts"], problem.ts):
        raise bad("its ts differ from the spec's: it was computed for another problem")
    shapes = {"z0": problem.z0.shape, "theta": problem.theta.shape, "t": problem.ts.shape}
    out = {}
    for key, shape in shapes.items():
        value = data.get(key)
        if value is None:
            continue
        arr = _numbers(value, shape)
        if arr is None:
            raise bad(f"{key} must be a list of {shape[0]} numbers (the spec's shape {shape}), got {value!r:.60}")
        out[key] = arr
    if not out:
        raise bad("gives no gradient; give at least one of z0, theta, t")
    return out


def _non_finite(token):
    # JSON has no NaN or Infinity; Python's json module would read them as numbers
    raise ValueError(f"{token} is not a JSON number")


def _numbers(value, shape):
    """``value`` as a float array of ``shape`` when it is a list of real numbers within the float range, else None."""
    import numpy as np

    if not isinstance(value, list) or len(value) != shape[0]:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= 1.7976931348623157e308
               for v in value):
        return None
    return np.array([float(v) for v in value])


def _same_times(ts, expected):
    import numpy as np

    arr = _numbers(ts, expected.shape)
    return arr is not None and np.allclose(arr, expected, rtol=1e-12, atol=1e-12)


def _check_references(problem, refs):
    """The references of ``odeverify check``: the chosen ones plus the spec's closed form ([exact])."""
    from ._check import DEFAULT_REFERENCES

    exact = problem.exact_reference()
    if exact is None:
        return refs
    return [*(DEFAULT_REFERENCES if refs is None else refs), exact]


def _cmd_check(args, out):
    from ._check import check_gradients
    from .spec import load_spec

    _plot_ready(args.plot)
    problem = load_spec(args.spec)
    settings = dict(problem.check)  # keys and types checked by load_spec
    refs = settings.get("references")
    if args.references:
        refs = [r.strip() for r in args.references.split(",") if r.strip()]
    rtol = args.check_rtol if args.check_rtol is not None else settings.get("rtol")
    atol = args.check_atol if args.check_atol is not None else settings.get("atol")
    quantities = None
    if args.quantities is not None:
        quantities = [q.strip() for q in args.quantities.split(",") if q.strip()]
        bad = [q for q in quantities if q not in ("z0", "theta", "t")]
        if bad or not quantities:
            raise InvalidArgumentError(
                f"--quantities: {(bad[0] if bad else args.quantities)!r} is not a comma-separated list of z0, theta, "
                "t; e.g. --quantities z0,theta"
            )
    candidate = _read_candidate(args.candidate, problem) if args.candidate else _candidate(problem, args)
    if not args.json:
        _print_header(problem, out)
    display = TerminalProgress.for_stream(sys.stderr, "odeverify check")
    try:
        report = check_gradients(
            problem.system, problem.z0, problem.ts, problem.theta, problem.loss,
            candidate=candidate, references=_check_references(problem, refs), rtol=rtol, atol=atol,
            quantities=quantities, progress=display,
        )
    finally:
        if display is not None:
            display.close()
    if args.candidate:
        report.candidate_name = f"gradients read from {args.candidate}"
    _write_plot(report, args.plot)
    if args.json:
        out.write(report.to_json(indent=2) + "\n")
    else:
        out.write(str(report) + "\n")
    return 0 if report.passed else 1


def _cmd_taylor(args, out):
    from ._taylor import taylor_test
    from .spec import load_spec

    _plot_ready(args.plot)
    problem = load_spec(args.spec)
    if not args.json:
        _print_header(problem, out)
    result = taylor_test(
        problem.system, problem.z0, problem.ts, problem.theta, problem.loss,
        candidate=_candidate(problem, args), seed=args.seed,
    )
    _write_plot(result, args.plot)
    if args.json:
        out.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        out.write(str(result) + "\n")
    return 0 if result.passed else 1


def main(argv=None, out=None):
    """Run the command line; returns the exit status (see the module documentation)."""
    out = _Output(out or sys.stdout)
    err = _Output(sys.stderr)
    parser = _parser()
    args = parser.parse_args(argv)
    handlers = {"derive": _cmd_derive, "gradients": _cmd_gradients, "check": _cmd_check, "taylor": _cmd_taylor}
    handlers["sweep"] = _cmd_sweep
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = handlers[args.command](args, out)
        except IntegrationError as exc:
            err.write(f"odeverify {args.command}: solve failed: {exc}\n")
            status = EXIT_FAILED
        except OdeverifyError as exc:
            err.write(f"odeverify {args.command}: error: {exc}\n")
            status = EXIT_BAD_INPUT
    _print_warnings(args.command, caught, "".join(out.text), err)
    if status == EXIT_PASSED and args.command == "check" and any(
        issubclass(w.category, TrivialTestWarning) for w in caught
    ):
        err.write(f"odeverify check: the check passed but cannot fail (see the warnings): exit {EXIT_TRIVIAL}\n")
        status = EXIT_TRIVIAL
    return status


def _print_warnings(command, caught, printed, err):
    """Each warning once, as a line on ``err``, unless the command's output already shows it."""
    seen = set()
    for w in caught:
        message = re.sub(r"\s+", " ", str(w.message)).strip()
        if message in seen or message in re.sub(r"\s+", " ", printed):
            continue
        seen.add(message)
        err.write(f"odeverify {command}: warning: {message}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def __dir__():
    # tab completion shows the public names, not the modules imported here
    return sorted(__all__)
