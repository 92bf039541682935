"""Peak memory of streaming a PO-like observations CSV: a large file vs a small one.

Each measurement runs in a fresh process (peak RSS is per process). Prints a table with
the ratio large/small; bounded streaming keeps the ratio close to 1 for
read_observations. Usage: python bench/bench_observations.py [rows]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,speciesId,surveyId,publisher,date\n"


def make_csv(path, rows, surveys, seed=0):
    rng = np.random.default_rng(seed)
    block = 200_000
    with open(path, "w") as handle:
        handle.write(HEADER)
        for start in range(0, rows, block):
            n = min(block, rows - start)
            survey = rng.integers(1, surveys + 1, n)
            lon = -10 + (survey % 4000) * 0.01
            lat = 35 + (survey // 4000 % 3000) * 0.01
            species = rng.integers(1, 11_000, n)
            lines = [
                f"{x:.5f},{y:.5f},2019,10.0,-inf,CONTINENTAL,France,{s}.0,{v},GBIF,2019-05-01\n"
                for x, y, s, v in zip(lon, lat, species, survey, strict=True)
            ]
            handle.writelines(lines)


CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from geoplant_qgis.core.geoplant.observations import read_observations, survey_table
start = time.perf_counter()
if {mode!r} == "stream":
    n = sum(len(f) for f in read_observations({path!r}))
else:
    n = len(survey_table({path!r}))
elapsed = time.perf_counter() - start
print(n, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def measure(path, mode):
    code = CHILD.format(root=ROOT, path=str(path), mode=mode)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    n, elapsed, rss_kb = out.split()
    return int(n), float(elapsed), int(rss_kb) / 1024.0


def main(rows: int | None = None) -> dict:
    """Prints the table; returns {mode: peak RSS large / small} (each read in its own process)."""
    rows = rows or (int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000)
    ratios = {}
    small_rows = 200_000  # two chunks: above the fixed cost of one chunk
    with tempfile.TemporaryDirectory() as tmp:
        small, large = os.path.join(tmp, "small.csv"), os.path.join(tmp, "large.csv")
        t = time.perf_counter()
        make_csv(small, small_rows, small_rows // 4)
        make_csv(large, rows, rows // 4)  # ~4 rows per survey, like a PO file with repeats
        print(
            f"generated {rows} rows ({os.path.getsize(large) / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t:.1f} s"
        )
        print(f"{'mode':<10}{'rows':>10}{'result':>10}{'seconds':>10}{'peak MB':>10}{'ratio':>8}")
        for mode in ("stream", "aggregate"):
            base = measure(small, mode)
            big = measure(large, mode)
            for label, n_rows, (n, secs, mb) in (("small", small_rows, base), ("large", rows, big)):
                ratio = mb / base[2]
                print(f"{mode + '/' + label:<10}{n_rows:>10}{n:>10}{secs:>10.2f}{mb:>10.0f}{ratio:>8.2f}")
            ratios[mode] = big[2] / base[2]
    return ratios


if __name__ == "__main__":
    # the last line: the ratios as JSON, for bench/run.py (which runs this script in a process
    # of its own: a child's peak RSS starts from its parent's, so the parent must stay small)
    print(json.dumps(main()))
