"""Live commands: `camera` (recognise what sources show, optionally on a web page) and `capture`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.cli.common import (
    BackendOpt,
    CacheOpt,
    DeviceOpt,
    JsonOpt,
    ModelPath,
    PrecisionOpt,
    ThreadsOpt,
    ranged,
)
from edgecnn.cli.model_reload import camera_loader, model_reloads
from edgecnn.cli.process import user_errors
from edgecnn.cli.program import app
from edgecnn.cli.render import capture_line, err_console, say, show, summary_table, tell, warn
from edgecnn.runtime.core.errors import EdgecnnError


@app.command(epilog="Example: edgecnn camera bundles/demo --source samples/videos/cup.mp4 --headless "
                     "--serve 8080 --loop\n\nSeveral: edgecnn camera bundles/demo --source 0 --source "
                     "rtsp://cam2/live")
@user_errors
def camera(
    model: ModelPath,
    source: Annotated[list[str] | None, typer.Option(
        help="Webcam index (0), video file, rtsp:// or http:// URL, or a folder of images; repeat it for "
             "several sources (batched together).")] = None,
    sources: Annotated[Path | None, typer.Option(
        "--sources", exists=True, dir_okay=False, help="A text file naming one source a line.")] = None,
    name: Annotated[list[str] | None, typer.Option(
        help="Camera name per source, in order (default: from the source; a-z, 0-9, _ and -).")] = None,
    region: Annotated[list[str] | None, typer.Option(
        metavar="X,Y,W,H", help="Classify only this part of the frame (pixels, or fractions 0-1); one per "
        "source, in order ('full': the whole frame). Regions of one source share its decoder.")] = None,
    device: DeviceOpt = "auto", backend: BackendOpt = "auto", precision: PrecisionOpt = "auto",
    top_k: Annotated[int | None, typer.Option(
        help="Labels to show per frame (default: 3, or all when the model has fewer).")] = None,
    min_prob: Annotated[float, typer.Option(
        help="Top label below this probability shows as 'uncertain' (a low-confidence floor among the "
        "model's classes; with 4 classes it is never below 0.25). Frames of none of the classes show as "
        "'unknown' by the model's own unknown detector and threshold, whatever --min-prob is.")] = 0.2,
    smooth: Annotated[float, typer.Option(
        help="Weight of past frames in the moving average of probabilities and unknown score; 0 = off.")
                      ] = 0.6,
    headless: Annotated[bool, typer.Option(help="No window (automatic when there is no display).")] = False,
    snapshot_dir: Annotated[Path, typer.Option(
        help="Where the window's s key saves snapshots (PNG).")] = Path("."),
    save: Annotated[Path | None, typer.Option(
        help="Write the annotated video to this .mp4 (H.264 through PyAV; mp4v when `av` is missing).")
    ] = None,
    jsonl: Annotated[Path | None, typer.Option(help="Write one JSON line per processed frame; a name with "
                                                    "{camera} in it writes one file per camera.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing --save and --jsonl files.")
                     ] = False,
    append: Annotated[bool, typer.Option("--append", help="Add to existing --jsonl and --events files, a "
                                         "line at a time (a service that restarts keeps every record).")
                      ] = False,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many processed frames.")] = None,
    realtime: Annotated[bool, typer.Option(help="Play files at their FPS and drop frames like a camera "
                                               "(on with --serve).")] = False,
    loop: Annotated[bool, typer.Option(help="Files and folders: start again at the end, until Ctrl-C or "
                                           "--max-frames (a page to watch that stays up).")] = False,
    width: Annotated[int | None, typer.Option(help="Frame width to ask the webcam for.")] = None,
    height: Annotated[int | None, typer.Option(help="Frame height to ask the webcam for.")] = None,
    fps: Annotated[float | None, typer.Option(help="FPS to ask the webcam for (folders: slideshow speed).")
                   ] = None,
    reconnect_timeout: Annotated[float, typer.Option(help="Seconds to keep reconnecting a lost stream.")
                                 ] = 30.0,
    start: Annotated[float, typer.Option(min=0, max=10**6, help="Video files: skip this many seconds first.")
                     ] = 0.0,
    vid_stride: Annotated[int, typer.Option(help=ranged(
        "Files and folders: process every Nth frame (the others are skipped before they become images; "
        "frame numbers stay the source's). Live sources take every newest frame.", "vid_stride"))] = 1,
    collect: Annotated[Path | None, typer.Option(
        help="Save the frames whose result was uncertain or unknown here (JPEG + JSON sidecar), to label "
        "and fine-tune on.")] = None,
    collect_max: Annotated[int, typer.Option(min=1, max=1_000_000, help="Frames --collect saves at most "
                                                                       "(per camera).")] = 100,
    review: Annotated[Path | None, typer.Option(
        help="Queue the frames worth a look (unknown, uncertain, short states, a few confident ones) here, "
        "as REVIEW/CAMERA/ANSWER/NAME.jpg + .json, near-identical ones once (500 frames, 256 MB a camera)."
        )] = None,
    data: Annotated[Path | None, typer.Option(
        help="With --review and --serve: the page's /review labels move frames into DATA/CLASS/ (default "
        "REVIEW/_labelled).")] = None,
    record_to: Annotated[Path | None, typer.Option(
        help="With --serve: the page's record button saves frames into RECORD_TO/CLASS/ (finetune's "
        "layout).")] = None,
    threads: ThreadsOpt = None,
    serve: Annotated[str | None, typer.Option(
        metavar="[HOST:]PORT", help="Show the live picture and results on a web page at this address "
        "(host 127.0.0.1 unless given; another host needs --token or --no-auth).")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="EDGECNN_TOKEN", help="Secret viewers of --serve must give: open /?token=TOKEN.")] = None,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Let anyone who can reach a non-loopback --serve address watch.")] = False,
    events: Annotated[Path | None, typer.Option(
        help="Write one JSON line per state change (event); - for standard output.")] = None,
    metrics: Annotated[str | None, typer.Option(
        metavar="[HOST:]PORT", help="Prometheus metrics at http://HOST:PORT/metrics (host 127.0.0.1 unless "
        "given); with --serve they are also at the page's /metrics. Needs the box extra.")] = None,
    mqtt: Annotated[str | None, typer.Option(
        metavar="URL", help="Publish states and events to mqtt://USER:PASS@HOST:PORT/PREFIX (all but HOST "
        "optional; mqtts:// for TLS), with Home Assistant discovery.")] = None,
    mqtt_ca: Annotated[Path | None, typer.Option(
        metavar="FILE", help="With mqtts://: trust the broker's certificate by this private CA (PEM file).")
    ] = None,
    webhook: Annotated[list[str] | None, typer.Option(help="POST each event as JSON here (repeatable).")
                       ] = None,
    consensus: Annotated[str, typer.Option(
        metavar="K/N", help="A new state needs K of the last N frames (uncertain frames vote for none).")
    ] = "3/5",
    min_duration: Annotated[float, typer.Option(help="...and must have lasted this many seconds.")] = 0.3,
    clips: Annotated[Path | None, typer.Option(
        help="Write one H.264 MP4 per event into this folder (needs PyAV: the box extra).")] = None,
    pre_roll: Annotated[float, typer.Option(help="Seconds of each clip before its change (0-60).")] = 3.0,
    post_roll: Annotated[float, typer.Option(help="Seconds of each clip after its change (0-60).")] = 3.0,
    clips_buffer_mb: Annotated[float, typer.Option(min=1, max=4096, help="Each camera's pre-roll buffer cap "
                               "in MiB (a 640x480 frame takes 0.45: 64 MiB is 4.8 s at 30 fps).")] = 64.0,
    watch_model: Annotated[bool, typer.Option(
        help="Load the model again when its bundle folder or file is replaced on disk (an export --force "
        "to the same path), as SIGHUP and the page's POST /api/model/reload do; swapped in hot.")] = True,
    json_out: JsonOpt = False, cache_dir: CacheOpt = None,
) -> None:
    """Recognise what webcams, video files, streams or image folders show, live (several at once).

    With --serve, a browser shows it too: http://127.0.0.1:PORT/ (also /stream.mjpg, /events,
    /api/state and /healthz). A new model without a restart: export over the bundle (watched), SIGHUP or
    POST /api/model/reload.
    """
    from dataclasses import replace

    from edgecnn.runtime.live.camera import CameraConfig, check_outputs, run_camera
    from edgecnn.runtime.live.video import VideoOptions

    names, shown = _camera_sources(source, sources)
    desk = _review_desk(serve, no_auth, record_to, review, data)  # the page's /review, or None
    paced = not realtime and _paced_for_the_page(serve, names)
    options = VideoOptions(width=width, height=height, fps=fps, realtime=realtime or paced,
                           reconnect_timeout=reconnect_timeout, start=start, vid_stride=vid_stride, loop=loop)
    config = CameraConfig(sources=names, top_k=3 if top_k is None else top_k, min_prob=min_prob,
                          smooth=smooth, headless=headless, save=save, jsonl=jsonl, max_frames=max_frames,
                          video=options, force=force, append=append, names=tuple(name or ()),
                          regions=_regions(region), snapshot_dir=snapshot_dir)
    config, box_sinks = _box_outputs(config)  # --jsonl {camera}, the systemd watchdog
    check_outputs(config)  # an existing --save or --jsonl is refused before the page or the model start
    wanted = _event_options(events, (mqtt, mqtt_ca), webhook, consensus, min_duration, (force, append),
                            (clips, pre_roll, post_roll, clips_buffer_mb), jsonl, metrics)
    with ExitStack() as stack:
        sinks = _page(stack, serve, shown, token, no_auth, record_to, config, desk)
        sinks += [stack.enter_context(sink) if hasattr(sink, "__enter__") else sink for sink in box_sinks]
        if paced:
            say(f"note: --serve plays files in real time (as --realtime){'' if loop else LOOP_HINT}")
        collector, queue = _keepers(stack, collect, collect_max, review, wanted.consensus.n)
        sinks += [keeper for keeper in (collector, queue) if keeper is not None]
        load = camera_loader(model, device, backend, precision, threads, cache_dir, watch_model)  # reloads
        engine = stack.enter_context(load())
        config = replace(config, top_k=min(3, len(engine.labels)) if top_k is None else top_k)
        _offer_classes(desk, engine.labels, model, sinks[:1] if serve else [])
        wiring = _wiring(stack, wanted, config, engine.labels, sinks[:1] if serve else [], metrics)
        sinks += (list(wiring.loop_sinks) if wiring else []) + model_reloads(
            stack, load, config.top_k, model, sinks)
        summary = run_camera(engine, config, say=say, sinks=sinks)
    _report(summary, collector, json_out, wiring.counts() if wiring else {}, (jsonl, events), queue)


def _page(stack: Any, serve: str | None, shown: str, token: str | None, no_auth: bool,
          record_to: Path | None, config: Any, desk: Any = None) -> list[Any]:
    """The --serve page as the run's first sink (none without --serve)."""
    if not serve:
        return []
    server = stack.enter_context(_live_server(serve, shown, token, no_auth, say, record_to, desk))
    regions = dict(zip(config.camera_names, config.regions, strict=False)) if config.regions else None
    server.health.expect(config.camera_names, regions)  # /healthz notices a camera that never gives a frame
    return [server]


