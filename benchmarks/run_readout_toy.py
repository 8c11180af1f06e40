"""The toy of tests/test_models_run_readout.py at 100, 200 and 400 steps: validation MSE of
the run read-out and the window read-out (noise floor 0.01), with and without the mixer.

    .venv/bin/python benchmarks/run_readout_toy.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_models_run_readout as toy  # noqa: E402 - the test's toy, one definition

print("steps n_layers run window")
for steps in (100, 200, 400):
    for n_layers in (0, 2):
        run = toy._fit(toy._model({"readout": "run", "run_length": toy.RUN}, n_layers), steps)
        window = toy._fit(toy._model({}, n_layers), steps)
        print(steps, n_layers, f"{run:.4f}", f"{window:.4f}", flush=True)
