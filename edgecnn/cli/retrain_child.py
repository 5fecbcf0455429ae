"""`python -m edgecnn.cli.retrain_child SPEC`: the retrain's fine-tune then export in one process
(runtime/box/retrain.py starts it at a lower priority), so Python, torch and timm start once, not twice.

SPEC is a JSON object: data, run, bundle, arch, seed, head_epochs, int8, formats. The fine-tune is
`finetune DATA --out RUN --epochs 0` without its plots (the run folder is thrown away); the export is
`export RUN/best.pt --out BUNDLE` with its INT8 gate, without the figures only its report shows (PyTorch's
latency, the unknown detector on every image: `ExportConfig.full_report`). After each stage one line
`retrain-child: STAGE SECONDS` (the job's split); a user mistake is one `error:` line, exit 2; a failed
export gate one `gate failed:` line, exit 1.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

STAGE = "retrain-child:"  # the first word of the stage lines the job reads


def build(spec: dict[str, Any]) -> None:
    """Fine-tune head-only on spec["data"], then export best.pt to spec["bundle"]."""
    from edgecnn.device import import_torch
    from edgecnn.export.bundle import ExportConfig, export_bundle
    from edgecnn.finetune import FinetuneConfig, finetune

    # one thread: the child runs beside a camera on the same cores, where PyTorch's two threads wait for
    # each other (2 busy cores: an eigh of the detector's fit 5.2 s on two threads, 0.7 s on one)
    import_torch().set_num_threads(1)
    clock = time.perf_counter()
    finetune(FinetuneConfig(data=Path(spec["data"]), out=Path(spec["run"]), arch=spec["arch"],
                            seed=int(spec["seed"]), head_epochs=int(spec["head_epochs"]), epochs=0,
                            force=True, progress=False, plots=False))
    _stage("fine-tune", time.perf_counter() - clock)
    clock = time.perf_counter()
    export_bundle(ExportConfig(checkpoint=Path(spec["run"]) / "best.pt", out=Path(spec["bundle"]),
                               formats=tuple(spec["formats"]), int8=bool(spec["int8"]), force=True,
                               progress=False, full_report=False))
    _stage("export", time.perf_counter() - clock)


def _stage(name: str, seconds: float) -> None:
    print(f"{STAGE} {name} {seconds:.3f}", flush=True)


def main(argv: list[str]) -> int:
    """The exit status: 0 built, 1 the export's gate failed, 2 a user mistake."""
    from edgecnn.export.bundle import ExportFailed
    from edgecnn.runtime.core.errors import EdgecnnError

    try:
        build(json.loads(argv[0]))
    except ExportFailed as exc:
        print(f"gate failed: {exc}", flush=True)
        return 1
    except EdgecnnError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    from edgecnn.cli.process import leave

    leave(main(sys.argv[1:]))