def _review_desk(serve: str | None, no_auth: bool, record_to: Path | None, review: Path | None,
                 data: Path | None) -> Any:
    """The page-only options checked; the desk of the page's /review with --review and --serve, else None."""
    if serve is None and (no_auth or record_to is not None or data is not None):
        alone = "--no-auth" if no_auth else "--record-to" if record_to is not None else "--data"
        raise EdgecnnError(f"{alone} goes with --serve [HOST:]PORT")
    if data is not None and review is None:
        raise EdgecnnError("--data goes with --review DIR: it is where the page's labels move queued frames")
    from edgecnn.runtime.live.review_desk import ReviewDesk

    return ReviewDesk(review, data) if review is not None and serve is not None else None


def _offer_classes(desk: Any, labels: Any, model: str = "", page: Any = ()) -> None:
    """The model's classes become the review page's first buttons, once the model has loaded; a bundle
    folder gets the page's Retrain button (web_retrain.py: the job of `review --retrain`)."""
    if desk is not None:
        desk.classes = tuple(labels)
        if page and model and Path(model).is_dir():
            from edgecnn.runtime.box.retrain import page_job
            from edgecnn.runtime.live.web_retrain import RetrainJob

            desk.retrain_job = RetrainJob(page_job(desk, Path(model), page[0]))


