"""Camera loop FPS with the event sinks on (MQTT to a real mosquitto, a webhook to a loopback HTTP server,
Prometheus metrics), with the broker and the hook down (nothing listening), and with all of them off,
interleaved in one run so the ratios share the machine's state.

    python benchmarks/events_overhead.py --frames 1500 --rounds 5

Uses the tests' tiny colour model (tests/runtime/box_files.py) on samples/videos/cup.mp4: the model
costs almost nothing, so the sinks' share of each frame is as large as it gets (a worst case).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(engine, options, frames: int, metrics: bool) -> tuple[float, float]:
    """(loop FPS, process CPU ms per processed frame: the sinks' threads included)."""
    from edgecnn.runtime.box.wiring import event_sinks, with_metrics
    from edgecnn.runtime.live.camera import CameraConfig, run_camera
    from edgecnn.runtime.live.video import VideoOptions

    # Looped past the clip's 217 frames so a run's fixed costs (connecting, discovery, the last publishes
    # on close) spread over more frames: what is left is the per-frame cost.
    config = CameraConfig(sources=(str(ROOT / "samples/videos/cup.mp4"),), headless=True, max_frames=frames,
                          video=VideoOptions(loop=True))
    wiring = event_sinks(options, config.camera_names, engine.labels)
    if metrics:
        from edgecnn.runtime.box.metrics import CameraMetrics

        wiring = with_metrics(wiring, CameraMetrics())
    cpu = time.process_time()
    try:
        summary = run_camera(engine, config, say=lambda _: None, sinks=wiring.loop_sinks)
    finally:
        wiring.close()
    return summary.mean_fps, (time.process_time() - cpu) * 1000 / summary.frames_processed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from edgecnn.runtime import load
    from edgecnn.runtime.box.wiring import EventOptions

    from tests.box.test_events import free_port, start_broker, start_hook
    from tests.runtime.box_files import unknown_colour_onnx

    folder = Path(tempfile.mkdtemp(prefix="events-overhead-"))
    broker_port = free_port()
    broker = start_broker(folder, broker_port)
    hook, _ = start_hook()
    configs = {
        "off": (EventOptions(), False),
        "on": (EventOptions(mqtt=f"mqtt://127.0.0.1:{broker_port}",
                            webhooks=(f"http://127.0.0.1:{hook.server_address[1]}/hook",)), True),
        "down": (EventOptions(mqtt=f"mqtt://127.0.0.1:{free_port()}",
                              webhooks=(f"http://127.0.0.1:{free_port()}/hook",)), True),
    }
    fps: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    try:
        with load(unknown_colour_onnx(folder / "bundle" / "model.onnx").parent, device="cpu") as engine:
            run(engine, EventOptions(), 50, False)  # warm-up: decoder, sessions
            for _ in range(args.rounds):
                for name, (options, metrics) in configs.items():
                    rate, cost = run(engine, options, args.frames, metrics)
                    fps[name].append(rate)
                    cpu[name].append(cost)
    finally:
        hook.shutdown()
        broker.terminate()
    for name in configs:
        print(f"{name:5s} FPS median {statistics.median(fps[name]):6.1f} (rounds "
              f"{', '.join(f'{v:.0f}' for v in fps[name])}); CPU {statistics.median(cpu[name]):.2f} ms/frame")
    for name, target in (("on", 0.97), ("down", 0.95)):
        paired = statistics.median(a / b for a, b in zip(fps[name], fps["off"], strict=True))
        by_cpu = statistics.median(cpu["off"]) / statistics.median(cpu[name])
        print(f"{name} / off: FPS {paired:.3f} (median of per-round ratios), CPU-per-frame {by_cpu:.3f} "
              f"(target >= {target})")


if __name__ == "__main__":
    main()
