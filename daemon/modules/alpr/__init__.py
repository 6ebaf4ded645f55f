"""Licence plate reading (CodeProject.AI's License Plate Reader): an image in, every plate's box,
its characters (A–Z, 0–9) and how sure the reading is; also run on the cameras' vehicles."""

from edgewatch.daemon.modules.alpr.module import MODULE_ID, AlprModule

__all__ = ["MODULE_ID", "AlprModule"]
