"""`make bench` stays runnable: bench/run.py --quick end to end (core cases, no qgis_process).

No timing is asserted here (speed is measured by `make bench`, as ratios in one run); this
only checks that every case ran and produced a positive, finite number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from support import ROOT

pytestmark = pytest.mark.slow


def test_bench_quick_runs_every_case(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-qgis-process", "--repeat", "1",
         "--workdir", str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    cases = {row[0] for row in result["rows"]}
    for case in (
        "reference, onnxruntime alone",
        "reference, engine inference alone",
        "reference, core.engine.predict",
        "memory, core on 1/4 of the cells",
        "patch, onnxruntime alone",
        "patch, engine inference alone",
        "patch, core.engine.predict",
    ):
        assert case in cases, cases
    for row in result["rows"]:
        assert row[1] > 0 and math.isfinite(row[2]) and row[2] > 0, row
    for key, value in result["ratios"].items():
        if key != "reference efficiency (qgis_process)":  # not run here
            assert value is not None and math.isfinite(value) and value > 0, (key, value)
    assert "efficiency" in done.stdout  # the printed table