def _event_options(events: Path | None, mqtt: tuple[str | None, Path | None], webhook: list[str] | None,
                   consensus: str, min_duration: float, keep: tuple[bool, bool],
                   clips: tuple[Path | None, float, float, float],
                   jsonl: Path | None, metrics: str | None = None) -> Any:
    """The state/event options and --metrics, checked before the page or the model start; `keep`: an
    existing --events file is (replaced, appended to) with (--force, --append)."""
    from edgecnn.runtime.box.states import Consensus
    from edgecnn.runtime.box.wiring import EventOptions
    from edgecnn.runtime.live.recording import is_stdout

    if is_stdout(events) and is_stdout(jsonl):
        raise EdgecnnError("--jsonl and --events cannot both go to standard output; send one to a file")

    options = EventOptions(events, mqtt[0], tuple(webhook or ()), Consensus.parse(consensus, min_duration),
                           *keep, *clips[:3], mqtt_ca=mqtt[1], clips_buffer_mb=clips[3])
    options.check()
    _check_metrics(metrics)  # a bad address or a port in use fails here, not after the model loaded
    return options


def _wiring(stack: Any, options: Any, config: Any, labels: Any, page: list[Any], metrics: str | None) -> Any:
    from edgecnn.runtime.box.wiring import event_sinks

    if not (options.wanted or page or metrics):
        return None
    wiring = event_sinks(options, config.camera_names, labels, extra=page)
    stack.callback(wiring.close)
    return _metrics(stack, wiring, page, metrics)


