"""Rich display in Jupyter and IPython: the system and its derivation as LaTeX, reports as HTML.

Nothing here imports IPython: the display protocol is only methods (``_repr_latex_``,
``_repr_html_``) that a notebook calls when it finds them. SymPy is imported by the functions that
print mathematics, NumPy by none, so the result classes can use this module freely.

The adjoint is rendered as :math:`\\lambda` (``λ`` in text), with one subscript per state or parameter
it belongs to (:math:`\\lambda_{x}`, :math:`\\lambda_{a}`, :math:`\\lambda_{t}`), so that it cannot be
read as a parameter called ``a`` (the symbols inside the system stay ``a_x``, ``a_a``, ...). When a
state, parameter or time name already starts with ``lambda``, the next free letter of ``μ, ν, ξ, κ``
is used instead.
"""

from __future__ import annotations

import html
import math

from .errors import InvalidArgumentError

__all__ = ["some", "Equations", "system_equations", "derivation_display", "report_html", "taylor_html", "fmt", "count"]

#: letters the adjoint may be rendered with: (name as in a SymPy Symbol, LaTeX, text)
_ADJOINT_LETTERS = (("lambda", r"\lambda", "λ"), ("mu", r"\mu", "μ"), ("nu", r"\nu", "ν"), ("xi", r"\xi", "ξ"),
                    ("kappa", r"\kappa", "κ"), ("varsigma", r"\varsigma", "ς"))


def some(items, limit=5):
    """``"a, b, c, d, e and 58 more"``: at most ``limit`` items of a list in words (messages stay short)."""
    items = [str(i) for i in items]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def fmt(value, spec=".3g"):
    """A number for a one-line repr: ``spec`` when finite, ``nan``/``inf`` as such, ``—`` for None."""
    if value is None:
        return "—"
    value = float(value)
    return f"{value:{spec}}" if math.isfinite(value) else str(value)


