"""CameraConfig validation and the MJPEG multipart parser (no I/O)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgewatch.daemon.cameras import Backoff, CameraConfig
from edgewatch.daemon.cameras.config import describe
from edgewatch.daemon.cameras.mjpeg import MjpegParser, boundary_of


@pytest.mark.parametrize(
    ("url", "kind", "path"),
    [
        ("rtsp://cam.local:554/stream1", "rtsp", None),
        ("rtsps://cam.local/stream1", "rtsp", None),
        ("http://cam.local/snap.jpg", "http", None),
        ("https://cam.local/video.mjpg", "http", None),
        ("file:///var/lib/clips/yard.mp4", "file", "/var/lib/clips/yard.mp4"),
        ("file:clips/yard%20cam.avi", "file", "clips/yard cam.avi"),
        ("/var/lib/clips/yard.mp4", "file", "/var/lib/clips/yard.mp4"),
        ("/dev/video0", "v4l2", "/dev/video0"),
        (0, "v4l2", None),
        ("2", "v4l2", None),
    ],
)
def test_url_decides_the_kind(url: str | int, kind: str, path: str | None) -> None:
    cfg = CameraConfig(name="cam", url=url)
    assert cfg.resolved_kind == kind
    assert cfg.local_path == path


def test_defaults_and_explicit_kind() -> None:
    cfg = CameraConfig(name="front-door_1", url="http://cam.local/snap.jpg", kind="snapshot")
    assert (cfg.fps, cfg.enabled, cfg.kind, cfg.resolved_kind) == (5, True, "snapshot", "snapshot")
    assert cfg.open_timeout_s > 0 and cfg.read_timeout_s > 0
    assert CameraConfig(name="usb", url="/dev/v4l/by-id/usb-cam", kind="v4l2").resolved_kind == "v4l2"


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "Front", "url": "rtsp://h/s"},          # upper case
        {"name": "-cam", "url": "rtsp://h/s"},           # must start with a letter or digit
        {"name": "c" * 33, "url": "rtsp://h/s"},         # too long
        {"name": "cam", "url": "rtsp://h/s", "fps": 0},
        {"name": "cam", "url": "rtsp://h/s", "fps": 31},
        {"name": "cam", "url": "ftp://h/s"},             # unsupported scheme
        {"name": "cam", "url": ""},
        {"name": "cam", "url": -1},
        {"name": "cam", "url": "rtsp://h/s", "kind": "snapshot"},  # kind does not fit the url
        {"name": "cam", "url": "http://h/s", "kind": "rtsp"},
        {"name": "cam", "url": "rtsp://h/s", "open_timeout_s": 0},
        {"name": "cam", "url": "rtsp://h/s", "colour": "red"},     # unknown key
    ],
)
def test_invalid_configs_are_refused(fields: dict) -> None:
    with pytest.raises(ValidationError):
        CameraConfig(**fields)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://u:hunter22@127.0.0.1:99999/x", "port must be a number from 1 to 65535"),
        ("rtsp://u:hunter22@cam.local:0/x", "port must be a number from 1 to 65535"),
        ("rtsp://u:hunter22@cam.local:abc/x", "port must be a number from 1 to 65535"),
        ("rtsp://u:hunt/er22@cam.local/x", "percent-encode"),      # '/' in the password cuts the host short
        ("rtsp://u:hunter22@q@cam.local/x", "user:password part of the url is malformed"),
        ("rtsp://u:hunter22%zz@cam.local/x", "user:password part of the url is malformed"),
        ("rtsp://:hunter22@cam.local/x", "password but no user name"),
        ("rtsp://u:hunter22@/x", "the url has no host"),
        ("rtsp:///x", "the url has no host"),
        ("rtsp://u:hunter 22@cam.local/x", "spaces or control characters"),
        ("http://cam.local/snap\x01.jpg", "spaces or control characters"),
        ("rtsp://[::1/x", "IPv6"),
        ("rtsp://cam.local:554/a@b", "path contains '@'"),
        ("file://otherhost/clip.mp4", "local file"),
        ("/var/clips/a\nb.mp4", "control characters"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, words: str) -> None:
    url = url.encode().decode("unicode_escape")
    with pytest.raises(ValidationError) as info:
        CameraConfig(name="cam", url=url)
    message = describe(info.value)
    assert message.startswith("url: ") and words in message, message
    assert "hunter" not in message


@pytest.mark.parametrize("url", ["rtsp://admin:p%40ss%2Fw0rd@cam.local:554/ch1", "rtsp://[fe80::1]:554/s",
                                 "http://cam_1.local/snap.jpg", "rtsp://cam.local:/s", "/var/my clips/yard.mp4"])
def test_unusual_but_valid_urls_are_accepted(url: str) -> None:
    assert CameraConfig(name="cam", url=url).url == url


def test_password_is_redacted() -> None:
    cfg = CameraConfig(name="cam", url="rtsp://admin:s3cret@192.168.1.20:554/ch1")
    assert cfg.redacted_url == "rtsp://admin:***@192.168.1.20:554/ch1"
    assert "s3cret" not in repr(cfg.redacted_url)
    assert CameraConfig(name="cam", url="rtsp://192.168.1.20/ch1").redacted_url == "rtsp://192.168.1.20/ch1"


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.5, 30)
    assert [b.next() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    b.reset()
    assert b.next() == 0.5


JPEG_A = b"\xff\xd8" + b"A" * 100 + b"\xff\xd9"
JPEG_B = b"\xff\xd8" + b"B\r\n--frame in the data" * 10 + b"\xff\xd9"


def _feed_in_pieces(parser: MjpegParser, data: bytes, size: int) -> list[bytes]:
    out: list[bytes] = []
    for i in range(0, len(data), size):
        out += parser.feed(data[i:i + size])
    return out


@pytest.mark.parametrize("piece", [1, 7, 64, 10_000])
def test_mjpeg_parts_with_content_length(piece: int) -> None:
    stream = b"".join(
        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(j), j)
        for j in (JPEG_A, JPEG_B, JPEG_A)
    )
    parser = MjpegParser(boundary_of("multipart/x-mixed-replace; boundary=frame"))
    assert _feed_in_pieces(parser, stream, piece) == [JPEG_A, JPEG_B, JPEG_A]


@pytest.mark.parametrize("piece", [1, 13, 10_000])
def test_mjpeg_parts_cut_at_the_boundary(piece: int) -> None:
    # no Content-Length; the server declares the boundary with its dashes (a common quirk)
    stream = b"".join(b"--myboundary\r\nContent-Type: image/jpeg\r\n\r\n%s\r\n" % j for j in (JPEG_A, JPEG_A))
    stream += b"--myboundary--\r\n"
    parser = MjpegParser(boundary_of('multipart/x-mixed-replace;boundary="--myboundary"'))
    assert _feed_in_pieces(parser, stream, piece) == [JPEG_A, JPEG_A]


def test_mjpeg_without_boundary_uses_jpeg_markers() -> None:
    parser = MjpegParser(None)
    assert _feed_in_pieces(parser, b"junk" + JPEG_A + b"\r\n" + JPEG_A, 5) == [JPEG_A, JPEG_A]


def test_mjpeg_garbage_is_refused() -> None:
    parser = MjpegParser("frame", max_part_bytes=1000)
    with pytest.raises(ValueError, match="no complete MJPEG part"):
        parser.feed(b"x" * 2000)


def test_tracking_settings_from_the_config_file(tmp_path) -> None:
    from edgewatch.daemon.config import ConfigError, load_settings

    config = tmp_path / "edgewatch.yaml"
    config.write_text("cameras:\n  - name: porch\n    url: rtsp://cam.local/stream\n    detect:\n      end_after_s: 8\n"
                      "      tracking: {confirm_frames: 2, count_grace_s: 0.4, recheck_every_s: 30}\n")
    detect = load_settings(config, data_dir=tmp_path).cameras[0].detect
    assert (detect.end_after_s, detect.tracking.confirm_frames, detect.tracking.count_grace_s,
            detect.tracking.recheck_every_s) == (8, 2, 0.4, 30)
    assert detect.tracking.min_iou == 0.2 and detect.tracking.stationary_after_s == 10  # the defaults
    config.write_text("cameras:\n  - name: porch\n    url: rtsp://cam.local/stream\n    detect:\n"
                      "      tracking: {confirm_frames: 0, min_iou: 1.5, forget_after: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config, data_dir=tmp_path)
    for key in ("detect.tracking.confirm_frames", "detect.tracking.min_iou", "detect.tracking.forget_after"):
        assert key in str(err.value)