def _metrics(stack: Any, wiring: Any, page: list[Any], address: str | None) -> Any:
    """Prometheus metrics on the page's /metrics (when prometheus-client is installed) and on --metrics."""
    import importlib.util

    from edgecnn.runtime.core.errors import install_hint

    installed = importlib.util.find_spec("prometheus_client") is not None
    if address is None and not (page and installed):
        return wiring
    if not installed:
        raise EdgecnnError(f"--metrics needs prometheus-client: {install_hint('box')}")
    from edgecnn.runtime.box.metrics import CameraMetrics
    from edgecnn.runtime.box.wiring import with_metrics
    from edgecnn.runtime.live.web import parse_address

    sink = CameraMetrics()
    if page:
        page[0].metrics = sink.render
    if address is not None:
        where = parse_address(address, "--metrics")
        try:
            server = sink.serve(where.host, where.port)
        except OSError as exc:  # taken while the model loaded, after _check_metrics found it free
            raise EdgecnnError(f"--metrics {where}: cannot listen there ({exc.strerror}); pick another "
                               "port (0 picks a free one)") from None
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        say(f"metrics: http://{where.host}:{server.server_port}/metrics")
    return with_metrics(wiring, sink)


def _check_metrics(address: str | None) -> None:
    """--metrics [HOST:]PORT parsed and bound once (then let go) before any slow work starts."""
    if address is not None:
        import importlib.util

        from edgecnn.runtime.core.errors import install_hint
        from edgecnn.runtime.live.web import bind_address, parse_address

        bind_address(parse_address(address, "--metrics"), "--metrics").close()
        if importlib.util.find_spec("prometheus_client") is None:
            raise EdgecnnError(f"--metrics needs prometheus-client: {install_hint('box')}")