def count(n, word):
    """``"1 state"``, ``"3 states"``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------- LaTeX of a system
def _adjoint_letter(system):
    """The first letter of :data:`_ADJOINT_LETTERS` that starts no name of the system."""
    names = [system.time.name, *system.state_names, *system.param_names]
    for word, tex, text in _ADJOINT_LETTERS:
        if not any(n == word or n.startswith(word + "_") or (n.startswith(word) and n[len(word):].isdigit())
                   for n in names):
            return word, tex, text
    return _ADJOINT_LETTERS[-1]  # pragma: no cover - a system using every one of these names


def _adjoint_names(system):
    """(letter, {adjoint symbol: LaTeX}, {adjoint symbol: its display symbol}) for printing."""
    import sympy as sp

    word, tex, text = _adjoint_letter(system)
    owners = [*system.states, *system.params, system.time]
    adjoints = [*system.adjoint, *system.adjoint_theta, system.adjoint_time]
    latex = {a: f"{tex}_{{{sp.latex(s)}}}" for a, s in zip(adjoints, owners)}
    shown = {a: sp.Symbol(f"{word}_{s.name}", real=True) for a, s in zip(adjoints, owners)}
    return (word, tex, text), latex, shown


def latex(expr, **settings):
    r"""``sympy.latex`` with the step function printed as :math:`H(\cdot)`.

    SymPy prints ``Heaviside(x)`` as :math:`\theta(x)`, which reads as odeverify's
    parameter vector :math:`\theta`.
    """
    from sympy.printing.latex import LatexPrinter

    class _Printer(LatexPrinter):
        def _print_Heaviside(self, e, exp=None):
            tex = r"H\left(%s\right)" % self._print(e.args[0])
            return r"\left(%s\right)^{%s}" % (tex, exp) if exp else tex

    return _Printer(settings).doprint(expr)


def _matrix_latex(mat, symbol_names):
    if 0 in mat.shape:
        return rf"\text{{(empty, }}{mat.rows} \times {mat.cols}\text{{)}}"
    return latex(mat, mat_str="pmatrix", mat_delim="", symbol_names=symbol_names)


def system_equations(system) -> str:
    r"""The system as aligned equations, ``\begin{aligned} \frac{dS}{dt} &= … \\ … \end{aligned}``."""
    import sympy as sp

    t = sp.latex(system.time)
    lines = [rf"\frac{{d{sp.latex(s)}}}{{d{t}}} &= {latex(e)}" for s, e in zip(system.states, system.f)]
    return r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}"


def _titles(system, tex):
    """LaTeX left-hand sides of the derivation's equations (``tex`` the adjoint's letter)."""
    import sympy as sp

    t = sp.latex(system.time)
    lam, lam_th, lam_t, lam_aug = tex, rf"{tex}_{{\theta}}", rf"{tex}_{{{t}}}", rf"{tex}_{{\mathrm{{aug}}}}"
    aug = rf"(z, \theta, {t})"
    back = rf"\left(z, {lam}, {lam_th}, {lam_t}\right)"
    return {
        "f": rf"f(z, {t}; \theta)",
        "jac_z": r"\frac{\partial f}{\partial z}",
        "jac_theta": r"\frac{\partial f}{\partial \theta}",
        "jac_t": rf"\frac{{\partial f}}{{\partial {t}}}",
        "adjoint_rhs": rf"\frac{{d{lam}}}{{d{t}}} = -\left(\frac{{\partial f}}{{\partial z}}\right)^{{T}} {lam}",
        "adjoint_theta_rhs": rf"\frac{{d{lam_th}}}{{d{t}}} = -\left(\frac{{\partial f}}{{\partial \theta}}\right)^{{T}} {lam}",
        "adjoint_t_rhs": rf"\frac{{d{lam_t}}}{{d{t}}} = -\left(\frac{{\partial f}}{{\partial {t}}}\right)^{{T}} {lam}",
        "f_aug": rf"f_{{\mathrm{{aug}}}}{aug}",
        "jac_aug": rf"\frac{{\partial f_{{\mathrm{{aug}}}}}}{{\partial {aug}}}",
        "augmented_adjoint_rhs": rf"\frac{{d{lam_aug}}}{{d{t}}} = -\left(\frac{{\partial f_{{\mathrm{{aug}}}}}}"
                                 rf"{{\partial {aug}}}\right)^{{T}} {lam_aug}",
        "backward_rhs": rf"\frac{{d}}{{d{t}}} {back}",
        "backward_jac": rf"\frac{{\partial}}{{\partial {back}}} \frac{{d}}{{d{t}}} {back}",
    }


def _text_titles(system, text):
    """Plain-text titles of the derivation's matrices (``text`` the adjoint's letter)."""
    t = system.time.name
    return {
        "f": f"f(z, {t}; θ)",
        "jac_z": "∂f/∂z",
        "jac_theta": "∂f/∂θ",
        "jac_t": f"∂f/∂{t}",
        "adjoint_rhs": f"d{text}/d{t} = −(∂f/∂z)ᵀ {text}",
        "adjoint_theta_rhs": f"d{text}_θ/d{t} = −(∂f/∂θ)ᵀ {text}",
        "adjoint_t_rhs": f"d{text}_{t}/d{t} = −(∂f/∂{t})ᵀ {text}",
        "f_aug": f"f_aug(z, θ, {t}) = [f, 0, 1]",
        "jac_aug": f"∂f_aug/∂(z, θ, {t})",
        "augmented_adjoint_rhs": f"d{text}_aug/d{t} = −(∂f_aug/∂(z, θ, {t}))ᵀ {text}_aug",
        "backward_rhs": f"d/d{t} (z, {text}, {text}_θ, {text}_{t})",
        "backward_jac": f"∂/∂(z, {text}, {text}_θ, {text}_{t}) of d/d{t} (z, {text}, {text}_θ, {text}_{t})",
    }


class Equations:
    """Named matrices of a derivation, rendered: LaTeX in a notebook, text in a terminal.

    Returned by :meth:`odeverify.ODESystem.show`.

    Attributes
    ----------
    names : tuple of str
        The derivation's names shown, e.g. ``("jac_z",)``.
    latex : str
        The LaTeX source, without the ``$$`` delimiters: ``name = matrix`` for one name, an
        ``aligned`` environment with one equation per line for several.
    """

    def __init__(self, names, latex, text, shapes):
        self.names = tuple(names)
        self.latex = latex
        self._text = text
        self._shapes = shapes

    def _repr_latex_(self):
        return f"$${self.latex}$$"

    def __str__(self):
        return self._text

    def __repr__(self):
        shown = ", ".join(f"{n} ({r}×{c})" for n, (r, c) in zip(self.names, self._shapes))
        return f"<Equations {shown}>" if len(shown) <= 100 else f"<Equations {len(self.names)} matrices>"


def derivation_display(system, name=None) -> Equations:
    """The :class:`Equations` of one derived matrix (``name``), several (a list), or all (None)."""
    from ._system import _pretty_matrix

    valid = system.DERIVATION
    if name is None or isinstance(name, str):
        names = valid if name is None else (name,)
    elif isinstance(name, (list, tuple)):
        names = tuple(name)
    else:
        raise InvalidArgumentError(
            f"show: name must be a str, a list of str or None, got {type(name).__name__} {name!r:.60}; "
            f"use one of {', '.join(valid)}, e.g. system.show('jac_z')"
        )
    for nm in names:
        if not isinstance(nm, str) or nm not in valid:
            raise InvalidArgumentError(
                f"show: {nm!r:.60} is not a derived object of the system; use one of {', '.join(valid)} "
                "(or no name for all of them)"
            )
    if not names:
        raise InvalidArgumentError(f"show: no name given; use one of {', '.join(valid)} (or no name for all)")
    (_, tex, text), latex_names, shown = _adjoint_names(system)
    titles, text_titles = _titles(system, tex), _text_titles(system, text)
    mats = [getattr(system, nm) for nm in names]
    lhs = [titles[nm] for nm in names]
    rhs = [_matrix_latex(m, latex_names) for m in mats]
    if len(names) == 1:
        latex = f"{lhs[0]} = {rhs[0]}"
    else:  # one equation per line, aligned at the first "=" of each
        rows = [left.replace(" = ", " &= ", 1) + " = " + right if " = " in left else f"{left} &= {right}"
                for left, right in zip(lhs, rhs)]
        latex = r"\begin{aligned}" + r" \\[1ex] ".join(rows) + r"\end{aligned}"
    blocks = [
        f"{text_titles[nm]}  [{m.rows}×{m.cols}]\n{_pretty_matrix(m.xreplace(shown), True)}"
        for nm, m in zip(names, mats)
    ]
    return Equations(names, latex, "\n\n".join(blocks), [m.shape for m in mats])


# ---------------------------------------------------------------------------- HTML
_STATUS_STYLE = {
    "FAIL": "background-color:#f8d0d0;color:#8b0000;font-weight:bold",
    "inconclusive": "background-color:#fbe8c0",
    "missing": "background-color:#fbe8c0",
    "not checked": "color:#888",
}
_CELL = "padding:1px 8px;text-align:right;font-family:monospace"


def _e(value) -> str:
    return html.escape(str(value))


def _num(v, spec):
    return "—" if v is None else (f"{v:{spec}}" if math.isfinite(v) else str(v))


def _verdict(passed, text):
    color = "#1a7f37" if passed else "#b00020"
    word = "PASSED" if passed else "FAILED"
    return f'<p style="font-size:110%"><b style="color:{color}">{word}</b> — {_e(text)}</p>'


def report_html(report) -> str:
    """HTML of a :class:`~odeverify.GradientReport`: the verdict on top, then the per-entry table."""
    parts = ['<div class="odeverify-report">', _verdict(report.passed, report.summary)]
    if report.diagnoses:
        parts.append("<ul>" + "".join(f"<li>diagnosis: {_e(d)} (a hypothesis)</li>" for d in report.diagnoses)
                     + "</ul>")
    refs = " · ".join(e.name + ("" if e.independent else " [shares the adjoint derivation]")
                      for e in report.references)
    parts.append(f"<p>candidate: {_e(report.candidate_name)}<br>references: {_e(refs or '(none)')}<br>"
                 f"tolerance: {_e(report.tolerance_model)}</p>")
    head = ["quantity", "candidate", "reference", "|diff|", "tolerance", "ratio", "refs", "status"]
    parts.append('<table class="odeverify-rows"><thead><tr>'
                 + "".join(f'<th style="{_CELL}">{_e(h)}</th>' for h in head) + "</tr></thead><tbody>")
    for r in report.rows:
        style = _STATUS_STYLE.get(r.status, "")
        cells = [r.label, _num(r.candidate, ".7e"), _num(r.reference, ".7e"), _num(r.diff, ".2e"),
                 _num(r.tolerance, ".2e"), _num(r.ratio, ".2g"), f"{r.agreeing}/{r.available}",
                 r.status + (f" ({r.note})" if r.note else "")]
        parts.append(f'<tr class="odeverify-{_e(r.status.replace(" ", "-"))}" style="{style}">'
                     + "".join(f'<td style="{_CELL}">{_e(c)}</td>' for c in cells) + "</tr>")
    parts.append("</tbody></table>")
    if report.warnings:
        parts.append("<p>warnings:</p><ul>" + "".join(f"<li>{_e(w)}</li>" for w in report.warnings) + "</ul>")
    details = []
    for e in report.references:
        status = report.reference_status.get(e.name, "")
        notes = "".join(f"<br>note: {_e(n)}" for n in e.notes)
        details.append(f"<li>{_e(e.name)} ({e.seconds:.2f} s){_e(': ' + status if status else '')}"
                       f"<br>error model: {_e(e.error_model)}{notes}</li>")
    parts.append(f"<details><summary>references</summary><ul>{''.join(details)}</ul></details></div>")
    return "\n".join(parts)


def taylor_html(result, pass_rate) -> str:
    """HTML of a :class:`~odeverify.TaylorResult`: the verdict, a row per direction, the residuals folded."""
    parts = ['<div class="odeverify-taylor">', _verdict(result.passed, result.summary)]
    parts.append(f"<p>noise of a loss evaluation: {result.noise:.2e} (model); a correct gradient gives rate 2, "
                 f"a wrong one rate 1; a direction passes at rate ≥ {pass_rate:g}</p>")
    head = ["direction", "rate", "residuals used above", "steps"]
    parts.append('<table class="odeverify-directions"><thead><tr>'
                 + "".join(f'<th style="{_CELL}">{_e(h)}</th>' for h in head) + "</tr></thead><tbody>")
    floors = list(result.floors) or [None] * len(result.directions)
    for name, rate, h, floor in zip(result.directions, result.rates, result.steps, floors):
        if not math.isfinite(rate):
            style = _STATUS_STYLE["inconclusive"]
        else:
            style = _STATUS_STYLE["FAIL"] if rate < pass_rate else ""
        cells = [name, f"{rate:.3f}" if math.isfinite(rate) else "inconclusive", _num(floor, ".1e"), len(h)]
        parts.append(f'<tr style="{style}">' + "".join(f'<td style="{_CELL}">{_e(c)}</td>' for c in cells)
                     + "</tr>")
    parts.append("</tbody></table>")
    windows = list(result.windows) or [()] * len(result.directions)
    for name, h, r, win in zip(result.directions, result.steps, result.residuals, windows):
        rows = "".join(
            f'<tr><td style="{_CELL}">{"*" if k in win else ""}</td><td style="{_CELL}">{hk:.3e}</td>'
            f'<td style="{_CELL}">{rk:.3e}</td></tr>'
            for k, (hk, rk) in enumerate(zip(h, r))
        )
        parts.append(f"<details><summary>residuals of direction {_e(name)} (* used for the rate)</summary>"
                     f"<table><tr><th></th><th>h</th><th>residual</th></tr>{rows}</table></details>")
    if result.warnings:
        parts.append("<p>warnings:</p><ul>" + "".join(f"<li>{_e(w)}</li>" for w in result.warnings) + "</ul>")
    parts.append("</div>")
    return "\n".join(parts)
