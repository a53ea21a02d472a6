"""PNG plots of a fit: measured vs predicted on held-out settings, and the residual histogram (Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_fit(twin, held, out_dir: str | Path, title: str = "", nominal=None) -> list[Path]:
    """Write ``measured_vs_predicted.png`` and ``residual_histogram.png``; return their paths.

    ``held``: :class:`~labsat.calibration.measure.Measurements` not used by the fit. ``nominal``: an
    optional second twin (e.g. the datasheet one) drawn beside the fitted one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fit import predict

    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    measured = np.asarray(held.p).ravel()
    with torch.no_grad():
        fitted = predict(twin, held).numpy().ravel()
        base = None if nominal is None else predict(nominal, held).numpy().ravel()
    rmse = float(np.sqrt(np.mean((fitted - measured) ** 2)))

    fig, ax = plt.subplots(figsize=(5, 5))
    if base is not None:
        ax.scatter(measured, base, s=3, alpha=0.3, color="tab:gray",
                   label=f"nominal twin (RMSE {np.sqrt(np.mean((base - measured) ** 2)):.3f})")
    ax.scatter(measured, fitted, s=3, alpha=0.5, color="tab:blue", label=f"fitted twin (RMSE {rmse:.3f})")
    lim = [min(measured.min(), fitted.min()), max(measured.max(), fitted.max())]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel("measured normalised power")
    ax.set_ylabel("predicted normalised power")
    ax.set_title(f"held-out settings {title}".strip())
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    p1 = out_dir / "measured_vs_predicted.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    r = fitted - measured
    ax.hist(r, bins=60, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("predicted - measured (normalised power)")
    ax.set_ylabel("count")
    ax.set_title(f"residuals: RMSE {rmse:.4f}, n = {r.size} {title}".strip())
    fig.tight_layout()
    p2 = out_dir / "residual_histogram.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return [p1, p2]