def _report(summary: Any, collector: Any, json_out: bool, events: dict[str, Any],
            outputs: tuple[Path | None, ...], queue: Any = None) -> None:
    """The run's summary (table or JSON) and what --collect kept; exit 130 after Ctrl-C or SIGTERM, the
    outputs kept. With `--jsonl -` or `--events -` the records own stdout, so the summary goes to stderr."""
    from dataclasses import asdict

    from edgecnn.runtime.live.recording import is_stdout

    collected = {} if collector is None else {"collected": collector.saved,
                                              "collect_dropped": collector.dropped}
    data = {**asdict(summary), **collected, **events}
    taken = any(is_stdout(path) for path in outputs)
    if taken:
        err_console.print(json.dumps(data) if json_out else summary_table(summary), highlight=False)
    else:
        show(json_out, data, lambda: summary_table(summary))
    line = warn if taken else tell
    for keeper in (collector, queue):
        if keeper is not None and not json_out:
            line(keeper.describe())
    if events and not json_out:
        line(", ".join(f"{key.replace('_', ' ')} {' '.join(value) if isinstance(value, list) else value}"
                       for key, value in events.items()))
    if summary.stopped_by == "interrupt":
        raise typer.Exit(130)


LOOP_HINT = "; add --loop to keep the page going after the end"


def _regions(region: list[str] | None) -> tuple[Any, ...]:
    from edgecnn.runtime.live.regions import Region

    return tuple(Region.parse(text) for text in region or ())


def _box_outputs(config: Any) -> tuple[Any, list[Any]]:
    """What the box adds to a camera run: one --jsonl per camera ({camera} in the name) and, under systemd
    ($NOTIFY_SOCKET), the READY/WATCHDOG/STOPPING notifications."""
    from dataclasses import replace

    from edgecnn.runtime.box.service import Watchdog
    from edgecnn.runtime.live.camera_jsonl import CameraJsonl, camera_paths, per_camera
    from edgecnn.runtime.live.video import parse_source

    sinks: list[Any] = []
    if per_camera(config.jsonl):
        paths = camera_paths(config.jsonl, config.camera_names, config.force, config.append)
        # files: every record; live sources: never stall the loop
        live = config.video.realtime or any(parse_source(s).live for s in config.source_list)
        sinks.append(CameraJsonl(paths, wait=not live, template=config.jsonl, force=config.force, say=say,
                                 append=config.append))
        config = replace(config, jsonl=None)
    watchdog = Watchdog.from_environment()
    return config, sinks + ([watchdog] if watchdog is not None else [])


def _paced_for_the_page(serve: str | None, names: tuple[str, ...]) -> bool:
    """--serve plays files and folders at their own pace: at full speed a clip is over before a browser
    opens the page (cup.mp4: 1.7 s)."""
    from edgecnn.runtime.live.video import parse_source

    return serve is not None and not all(parse_source(name).live for name in names)


def _camera_sources(source: list[str] | None, sources: Path | None) -> tuple[tuple[str, ...], str]:
    """The sources named (--source, --sources FILE; else webcam 0), each checked, and how to show them."""
    from edgecnn.runtime.live.camera import read_sources_file
    from edgecnn.runtime.live.video import check_source

    names = tuple(source or ()) + (read_sources_file(sources) if sources else ()) or ("0",)
    specs = [check_source(name) for name in names]  # a missing file fails before the model loads
    return names, specs[0].name if len(specs) == 1 else ", ".join(spec.name for spec in specs)


