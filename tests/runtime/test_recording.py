"""The background writer: a live loop never waits for it (drops, counts); a file's loop does (keeps all)."""

import os
import sys
import threading
from typing import Any

import pytest
from edgecnn.runtime.live.recording import BackgroundWriter


class SlowOutput:
    """An encoder that cannot keep up: each write waits until the test lets it go."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.go = threading.Event()

    def write(self, item: Any) -> None:
        self.go.wait()
        self.items.append(item)

    def close(self) -> None:
        pass


def test_live_writer_drops_and_counts_when_behind() -> None:
    output = SlowOutput()
    writer = BackgroundWriter("--save", output, capacity=2)
    accepted = [writer.put(i) for i in range(10)]  # never blocks: the writer is stuck on the first item
    output.go.set()
    writer.close()
    assert writer.dropped == accepted.count(False) >= 7
    assert output.items == [i for i, ok in enumerate(accepted) if ok] and writer.written == len(output.items)


def test_file_writer_waits_and_keeps_every_item() -> None:
    output = SlowOutput()
    writer = BackgroundWriter("--save", output, capacity=2, wait=True)
    threading.Timer(0.3, output.go.set).start()  # the loop waits for the writer instead of dropping
    assert all(writer.put(i) for i in range(10))
    writer.close()
    assert output.items == list(range(10)) and writer.dropped == 0


class PriorityOutput:
    """Notes the scheduling priority (nice) of the thread that writes."""

    def __init__(self) -> None:
        self.nice: list[int] = []

    def write(self, item: Any) -> None:
        self.nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def close(self) -> None:
        pass


def test_only_a_dropping_writer_runs_at_a_lower_priority() -> None:
    """A live writer yields the cores to inference; a file's writer, which the loop waits for, does not."""
    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread priorities are Linux's")
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = {}
    for wait in (False, True):
        output = PriorityOutput()
        writer = BackgroundWriter("--save", output, 4, wait=wait)
        writer.put("frame")
        writer.close()
        seen[wait] = output.nice
    assert seen[True] == [ours]
    assert seen[False] and seen[False][0] > ours or ours == 19  # already the lowest: nothing below it
