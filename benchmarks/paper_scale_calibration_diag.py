"""Diagnosis of the labsat error model's N = 64 calibration: one plain fit of one band from the datasheet twin.

Usage: python benchmarks/paper_scale_calibration_diag.py MODEL MODES U_MAX STEPS  (e.g. labsat 64 0.03 150)
"""
import sys, time
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
from paper_scale_calibration import *  # noqa
from labsat.calibration.fit import fit_twin, rmse
mode, n, u, steps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
hw = DirectHardware(seed=2, modes=n, error_model=mode, detector_range_w=1e-4 if n >= 64 else 5e-4)
twin = MZIMeshTwin(n, hw.phase_per_u)
data = measure(hw, 32, n * n // 8, seed=0, schedule=(u,))
print("floor", hw.noise_floor(data), "nominal", rmse(twin, data), flush=True)
t0 = time.process_time()
fit_twin(twin, data, adam_steps=steps, lbfgs_steps=steps)
print(mode, n, u, steps, "train", rmse(twin, data), "cpu", time.process_time() - t0, flush=True)
