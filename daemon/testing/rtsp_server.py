#!/usr/bin/python3
"""Loopback RTSP server for the camera tests (GStreamer's gst-rtsp-server through python3-gi).

Run it with the distribution's interpreter, not a venv:

    /usr/bin/python3 rtsp_server.py --port 8554 --frames DIR [--mount /cam] [--size 1280x720] [--fps 5]

DIR holds img000.jpg, img001.jpg, ... ; they are played in a loop as an H.264 stream at a fixed size
and frame rate. Prints ``READY rtsp://127.0.0.1:PORT/MOUNT`` on stdout once the server listens; runs
until SIGTERM/SIGINT.

Needs (Debian 12): gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-tools
gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(frames: Path, width: int, height: int, fps: int) -> str:
    location = str(frames / "img%03d.jpg").replace('"', '\\"')
    return (
        f'( multifilesrc location="{location}" loop=true caps="image/jpeg,framerate={fps}/1" '
        f"! jpegdec ! videoconvert ! videoscale "
        f"! video/x-raw,format=I420,width={width},height={height} "
        f"! videorate ! video/x-raw,framerate={fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={max(fps * 2, 2)} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--frames", type=Path, required=True)
    ap.add_argument("--mount", default="/cam")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=5)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.frames, width, height, args.fps))
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on 127.0.0.1:{args.port}", flush=True)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY rtsp://127.0.0.1:{args.port}{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
