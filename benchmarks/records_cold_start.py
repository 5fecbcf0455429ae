"""Cold start of the runtime with the record engine against a baseline tree: a fresh interpreter that
imports `edgecnn.runtime.core.engine` and reads a bundle's records (1000-label model metadata and a
4-model report.json), N times, the two trees interleaved. Prints each median and the ratio.

    git archive 8402a4e | tar -x -C /tmp/before     # the baseline: main before the engine
    python benchmarks/records_cold_start.py --before /tmp/before --runs 30

Each child points this virtualenv's editable install at its tree (`edgecnn`, `edgecnn.export`,
`edgecnn.runtime`), so both run the same interpreter and packages.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys
import __editable___edgecnn_0_1_0_finder as finder
tree = sys.argv[1]
finder.MAPPING.update({"edgecnn": tree + "/edgecnn", "edgecnn.export": tree + "/export",
                       "edgecnn.runtime": tree + "/runtime"})
import json
import edgecnn.runtime.core.engine
from edgecnn.runtime.core.bundle import BundleReport
from edgecnn.runtime.core.metadata import ModelMeta
assert edgecnn.runtime.core.engine.__file__.startswith(tree), edgecnn.runtime.core.engine.__file__
meta = ModelMeta.from_json(open(sys.argv[2]).read(), "model.onnx")
report = BundleReport.from_dict(json.loads(open(sys.argv[3]).read()), "report.json")
assert len(meta.labels) == 1000 and len(report.models) == 4
"""


def records(folder: Path) -> tuple[Path, Path]:
    """A realistic metadata text and report.json, written by this tree's records."""
    from edgecnn.runtime.core.bundle import BundleReport, ModelReport
    from edgecnn.runtime.core.metadata import ModelMeta, Preprocess, UnknownMeta

    meta = ModelMeta(labels=tuple(f"class number {i}" for i in range(1000)), preprocess=Preprocess(),
                     arch="efficientnet_lite0", accuracy={"top1": 80.0, "agreement": 99.0},
                     unknown=UnknownMeta("knn", 0.4))
    models = tuple(ModelReport(f"{b} {p}", b, p, f"{b}-{p}", top1=80.0, latency_ms=3.0, size_bytes=10**7)
                   for b in ("onnxruntime", "openvino") for p in ("fp32", "int8"))
    (folder / "meta.json").write_text(meta.to_json())
    (folder / "report.json").write_text(BundleReport(models=models, arch="efficientnet_lite0").to_json())
    return folder / "meta.json", folder / "report.json"


def once(tree: Path, meta: Path, report: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, str(tree), str(meta), str(report)], check=True, cwd="/")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the baseline source tree")
    parser.add_argument("--after", type=Path, default=ROOT, help="the tree measured (default: this one)")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        meta, report = records(Path(folder))
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.runs):
            for name, tree in (("before", args.before), ("after", args.after)):
                times[name].append(once(tree.resolve(), meta, report))
    before, after = statistics.median(times["before"]), statistics.median(times["after"])
    print(json.dumps({"runs": args.runs, "before_ms": round(before * 1000, 1),
                      "after_ms": round(after * 1000, 1), "ratio": round(after / before, 3)}))


if __name__ == "__main__":
    main()
