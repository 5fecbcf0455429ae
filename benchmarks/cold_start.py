"""Cold start of the runtime and the CLI against a baseline tree (issue 24's remodel: floors, records,
registry, CLI package): fresh interpreters, the two trees interleaved, N runs each. Prints medians and
ratios for `import edgecnn.runtime` + `load` resolved, and for `edgecnn --help` (the whole CLI imported).

    git archive e0a56cd | tar -x -C /tmp/before     # main before the remodel
    python benchmarks/cold_start.py --before /tmp/before --runs 20

Each child points this virtualenv's editable install at its tree, so both use one interpreter and packages.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAP = """
import sys
import __editable___edgecnn_0_1_0_finder as finder
tree = sys.argv[1]
finder.MAPPING.update({"edgecnn": tree + "/edgecnn", "edgecnn.export": tree + "/export",
                       "edgecnn.runtime": tree + "/runtime"})
"""
CASES = {
    "import edgecnn.runtime + load": MAP + "import edgecnn.runtime\nfrom edgecnn.runtime import load\n"
    "assert edgecnn.runtime.__file__.startswith(tree)\n",
    "edgecnn --help": MAP + "sys.argv = ['edgecnn', '--help']\nfrom edgecnn.cli import main\n"
    "import edgecnn.cli\nassert edgecnn.cli.__file__.startswith(tree)\ntry:\n    main()\nexcept SystemExit:\n"
    "    pass\n",
}


def once(code: str, tree: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(tree)], check=True, capture_output=True, cwd="/tmp")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the baseline tree (git archive)")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    for name, code in CASES.items():
        times: dict[str, list[float]] = {"before": [], "after": []}
        once(code, args.before), once(code, ROOT)  # warm the page cache for both
        for _ in range(args.runs):
            times["before"].append(once(code, args.before.resolve()))
            times["after"].append(once(code, ROOT))
        before, after = (statistics.median(times[k]) * 1000 for k in ("before", "after"))
        print(f"{name}: before {before:.0f} ms, after {after:.0f} ms, after/before {after / before:.3f}")


if __name__ == "__main__":
    main()