def _keepers(stack: Any, collect: Path | None, limit: int, review: Path | None,
             window: int) -> tuple[Any, Any]:
    """--collect and --review (each None when not asked for), closed (flushed) when the run ends."""
    from edgecnn.runtime.live.collect import Collector
    from edgecnn.runtime.live.review import ReviewConfig, ReviewQueue

    collector = stack.enter_context(Collector(collect, limit=limit)) if collect else None
    queue = stack.enter_context(ReviewQueue(ReviewConfig(review, window=window))) if review else None
    return collector, queue


@app.command(epilog="Example: edgecnn capture 0 --out data/mine --label cup --count 100 --every 0.5")
@user_errors
def capture(
    source: Annotated[str, typer.Argument(help="Webcam index (0), video file, rtsp:// or http:// URL, or a "
                                               "folder of images.")],
    out: Annotated[Path, typer.Option(help="Data folder: frames go to OUT/LABEL/ (what finetune reads).")],
    label: Annotated[str, typer.Option(help="Class name: the folder the frames go to.")],
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help="Frames to save.")] = 100,
    every: Annotated[float, typer.Option(min=0, max=86_400, help="Seconds between saved frames (media time "
                                         "for files).")] = 0.0,
    min_change: Annotated[float, typer.Option(min=0, max=1, help="Skip a frame that differs less than this "
                                              "from the last saved one (mean grey difference, 0-1).")] = 0.02,
    duration: Annotated[float | None, typer.Option(
        min=0, max=86_400, help="Stop after this many seconds of the source (media time for files).")] = None,
    headless: Annotated[bool, typer.Option(help="No preview window (automatic when there is no display).")
                        ] = False,
    reconnect_timeout: Annotated[float, typer.Option(
        help=ranged("Seconds to keep reconnecting a lost stream.", "reconnect_timeout"))] = 30.0,
    json_out: JsonOpt = False,
) -> None:
    """Save frames of a camera, video or stream as training images for one class (Ctrl-C keeps them)."""
    import json
    from dataclasses import asdict

    from edgecnn.runtime.core.outputs import check_writable
    from edgecnn.runtime.live.capture import CaptureConfig, check_label, run_capture_cli
    from edgecnn.runtime.live.video import VideoOptions, check_source

    check_source(source)
    check_label(label)
    check_writable(out, "--out")
    config = CaptureConfig(source=source, out=out, label=label, count=count, every=every,
                           min_change=min_change, duration=duration,
                           video=VideoOptions(reconnect_timeout=reconnect_timeout))
    summary = run_capture_cli(config, headless=headless, progress=not json_out,
                              say=say)
    if json_out:
        typer.echo(json.dumps({k: v for k, v in asdict(summary).items() if k != "files"}))
    else:
        tell(capture_line(summary))
    if summary.interrupted:
        raise typer.Exit(130)


@contextmanager
def _live_server(serve: str, source: str, token: str | None, no_auth: bool,
                 say: Callable[[str], None], record_to: Path | None = None,
                 desk: Any = None) -> Iterator[Any]:
    """The --serve page, listening before the model loads (a port in use fails at once)."""
    from edgecnn.runtime.live.recorder import Recorder
    from edgecnn.runtime.live.web import HEADERS, LiveServer, check_access, parse_address
    from edgecnn.runtime.live.web_retrain import retrain_routes
    from edgecnn.runtime.live.web_review import review_routes

    address = parse_address(serve)
    access = check_access(address, token, no_auth, say)
    recorder = Recorder(record_to) if record_to is not None else None
    routes = (*review_routes(desk), *retrain_routes(desk, HEADERS)) if desk is not None else ()
    try:
        with LiveServer(address, source, access, say, recorder=recorder, routes=routes) as server:
            say(f"camera page: {server.url}" + ("?token=TOKEN" if server.token else ""))
            yield server
    finally:
        if recorder is not None:
            recorder.close()

