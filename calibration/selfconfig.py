"""Self-configuring start of a large mesh's calibration: every MZI's bar point, column by column (issue 12).

Why: the global fit from the datasheet twin finds the phase offsets only while the phase error accumulated
along a path is small (~N σ² ≲ 3.2 rad²); labsat's error model (σ = 0.3 rad) passes it from 40 modes on.
This start measures every internal phase's bar point MZI by MZI, so that the global fit
(``progressive.calibrate_progressive``) begins near the chip (as in the self-configuring / progressive
set-up of meshes: Miller 2013, 2017; Hamerly, Bandyopadhyay & Englund 2022), with the instruments a
mesh calibration has: real input amplitudes per port (one-hot inputs), the N detector powers, heater
controls.

Method (calibration/README.md, "Self-configuring start", has the why of each step):
1. θ bar points, column by column from the inputs (``passes`` sweeps over the mesh): the column's θ moved
   together around their bar estimates (θ = π + Δ), every setting read with all N one-hot inputs; the light
   an MZI on rows (i, i+1) sends across is read as the modulation of the readings by the next column's φ
   heater on row i+1 (three groups of modulators, three steps each), while the same rows meet again two
   columns on (that MZI at 50:50); the φ heaters of the previous column are flipped by π and averaged
   (light leaked upstream). The modulation vanishes where the MZI sends nothing across (θ = π): per MZI,
   Σ|Z(Δ)|² of the fitted Z = r + p e^{iΔ} + q e^{−iΔ} is minimised. The last two columns are read directly
   (power sent across). Round 9 (calibration/README.md, "Round 9"): the bottom row's MZIs (no φ on the last
   row; before, they kept their estimate) are modulated by the φ on row N − 2 two columns on, the top input of
   the MZI mixing their rows there (``bottom_row``, a fifth group: ~14 N² readings more per pass); and since the
   modulation also vanishes at the cross point half a turn away, an estimate more than ``prior_window`` from the
   datasheet is taken half a turn on (:func:`nearer_branch`).
2. φ loop phases (:func:`external_phases`): splitter two columns back and the column's MZIs at 50:50, the
   column's φ stepped (four steps, extrapolated to ψ = 0: round 5); the fringe's phase measured minus the twin's
   predicted one corrects the φ offset, swept over the columns 4 times on the same readings (round 5b:
   :func:`correct_phases`; one sweep is biased wherever the twin holds the chip's leakage and crosstalk).
3. (round 6b, off by default: ``links=True``) each crosstalk link read directly (:func:`read_links`: every other θ of
   a column moved one turn, π/2 → 5π/2; the neighbours' φ fringe shifts; +36 N² readings) before the φ offsets are
   read again (calibration/README.md, "Round 6b").

Readings: ~118 N² per θ pass (~104 N² before round 9) and ~36 N² for the φ stage, ~48 N² with its four ψ steps
(round 5, the default; 2 θ passes: ~255–320 N² in all at N = 48–64 with round 6b's links).

The twin's offsets are those that reproduce the bar controls with the datasheet's efficiency (1) and no
crosstalk, so they hold near the bar state (the efficiency error folds into the offset, ~(eff − 1)·π);
``measure(centre=bar_controls(twin))`` closes the progressive fit's bands in on that state.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class SelfConfigResult:
    readings: int = 0
    settings: int = 0
    passes: list[dict] = field(default_factory=list)  # per pass: mean |change| of the θ offsets (rad)
    phase_readings: "PhaseReadings | None" = None  # the φ stage's readings, for :func:`correct_phases` again
    couplers: "np.ndarray | None" = None  # (MZIs, 2) splitting-angle errors read by the θ stage (round 6), 0 where unread
    elements: list = field(default_factory=list)  # identify_elements' history (round 6), when run


@dataclass
class PhaseReadings:
    """What :func:`external_phases` measured: per column (None where it has no MZI) the MZIs' top rows, the
    inputs, the lit inputs, and per side the base controls and the measured fringes (per fringe, per lit input);
    the settings are rebuilt from the base controls by :func:`_phase_settings`."""
    extrapolate: bool
    columns: list


_GRID = np.linspace(-np.pi / 2, np.pi / 2, 721)
_BASIS = np.stack([np.ones_like(_GRID), np.exp(1j * _GRID), np.exp(-1j * _GRID)], 1)


def _bar_controls(theta_offset: np.ndarray, w0: float, delta: float = 0.0) -> np.ndarray:
    """Controls putting every θ at π + ``delta`` by the datasheet map (eff 1, no crosstalk), in [0, 2π/w0)."""
    return np.mod(np.pi + delta - theta_offset, 2 * np.pi) / w0


def nearer_branch(theta: np.ndarray, prior: np.ndarray, window: float) -> np.ndarray:
    """θ bar-point estimates more than ``window`` (rad, wrapped) from the prior taken half a turn on (round 9).

    The modulation the θ stage reads vanishes where the MZI sends nothing across, at its bar point, and where it
    sends everything across, at its cross point half a turn away; a reading disturbed by light scattered upstream
    can land on the cross point, and later passes (searching ±π/2 around the estimate) keep it there. The bar
    points lie within ~1 rad of the datasheet (labsat's model: 0.34 rad spread, largest of 6 × 2016 MZIs 1.83 rad),
    so of the two zeros the one nearer the prior is the bar point (window 2 rad: chosen on tuning chip 1 from
    π/2, 1.8, 2.0 and 2.3; calibration/README.md, "Round 9")."""
    far = np.abs(np.angle(np.exp(1j * (theta - prior)))) > window
    return np.where(far, theta + np.pi, theta)


def self_configure(hardware, twin, passes: int = 2, deltas: tuple[float, ...] = (-1.4, -0.7, 0.0, 0.7, 1.4),
                   phases: bool = True, progress=None, couplers: bool = False,
                   coupler_limit: float = 0.12, elements: bool = False, kappa_links: bool = False,
                   links: bool = False, prior_window: float | None = 2.0,
                   bottom_row: bool = True) -> SelfConfigResult:
    """Set ``twin.offset``'s θ entries to the measured bar points (in place); returns the readings used.

    ``hardware.forward(x, u)`` only (one-hot inputs, heater controls); ``twin`` gives the layout and the
    datasheet phase per unit control (``phase_per_u``).

    Round 6 (calibration/README.md, "Round 6"; off by default, no reading more): ``couplers`` puts each MZI's
    two coupler errors read from the θ stage's fringes in the twin (within ±``coupler_limit``) before the φ
    stage; ``elements`` (with ``couplers``) then fits the φ heaters' offsets, efficiencies and crosstalk
    links over the φ stage's stored readings (:func:`identify_elements`), puts the links' mean in every link
    and reads the φ offsets again from zero with that twin (:func:`correct_phases`); ``kappa_links`` keeps
    each link's own estimate and the fitted offsets instead (measured worse: calibration/README.md, "Round 6").
    Round 6b (off by default; 36 N² readings more): ``links`` (with ``elements``) reads each crosstalk link directly
    (:func:`read_links`, :func:`fit_links`) from the links' mean before the φ offsets are read again.
    Round 9 (on by default): ``bottom_row`` reads the bottom row's θ too (~14 N² readings more per pass);
    ``prior_window`` (rad, None: off) keeps every θ estimate on the branch nearer the twin's θ offsets at entry
    (:func:`nearer_branch`). At N = 64, evaluation chips 2–6, θ offsets more than 1 rad off: the θ stage alone, same
    noise stream, 6 / 14 / 0 / 8 / 10 before, 3 / 4 / 0 / 5 / 3 with both; the whole start as the benchmark runs it,
    17 / 18 / 0 / 4 / 21 (round 7's) before, 1 / 6 / 0 / 4 / 7 with both (calibration/README.md, "Round 9").
    """
    elements = elements or links
    couplers = couplers or elements
    layout = twin.layout
    n, w0 = twin.modes, float(twin.phase_per_u)
    deltas = np.asarray(deltas, dtype=float)
    if len(deltas) < 3:
        raise ValueError(f"self-configuration needs at least 3 settings per column, got {len(deltas)}")
    basis = np.stack([np.ones_like(deltas), np.exp(1j * deltas), np.exp(-1j * deltas)], 1)  # (S, 3)
    solve = np.linalg.pinv(basis)                                                          # (3, S)
    solve_real = np.linalg.pinv(np.stack([np.ones_like(deltas), np.cos(deltas), np.sin(deltas)], 1))
    theta = twin.offset.detach().numpy()[0::2].astype(float).copy()  # present θ offsets
    prior = theta.copy()
    eye = np.eye(n)
    result = SelfConfigResult()
    columns = list(zip(layout.columns, layout.column_slices))
    # the φ heaters that modulate: every φ of a column but its last (the last is the physical neighbour of
    # the next column's first θ heater, whose thermal crosstalk would move that MZI with the modulation)
    phi_heaters = [2 * np.arange(sl.start, sl.stop) + 1 for _, sl in columns]
    phi_rows = [tops for tops, _ in columns]
    # the modulating φ heaters of a column take turns in three groups (every third MZI), so that a modulated
    # φ's thermal crosstalk never moves an MZI on a neighbour's path; ψ in three steps per group
    # (a column's last φ heater is the physical neighbour of the first θ heater two columns on, the first
    # rows' meeting point: it goes in a fourth group of its own when it would share the first MZI's group)
    groups = 5  # group 4: the bottom row's MZIs (``bottom_row``)
    downs = 2 * np.pi * np.arange(3) / 3
    group_of = [np.arange(len(r)) % 3 for r in phi_rows]
    for g_ in group_of:
        if len(g_) > 1 and g_[-1] == 0:
            g_[-1] = 3
    ups = (0.0, np.pi)
    from_pq, from_r = np.zeros(layout.n_mzi), np.zeros(layout.n_mzi)  # per MZI its couplers' errors (round 6)
    for p in range(passes):
        before = theta.copy()
        for c, (tops, sl) in enumerate(columns):
            if len(tops) == 0:
                continue
            # MZIs on rows (i, i+1) whose row i+1 is modulated just after the column, and in which group
            nxt = phi_rows[c + 1] if c + 1 < n else np.zeros(0, int)
            modulated = np.isin(tops + 1, nxt)
            g = np.zeros(len(tops), int)
            if modulated.any():
                g[modulated] = group_of[c + 1][np.searchsorted(nxt, tops[modulated] + 1)]
            # round 9 (``bottom_row``): the bottom row's MZI (no φ on the last row) modulated by the φ on row N − 2
            # two columns on (the top input of the MZI that mixes the same rows there), in a group of its own
            low = bottom_row and c + 2 < n and tops[-1] == n - 2
            if low:
                modulated[-1], g[-1] = True, 4
                low_phi = 2 * (columns[c + 2][1].stop - 1) + 1
            z = np.zeros((groups, len(deltas), n, n), dtype=complex)  # (group, Δ, input, output)
            pa = np.zeros((len(deltas), n, n))  # unmodulated readings, summed over the upstream flips
            bar = np.zeros(layout.n_heaters)
            bar[0::2] = _bar_controls(theta, w0)
            if c + 2 < n:  # the same rows two columns on at 50:50: the two paths meet there
                mix = np.arange(columns[c + 2][1].start, columns[c + 2][1].stop)[modulated]
                bar[2 * mix] = _bar_controls(theta[mix], w0, -np.pi / 2)
            for s, d in enumerate(deltas):
                for up in ups:
                    for k in [*(np.unique(group_of[c + 1]) if c + 1 < n else [0]), *([4] if low else [])]:
                        for down in downs:
                            u = bar.copy()
                            u[2 * np.arange(sl.start, sl.stop)] = _bar_controls(theta[sl], w0, d)
                            if c > 0:  # not the last φ: the physical neighbour of this column's first θ
                                u[phi_heaters[c - 1][:-1]] = up / w0
                            if k == 4:
                                u[low_phi] = down / w0
                            elif c + 1 < n:
                                u[phi_heaters[c + 1][group_of[c + 1] == k]] = down / w0
                            y = hardware.forward(eye, u)
                            z[k, s] += y * np.exp(1j * down)
                            if k == 0 and down == 0:
                                pa[s] += y
                            result.settings += 1
                            result.readings += n
            zi = np.zeros((len(deltas), 2 * len(tops), n), dtype=complex)  # per MZI's two inputs
            zi[:, 0::2] = z[g, :, tops].transpose(1, 0, 2)
            zi[:, 1::2] = z[g, :, tops + 1].transpose(1, 0, 2)
            # unmodulated MZIs (the last two columns: nothing mixes their rows before the detectors; the bottom
            # row's MZIs: no φ on the last row): the power sent across (input i to output i+1, input i+1 to
            # output i) read directly, A − B cos(θ − π)
            across = (pa[:, tops, tops + 1] + pa[:, tops + 1, tops]) / len(ups)
            _, bc, bs = solve_real @ across
            delta_bar = np.clip(np.arctan2(-bs, -bc), -np.pi / 2, np.pi / 2)
            if c + 2 < n and modulated.any():
                v = np.einsum("ts,sio->iot", solve, zi)  # Z = r + p e^{iΔ} + q e^{-iΔ}: (r, p, q) per (input, output)
                # the modulation vanishes where the MZI sends nothing across (b = 0): minimise Σ |Z|² over both
                # inputs' outputs, a trigonometric polynomial in Δ, on a grid within ±π/2 of the present estimate
                gram = np.einsum("iot,ios->its", v, v.conj())
                gram = gram[0::2] + gram[1::2]                      # (MZIs, 3, 3)
                best = _GRID[np.argmin(np.einsum("gt,mts,gs->gm", _BASIS, gram, _BASIS.conj()).real, 0)]
                # without ``bottom_row`` the bottom row's MZIs keep their estimate: read directly, their power
                # across is biased by the mixing two columns on (measured worse than no update)
                delta_bar = np.where(modulated, best, 0.0)
                # round 6: the MZI's couplers from the fringe's three terms (calibration/README.md, "Round 6"):
                # the light sent across, s_a c_b e^{iθ} + c_a s_b, read against the light kept on the row,
                # c_a c_b e^{iθ} − s_a s_b, gives e^{±iΔ} terms in the ratio tan² a and a constant term
                # −½ sin 2a sin 2δb relative to them: δa from |p| / |q|, δb from r against p − q
                pp = np.einsum("iot->it", np.abs(v) ** 2)
                pp = (pp[0::2] + pp[1::2])                                          # (MZIs, 3)
                rpq = np.einsum("io,io->i", v[:, :, 0], np.conj(v[:, :, 1] - v[:, :, 2]))
                rpq = rpq[0::2] + rpq[1::2]
                den = np.einsum("io->i", np.abs(v[:, :, 1] - v[:, :, 2]) ** 2)
                den = den[0::2] + den[1::2]
                idx = sl.start + np.nonzero(modulated)[0]
                from_pq[idx] = (np.log(pp[:, 1] / np.maximum(pp[:, 2], 1e-300)) / 8)[modulated]
                # the constant term also holds light leaked by the bottom row's MZIs (their θ unread, ~0.3 rad
                # off the bar point): read only where the MZI's rows are two or more rows clear of them
                clear = modulated & _clear_of_bottom(tops, n)
                from_r[sl.start + np.nonzero(clear)[0]] = (-rpq.real / np.maximum(2 * den, 1e-300))[clear]
            theta[sl] = theta[sl] - delta_bar
            if prior_window is not None:
                theta[sl] = nearer_branch(theta[sl], prior[sl], prior_window)
            if progress:
                progress(p * len(columns) + c + 1, passes * len(columns))
        change = np.angle(np.exp(1j * (theta - before)))
        result.passes.append({"pass": p, "mean_abs_change": float(np.mean(np.abs(change)))})
    theta = np.angle(np.exp(1j * theta))  # wrapped to (-π, π]
    # in the twin's convention (coupler_error[:, 0] the first coupler the light meets) the terms above read
    # the second coupler's error from |p| / |q| and the first's from r, both with the opposite sign (checked
    # against the virtual chip's truth, N = 24: correlation 0.99 and 0.79)
    result.couplers = -np.stack([from_r, from_pq], 1)
    # held within ±coupler_limit (rad): the constant term r is small and read against the mesh's other leaks
    # (first coupler: 1 % of MZIs read 0.17–0.23 rad off at N = 24)
    result.couplers = np.clip(result.couplers, -coupler_limit, coupler_limit)
    with torch.no_grad():
        twin.offset[0::2] = torch.as_tensor(theta, dtype=twin.offset.dtype)
        if couplers:
            twin.coupler_error[:] = torch.as_tensor(result.couplers, dtype=twin.coupler_error.dtype).reshape(
                twin.coupler_error.shape)
    if phases:
        external_phases(hardware, twin, result=result)
        if elements:  # round 6: the φ heaters' elements from the stored φ readings, then the loop phases again
            result.elements = identify_elements(twin, result.phase_readings, elements=ELEMENT_FIT)
            if not kappa_links:
                # one crosstalk for every link, the mean of those fitted (the links near the bottom row stay
                # unfitted): a link's own estimate (±0.019 at κ ≈ 0.06) times the θ heater's control at the bar
                # state (~0.5 × 9 rad) moves its φ by ~0.1 rad, more than the mean leaves (N = 48, round 6)
                fitted = _fitted_links(layout)
                with torch.no_grad():
                    twin.crosstalk[:] = float(twin.crosstalk[torch.as_tensor(fitted)].mean()) if fitted.any() else 0.0
                    twin.offset[1::2] = 0.0
                correct_phases(twin, result.phase_readings)
                if links:  # round 6b: every link read on its own, from the mean, the φ offsets then read again
                    # (fitted with the φ offsets read from the mean: from zero offsets the links come out worse,
                    # N = 24 chip 1: correlation 0.78 against 0.87)
                    fit_links(twin, read_links(hardware, twin, result.phase_readings, result))
                    with torch.no_grad():
                        twin.offset[1::2] = 0.0
                    correct_phases(twin, result.phase_readings)
    return result


def external_phases(hardware, twin, progress=None, result: SelfConfigResult | None = None,
                    extrapolate: bool = True, sweeps: int = 4) -> SelfConfigResult:
    """The φ offsets, column by column, once the θ offsets hold the bar points (``twin`` fitted in place).

    For column c: every MZI of the column at 50:50 (θ = π/2) and the MZI on the same rows two columns
    back also at 50:50, everything else at its bar point, so one-hot input i is split over rows (i, i+1)
    and recombined at the column's MZI, whose φ (top row) is stepped through ψ = 0, 2π/3, 4π/3: the
    power difference of detectors i and i+1 is a fringe ``cos(ψ + φ_offset + known path phases)``. The
    twin predicts the same fringe with its present φ offsets (the path phases, the earlier columns' φ
    offsets, the couplers: all in the model); the measured fringe's phase minus the twin's is the φ
    offset's correction. The first two columns have no MZI two columns back: inputs i and i+1 are lit
    together. The φ heaters of the next column are stepped through three values and averaged, so that
    light crossing between the two rows on the way to the detectors adds no bias; the φ heaters three
    columns back are flipped by π and averaged, so that light which leaked onto row i+1 before the
    splitter adds none either. Only the loop phases (φ minus the previous column's φ on row i+1) are
    observable this way; they are what the powers depend on.

    ``extrapolate`` (round 5): ψ in four steps (0, 2π/3, 4π/3, 2π) read as two three-step fringes, whose phases
    hold at their mean steps (2π/3 and 4π/3) with the φ heater's unknown efficiency; their difference
    extrapolates the loop phase to ψ = 0, where the φ heaters sit in the bar state and near which the bands
    measure (one three-step fringe: the efficiency error, 5 %, moves the estimate by ~0.1 rad).

    ``sweeps`` (round 5b): the readings are taken once, every column first (their controls depend on the θ
    offsets and efficiencies only, not on the φ offsets); the corrections then sweep the columns ``sweeps``
    times over those stored readings, no reading more. Why: the twin's predicted fringe for column c
    also depends on the φ offsets of the columns after it (light the bar state's couplers leak across rows,
    ~0.06 of amplitude per MZI, takes paths through them), which one sweep still holds at their old
    values: on the noiseless chip with every other parameter true, one sweep leaves loop phases
    median / p90 0.03 / 0.12 rad (N = 12), four sweeps ~0.003 / 0.01 (calibration/README.md, round 5b).
    """
    result = result or SelfConfigResult()
    layout = twin.layout
    n, w0 = twin.modes, float(twin.phase_per_u)
    columns = list(zip(layout.columns, layout.column_slices))
    psis, phases = _phase_steps(extrapolate)
    # a quarter turn of every θ heater, and the bar state: this stage moves only the φ offsets
    quarter = np.pi / 2 / (w0 * np.exp(twin.log_eff.detach().numpy()[0::2]))
    bar = bar_controls(twin)
    stored = []  # per column: (tops, inputs x, lit, per side (base controls, measured fringes per fringe and input))
    for c, (tops, sl) in enumerate(columns):
        if len(tops) == 0:
            stored.append(None)
            continue
        mzis = np.arange(sl.start, sl.stop)
        if c >= 2:
            x = np.eye(n)
            lit = [tops, tops + 1]                          # inputs i and i+1 both reach MZI (i, i+1)
        else:
            x = np.zeros((len(tops), n))
            x[np.arange(len(tops)), tops] = x[np.arange(len(tops)), tops + 1] = 1.0
            lit = [np.arange(len(tops))]
        sides = []
        # the column's MZIs at 50:50 on either side of the bar point (θ = π/2 and 3π/2): their heaters warm
        # the φ heater being read (thermal crosstalk) by as much less and more than at the bar point, so the
        # two estimates' crosstalk errors cancel in their mean (one side alone: ~0.2 rad at κ = 0.06)
        for side in (1.0, -1.0):
            base = bar.copy()
            base[2 * mzis] -= side * quarter[mzis]
            if c >= 2:
                back = np.arange(columns[c - 2][1].start, columns[c - 2][1].stop)
                base[2 * back] -= quarter[back]             # the splitters two columns back
            us = _phase_settings(layout, w0, c, base, psis)
            measured = np.stack([hardware.forward(x, u) for u in us])      # (settings, inputs, outputs)
            result.settings += len(us)
            result.readings += len(us) * len(x)
            sides.append((base, [[_fringe(measured, inp, tops, ph) for inp in lit] for ph in phases]))
        stored.append((tops, x, lit, sides))
        if progress:
            progress(c + 1, len(columns))
    result.phase_readings = PhaseReadings(extrapolate, stored)
    correct_phases(twin, result.phase_readings, sweeps)
    return result


_NEXT_STEPS = 2 * np.pi * np.arange(3) / 3  # the next column's φ during the φ stage (averaged out)


def _phase_steps(extrapolate: bool):
    """The column's ψ steps and, per fringe read from them, e^{-iψ} per setting (0 off its steps)."""
    psis = 2 * np.pi * np.arange(4 if extrapolate else 3) / 3   # the column's φ
    sets = [slice(0, 3), slice(1, 4)] if extrapolate else [slice(0, 3)]
    phases = []
    for pick in sets:
        w = np.zeros(len(psis), complex)
        w[pick] = np.exp(-1j * psis[pick])
        phases.append(np.tile(np.repeat(w, len(_NEXT_STEPS)), 2)[:, None])
    return psis, phases


def _phase_settings(layout, w0: float, c: int, base: np.ndarray, psis: np.ndarray) -> np.ndarray:
    """The φ stage's settings (2 × ψ steps × 3, H) of column ``c`` around ``base``: the column's φ at ψ, the
    next column's φ through three steps (averaged out), the φ three columns back flipped by π (averaged out)."""
    n = layout.modes
    sl = layout.column_slices[c]
    mzis = np.arange(sl.start, sl.stop)
    us = []
    for up in (0.0, np.pi):
        for psi in psis:
            for down in _NEXT_STEPS:
                u = base.copy()
                u[2 * mzis + 1] = psi / w0
                if c + 1 < n:
                    nxt = layout.column_slices[c + 1]
                    u[2 * np.arange(nxt.start, nxt.stop) + 1] = down / w0
                if c >= 3:  # light that leaked onto row i+1 before the splitter: flipped, averaged out
                    back = layout.column_slices[c - 3]
                    u[2 * np.arange(back.start, back.stop - 1) + 1] = up / w0
                us.append(np.clip(u, 0.0, 1.0))
    return np.asarray(us)


def correct_phases(twin, readings: PhaseReadings, sweeps: int = 4) -> None:
    """Move ``twin``'s φ offsets (in place) until its predicted fringes agree with the φ stage's ``readings``:
    ``sweeps`` sweeps over the columns, each column's correction the measured fringe's phase minus the twin's
    (no reading taken). Also usable after a fit has moved the twin's other parameters (round 5b)."""
    layout, w0 = twin.layout, float(twin.phase_per_u)
    psis, phases = _phase_steps(readings.extrapolate)
    for _ in range(sweeps):
        for c, entry in enumerate(readings.columns):
            if entry is None:
                continue
            sl = layout.column_slices[c]
            mzis = np.arange(sl.start, sl.stop)
            agree = _agreement(twin, layout, w0, c, entry, psis, phases).sum(0)   # over the sides
            correction = np.angle(agree[0])
            if readings.extrapolate:  # from the fringes' mean steps 2π/3 and 4π/3 back to ψ = 0
                correction = correction + np.angle(agree[0] * np.conj(agree[1]))
            with torch.no_grad():
                twin.offset[2 * mzis + 1] += torch.as_tensor(correction, dtype=twin.offset.dtype)
    with torch.no_grad():
        twin.offset[1::2] = torch.remainder(twin.offset[1::2] + np.pi, 2 * np.pi) - np.pi


def _agreement(twin, layout, w0: float, c: int, entry, psis, phases) -> np.ndarray:
    """(sides, fringes, MZIs): column ``c``'s measured fringes against ``twin``'s predicted ones, per input (inputs i
    and i+1 see opposite fringes) as unit phasors summed over the lit inputs (each side and input weighs the same)."""
    tops, x, lit, sides = entry
    out = np.zeros((len(sides), len(phases), len(tops)), complex)
    for s, (base, fringes) in enumerate(sides):
        us = _phase_settings(layout, w0, c, base, psis)
        with torch.no_grad():
            xs = torch.as_tensor(np.broadcast_to(x, (len(us),) + x.shape).copy())
            predicted = twin(xs, torch.as_tensor(us)).numpy()
        for k, ph in enumerate(phases):
            for inp, seen in zip(lit, fringes[k]):
                one = seen * np.conj(_fringe(predicted, inp, tops, ph))
                out[s, k] += one / np.maximum(np.abs(one), 1e-300)
    return out


def _fringe(p: np.ndarray, inp, tops: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """(MZIs,): the e^{iψ} part of detector i minus detector i+1 for input(s) ``inp``, over the settings."""
    return np.sum((p[:, inp, tops] - p[:, inp, tops + 1]) * phase, 0)


def _loop_pairs(layout) -> tuple[np.ndarray, np.ndarray]:
    """(MZI, previous MZI) index pairs: each MZI and the previous column's MZI on its row i+1, where there is one."""
    here_all, prev_all = [], []
    for c in range(1, layout.modes):
        prev = layout.columns[c - 1]
        sl, sp = layout.column_slices[c], layout.column_slices[c - 1]
        here = np.searchsorted(prev, layout.columns[c] + 1)
        has = (here < len(prev)) & (prev[np.minimum(here, len(prev) - 1)] == layout.columns[c] + 1)
        here_all.append(sl.start + np.nonzero(has)[0])
        prev_all.append(sp.start + here[has])
    return np.concatenate(here_all), np.concatenate(prev_all)


def loop_phases(layout, phi: np.ndarray) -> np.ndarray:
    """Per MZI, ``phi`` (M,) minus the previous column's ``phi`` on row i+1 (where there is one): the loop phases,
    the only φ combinations the powers depend on (what :func:`external_phases` reads). Reports and tests score
    φ errors with it."""
    here, prev = _loop_pairs(layout)
    out = np.array(phi, dtype=float, copy=True)
    out[here] -= np.asarray(phi, dtype=float)[prev]
    return out


def anchor_phases(twin, loop_sigma: float = 0.13, prior_sigma: float = 0.3, iterations: int = 10) -> np.ndarray:
    """Set ``twin``'s φ offsets (in place) from its loop phases and the datasheet's prior, φ ~ N(0, ``prior_sigma``);
    returns each loop's final weight (0–1).

    A φ stage reads every loop phase on its own, so its errors (~0.09 rad median per loop) add up along the rows
    when the φ offsets are rebuilt from them, and the first band's multi-port inputs see the sums (calibration/
    README.md, "Round 6"): at N = 48, φ at u = 0 0.26 / 0.74 rad (median / p90), worse than the datasheet's 0
    (0.20 / 0.48). Here the φ offsets are the least-squares compromise of both: the loop phases read (wrapped to
    (−π, π], each with error ``loop_sigma``) and every φ offset near 0 (``prior_sigma``), with Cauchy weights
    (scale 2 ``loop_sigma``, ``iterations`` reweightings) so that the few loops read far off (the rows where the
    θ stage failed) count little. Round 7: N = 48 / 64, tuning chip 1, φ at u = 0 0.10 / 0.27 and 0.11 / 0.29."""
    from scipy.sparse import csr_matrix, identity
    from scipy.sparse.linalg import spsolve
    m = twin.layout.n_mzi
    here, prev = _loop_pairs(twin.layout)
    loops = csr_matrix((np.r_[np.ones(m), -np.ones(len(here))], (np.r_[np.arange(m), here], np.r_[np.arange(m), prev])),
                       shape=(m, m))
    measured = np.angle(np.exp(1j * loops @ twin.offset.detach().numpy()[1::2]))
    weight = np.ones(m)
    for _ in range(max(1, iterations)):
        normal = loops.T @ csr_matrix((weight, (np.arange(m), np.arange(m)))) @ loops / loop_sigma**2
        phi = spsolve((normal + identity(m) / prior_sigma**2).tocsc(), loops.T @ (weight * measured) / loop_sigma**2)
        residual = np.angle(np.exp(1j * (measured - loops @ phi)))
        weight = 1.0 / (1.0 + (residual / (2 * loop_sigma)) ** 2)
    with torch.no_grad():
        twin.offset[1::2] = torch.as_tensor(phi, dtype=twin.offset.dtype)
    return weight


def bar_controls(twin) -> np.ndarray:
    """Controls (H,) of ``twin``'s bar state: every θ at π by the twin's own phase map (its offsets and
    efficiencies; crosstalk from the φ heaters, at 0, is none), every φ at 0."""
    u = np.zeros(twin.layout.n_heaters)
    eff = np.exp(twin.log_eff.detach().numpy()[0::2])
    u[0::2] = _bar_controls(twin.offset.detach().numpy()[0::2], twin.phase_per_u * eff)
    return u


# --- round 6: the φ heaters' own elements from the φ stage's stored readings ---------------------------------

#: what :func:`identify_elements` may move per MZI of a column, with its finite-difference step: the φ offset,
#: the φ heater's efficiency (log), the crosstalk links on either side of the φ heater (to the MZI's own θ and
#: to the next heater's θ)
ELEMENTS = {"offset": 0.05, "log_eff": 0.02, "kappa_theta": 0.01, "kappa_next": 0.01}
ELEMENT_FIT = tuple(ELEMENTS)  # what self_configure(elements=True) fits
_CLEAR = 5  # an MZI whose top row is within 4 rows of the bottom (top + 5 > N) sees the bottom row's leak


def _clear_of_bottom(tops: np.ndarray, n: int) -> np.ndarray:
    """MZIs (by top row) far enough from the bottom row's MZIs (θ unread) for round 6's per-element reads."""
    return tops + _CLEAR <= n


def _fitted_links(layout) -> np.ndarray:
    """(H − 1,) the crosstalk links :func:`identify_elements` fits: both sides of the φ heaters clear of the bottom."""
    clear = _clear_of_bottom(np.concatenate(layout.columns), layout.modes)
    links = np.zeros(layout.n_heaters - 1, bool)
    links[2 * np.nonzero(clear)[0]] = True
    nxt = 2 * np.nonzero(clear)[0] + 1
    links[nxt[nxt < len(links)]] = True
    return links


def _element_view(twin, name: str, mzis: np.ndarray):
    """(tensor, index) of element ``name`` for the column's ``mzis`` (index may skip the chip's last MZI)."""
    if name in ("offset", "log_eff"):
        return getattr(twin, name), 2 * mzis + 1
    if name == "kappa_theta":
        return twin.crosstalk, 2 * mzis
    return twin.crosstalk, (2 * mzis + 1)[2 * mzis + 1 < twin.crosstalk.numel()]      # kappa_next


def _column_phases(twin, layout, w0: float, c: int, entry, psis, phases) -> np.ndarray:
    """(observations, MZIs): per side and fringe the measured phase minus the twin's."""
    return np.angle(_agreement(twin, layout, w0, c, entry, psis, phases)).reshape(-1, len(entry[0]))


def identify_elements(twin, readings: PhaseReadings, sweeps: int = 4, elements: tuple[str, ...] = ELEMENT_FIT,
                      noise: float = 0.1, prior: dict | None = None) -> list[dict]:
    """Fit, column by column over the φ stage's stored ``readings`` (no reading more), each MZI's φ offset together
    with its φ heater's efficiency and the crosstalk links around it (``elements``): one
    Gauss–Newton step per column and sweep, the Jacobian block-diagonal per MZI (each MZI's fringes depend on its
    own elements first), by finite differences over the whole column at once (one twin evaluation per element).

    Why (calibration/README.md, "Round 6"): the fringes' phases at the two sides (θ = π/2, 3π/2: the column's θ
    heaters warm the φ heater by different amounts) and at the two ψ ranges hold the crosstalk and the
    efficiency. It needs the couplers in the twin first (``self_configure(couplers=True)``): without them it
    makes the loop phases worse. Near the bottom row (:func:`_clear_of_bottom`) only the offsets move.
    ``prior``: per element the spread (σ) a step is held to, against an observation's ``noise`` (rad; ridge
    (noise/σ)²) and as a trust region per step. Returns per sweep the mean |change| per element."""
    layout, w0 = twin.layout, float(twin.phase_per_u)
    psis, phases = _phase_steps(readings.extrapolate)
    prior = {"offset": np.inf, "log_eff": 0.05, "kappa_theta": 0.03, "kappa_next": 0.03, **(prior or {})}
    ridge = np.array([(noise / prior[e]) ** 2 for e in elements])
    limit = np.array([prior[e] if np.isfinite(prior[e]) else np.pi / 4 for e in elements])
    is_offset = np.array([e == "offset" for e in elements], float)
    history = []
    for _ in range(sweeps):
        moved = {e: [] for e in elements}
        for c, entry in enumerate(readings.columns):
            if entry is None:
                continue
            sl = layout.column_slices[c]
            mzis = np.arange(sl.start, sl.stop)
            r0 = _column_phases(twin, layout, w0, c, entry, psis, phases)
            jac = np.zeros((len(mzis), r0.shape[0], len(elements)))
            for j, e in enumerate(elements):
                t, idx = _element_view(twin, e, mzis)
                with torch.no_grad():
                    t[idx] += ELEMENTS[e]
                r1 = _column_phases(twin, layout, w0, c, entry, psis, phases)
                with torch.no_grad():
                    t[idx] -= ELEMENTS[e]
                d = np.angle(np.exp(1j * (r1 - r0)))
                jac[:, :, j] = (-d / ELEMENTS[e]).T      # the twin's prediction per unit of the element
            # per MZI: (JᵀJ + ridge) δ = Jᵀ r, the residual r0 = measured − predicted falls by J δ
            jtj = np.einsum("mok,mol->mkl", jac, jac) + np.diag(ridge)
            step = np.linalg.solve(jtj, np.einsum("mok,om->mk", jac, r0)[..., None])[..., 0]
            # a trust region: no element moves by more than its prior spread (offsets: π/4) in one step
            step = np.clip(step, -limit, limit)
            # near the bottom row (its MZIs' θ unread, their leak in every fringe there) only the offsets move
            step[~_clear_of_bottom(entry[0], layout.modes), :] *= is_offset
            for j, e in enumerate(elements):
                t, idx = _element_view(twin, e, mzis)
                s = step[: len(idx), j]                    # kappa_next: the chip's last MZI has none
                with torch.no_grad():
                    t[idx] += torch.as_tensor(s, dtype=t.dtype)
                moved[e].append(np.abs(s))
        history.append({e: float(np.mean(np.concatenate(v))) for e, v in moved.items()})
    with torch.no_grad():
        twin.offset[1::2] = torch.remainder(twin.offset[1::2] + np.pi, 2 * np.pi) - np.pi
    return history


# --- round 6b: each crosstalk link read directly (a θ heater stepped by 2π, its neighbours' φ fringes) --------

@dataclass
class LinkReadings:
    """What :func:`read_links` measured: per column (None where it has no MZI) the MZIs' top rows, the inputs, the
    lit inputs, the reference controls (the φ stage's side θ = π/2) with its stored fringes (per lit input), and per
    step group (the column's MZIs at even / odd places) the controls with that group's θ moved by 2π and the
    fringes measured there."""
    columns: list


def read_links(hardware, twin, readings: PhaseReadings, result: SelfConfigResult | None = None) -> LinkReadings:
    """Read the φ fringes again with every other θ heater of the column moved from θ = π/2 to 5π/2 (2π by the twin's
    map: the MZI itself unchanged, up to the θ efficiency's error at second order), in two groups (the column's MZIs
    at even, then odd places): the moved heater warms its own φ (link θ_m–φ_m) and the previous MZI's φ (link
    φ_{m−1}–θ_m), each by κ · w0 · eff_φ · Δu ≈ 2π κ (~0.38 rad at κ = 0.06), and nothing else the column reads.
    Three ψ steps (the φ stage's first three, whose fringes at θ = π/2 are the reference: no reading again), the
    same averaging over the next column's φ and the flipped φ three columns back: 36 N² readings (round 6b).

    Why 5π/2 and not 3π/2 + 2π: the controls reach ~2.9 turns of phase (u ≤ 1 at w0 = 2π · 1.44), so θ = π/2 + 2π
    fits for every heater and 3π/2 + 2π for none; a bar-state θ (the next column's first) cannot move by 2π either,
    so the last MZI of a column keeps its φ–θ link unread (those sit by the bottom row)."""
    result = result if result is not None else SelfConfigResult()
    layout, w0 = twin.layout, float(twin.phase_per_u)
    turn = 2 * np.pi / (w0 * np.exp(twin.log_eff.detach().numpy()[0::2]))
    psis, phases = _phase_steps(False)
    weight = phases[0]
    columns = []
    for c, entry in enumerate(readings.columns):
        if entry is None:
            columns.append(None)
            continue
        tops, x, lit, sides = entry
        base, fringes = sides[0]                      # the side θ = π/2; its first fringe: ψ = 0, 2π/3, 4π/3
        mzis = np.arange(layout.column_slices[c].start, layout.column_slices[c].stop)
        groups = []
        for g in (0, 1):
            u = base.copy()
            u[2 * mzis[g::2]] += turn[mzis[g::2]]
            us = _phase_settings(layout, w0, c, u, psis)
            measured = np.stack([hardware.forward(x, v) for v in us])
            result.settings += len(us)
            result.readings += len(us) * len(x)
            groups.append((u, [_fringe(measured, inp, tops, weight) for inp in lit]))
        columns.append((tops, x, lit, base, fringes[0], groups))
    return LinkReadings(columns)


def _link_shifts(twin, layout, w0: float, c: int, entry, psis, weight, only: int | None = None):
    """(groups, MZIs) each step group's fringe shift, measured and predicted by ``twin`` (unit phasors over the lit
    inputs), as phasors: measured shift times the conjugate of the predicted one. ``only``: that group alone
    (the other rows stay 0; a finite difference needs one group)."""
    tops, x, lit, base, ref, groups = entry
    with torch.no_grad():
        xs = torch.as_tensor(np.broadcast_to(x, (len(psis) * 2 * len(_NEXT_STEPS),) + x.shape).copy())
        pred_ref = twin(xs, torch.as_tensor(_phase_settings(layout, w0, c, base, psis))).numpy()
        out = np.zeros((len(groups), len(tops)), complex)
        for g, (u, seen) in enumerate(groups):
            if only is not None and g != only:
                continue
            pred = twin(xs, torch.as_tensor(_phase_settings(layout, w0, c, u, psis))).numpy()
            for inp, s, r in zip(lit, seen, ref):
                m = s * np.conj(r)
                p = _fringe(pred, inp, tops, weight) * np.conj(_fringe(pred_ref, inp, tops, weight))
                one = m * np.conj(p)
                out[g] += one / np.maximum(np.abs(one), 1e-300)
    return out


def _link_index(mzis: np.ndarray, g: int) -> np.ndarray:
    """(MZIs,) the crosstalk link each MZI's fringe shift reads in step group ``g`` (−1: none): the moved MZIs
    their own θ–φ link (2m), the MZI before a moved one its φ–θ link (2m + 1)."""
    pos = np.arange(len(mzis))
    link = np.full(len(mzis), -1)
    moved = pos % 2 == g
    link[moved] = 2 * mzis[moved]
    before = ~moved & (pos + 1 < len(mzis))
    link[before] = 2 * mzis[before] + 1
    return link


def read_link_mask(layout) -> np.ndarray:
    """(H − 1,) the crosstalk links :func:`read_links` reads (every link but each column's last φ–θ link)."""
    mask = np.zeros(layout.n_heaters - 1, bool)
    for sl in layout.column_slices:
        mzis = np.arange(sl.start, sl.stop)
        for g in (0, 1):
            link = _link_index(mzis, g)
            mask[link[link >= 0]] = True
    return mask


def fit_links(twin, links: LinkReadings, sweeps: int = 2, step: float = 0.01) -> list[float]:
    """Move ``twin``'s crosstalk links (in place) until its predicted fringe shifts (:func:`read_links`) agree with the
    measured ones: per column and group one Newton step per link, the slope by a finite difference of every read
    link at once (each MZI's shift depends on its own link first). Returns per sweep the mean |change|."""
    layout, w0 = twin.layout, float(twin.phase_per_u)
    psis, phases = _phase_steps(False)
    weight = phases[0]
    history = []
    for _ in range(sweeps):
        moved = []
        for c, entry in enumerate(links.columns):
            if entry is None:
                continue
            mzis = np.arange(layout.column_slices[c].start, layout.column_slices[c].stop)
            r0 = np.angle(_link_shifts(twin, layout, w0, c, entry, psis, weight))
            for g in range(len(entry[5])):
                link = _link_index(mzis, g)
                read = link >= 0
                idx = torch.as_tensor(link[read])
                with torch.no_grad():
                    twin.crosstalk[idx] += step
                r1 = np.angle(_link_shifts(twin, layout, w0, c, entry, psis, weight, only=g))[g]
                with torch.no_grad():
                    twin.crosstalk[idx] -= step
                slope = np.angle(np.exp(1j * (r0[g] - r1))) / step   # the predicted shift per unit link
                change = np.clip(r0[g][read] / np.where(np.abs(slope[read]) > 1e-6, slope[read], np.inf), -0.05, 0.05)
                with torch.no_grad():
                    twin.crosstalk[idx] += torch.as_tensor(change, dtype=twin.crosstalk.dtype)
                moved.append(np.abs(change))
        history.append(float(np.mean(np.concatenate(moved))) if moved else 0.0)
    return history
