"""Fit plots: measured vs predicted and residual histogram are written as PNG files."""
from _calibration_hw import DirectHardware
from labsat.calibration.measure import measure
from labsat.calibration.plots import plot_fit
from labsat.twins.mzi import MZIMeshTwin


def test_plot_fit_writes_pngs(tmp_path):
    hw = DirectHardware(seed=1, modes=4)
    held = measure(hw, 4, 8, seed=0)
    twin = MZIMeshTwin(4, hw.phase_per_u)
    paths = plot_fit(twin, held, tmp_path / "plots", title="t", nominal=MZIMeshTwin(4, hw.phase_per_u))
    assert [p.name for p in paths] == ["measured_vs_predicted.png", "residual_histogram.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
