"""A real RTSP camera for the tests: GStreamer's RTSP server playing a video in a loop, with a password.

    /usr/bin/python3 tests/runtime/rtsp_server.py VIDEO PORT USER PASSWORD

Run by the system python3 (Debian python3-gi, gir1.2-gst-rtsp-server-1.0), never the venv. It prints
"ready rtsp://127.0.0.1:PORT/cam" (no password) once it listens, and serves until killed. The file is
decoded in its own pipeline, rewound at each end, and handed to the RTSP media through intervideo, so
every client sees one endless live camera (H.264, 320x240, 15 FPS).
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

CHANNEL = "edgecnn-test-camera"


def player(video: str) -> Gst.Pipeline:
    """The video, decoded in real time into the intervideo channel, rewound whenever it ends."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{video}" ! decodebin ! videoconvert ! videoscale ! videorate ! '
        f"video/x-raw,format=I420,width=320,height=240,framerate=15/1 ! intervideosink channel={CHANNEL}")

    def on_message(bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.EOS:
            pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif message.type == Gst.MessageType.ERROR:
            print(f"player error: {message.parse_error()[0].message}", file=sys.stderr, flush=True)
            sys.exit(1)

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    return pipeline


def server(port: int, user: str, password: str) -> GstRtspServer.RTSPServer:
    rtsp = GstRtspServer.RTSPServer()
    rtsp.set_address("127.0.0.1")
    rtsp.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( intervideosrc channel={CHANNEL} ! video/x-raw,framerate=15/1 ! videoconvert ! "
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=600 ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    rtsp.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role_from_structure(Gst.Structure.new_from_string(
        "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
    factory.set_permissions(permissions)
    rtsp.get_mount_points().add_factory("/cam", factory)
    return rtsp


def main() -> None:
    video, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    Gst.init(None)
    pipeline = player(video)
    pipeline.set_state(Gst.State.PLAYING)
    rtsp = server(port, user, password)
    if rtsp.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"ready rtsp://127.0.0.1:{rtsp.get_bound_port()}/cam", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
