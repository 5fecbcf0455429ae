"""Does the runtime install (`pip install edgecnn`, no extras) resolve to wheels on a 64-bit ARM board?

Asks pip to resolve pyproject's base dependencies for manylinux aarch64 (Raspberry Pi OS Bookworm, Ubuntu
22.04+, Jetson's Ubuntu) and CPython 3.11, binary wheels only, without downloading them (`--dry-run` reads
the registry's metadata). Prints each resolved wheel; exits 1 when something has no aarch64 wheel.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
# manylinux tags that an aarch64 board with glibc 2.35 accepts (OpenVINO's wheels need 2.35:
# Debian 12, Ubuntu 22.04).
GLIBC = (17, 24, 27, 28, 31, 34, 35)
PYTHON = "3.11"


def main() -> int:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    platforms = ["--platform", "manylinux2014_aarch64"]
    for minor in GLIBC:
        platforms += ["--platform", f"manylinux_2_{minor}_aarch64"]
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                   "--only-binary=:all:", *platforms, "--python-version", PYTHON,
                   "--target", str(Path(work) / "target"), "--report", str(report), *dependencies]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
            print("the runtime does not resolve for aarch64:", *errors, sep="\n  ")
            return 1
        resolved = json.loads(report.read_text())["install"]
    for item in resolved:
        wheel = item["download_info"]["url"].rsplit("/", 1)[-1]
        print(f"  {item['metadata']['name']} {item['metadata']['version']}: {wheel}")
    print(f"the runtime resolves for aarch64 (CPython {PYTHON}, glibc 2.35): {len(resolved)} wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
