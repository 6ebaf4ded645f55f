"""Harnesses the test suite (tests/) and the benchmarks (bench/) share.

- ``daemon_process``: ``edgewatch serve`` as a real process on a free loopback port.
- ``scenes``: scripted camera scenes with known truth (who is in view, where, and what a detector
  reports); ``photo_scene``: such scenes made of real photos, for a real detector.
- ``replay``: a scene's detections through the tracker, scored against the truth (MOT figures from
  motmetrics).
- ``camera_support``: a restartable loopback RTSP server (``rtsp_server.py``, run by the system's
  python3 with GStreamer) and a tiny HTTP camera.
- ``rknn_simulator``: rknn-toolkit2's PC simulator presented as a Backend.

Nothing here is imported by the daemon. Importing this package loads nothing; test-only or heavy
dependencies (motmetrics and its pandas, pytest) are imported inside the functions that need them.
"""
