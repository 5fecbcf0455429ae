"""Reading a photo allocates what the photo holds, not the 500 MB limit (issue 31 item 4): under an
address-space limit 400 MB above what the process already maps, a small photo is read 20 times."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from tests.reliability.conftest import ROOT

READ_UNDER_LIMIT = """
import resource, sys
from edgecnn.runtime.core.images import read_image
from edgecnn.runtime.core.files import read_bounded
read_image(sys.argv[1])  # OpenCV's threads and buffers exist before the limit
mapped = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + 400 * 2**20, resource.RLIM_INFINITY))
for _ in range(20):
    assert read_image(sys.argv[1]).shape == (48, 64, 3)
grown = sys.argv[2]
assert len(read_bounded(grown, 10 * 2**20)) == 3 * 2**20
print("ok")
"""


def test_a_photo_read_reserves_only_its_size(tmp_path: Path) -> None:
    photo, big = tmp_path / "small.jpg", tmp_path / "three-mb.bin"
    cv2.imwrite(str(photo), np.full((48, 64, 3), 128, np.uint8))
    big.write_bytes(b"x" * 3 * 2**20)
    done = subprocess.run([sys.executable, "-c", READ_UNDER_LIMIT, str(photo), str(big)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
