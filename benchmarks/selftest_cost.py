"""Self-test cost at start against the load time it adds to, on the same bundle in the same run.

    python benchmarks/selftest_cost.py BUNDLE
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edgecnn.runtime import load
from edgecnn.runtime.core.selftest import run_selftest


def main(bundle: Path) -> None:
    for _ in range(3):
        start = time.perf_counter()
        engine = load(bundle)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        drift = run_selftest(engine)
        tested = time.perf_counter() - start
        worst = max(d.max_abs_diff for d in drift)
        print(f"{engine.describe()}: load {loaded * 1000:.0f} ms, self-test {tested * 1000:.1f} ms "
              f"(x{tested / loaded:.3f} of load), worst drift {worst:.2g}")
        engine.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
