"""Faces (CodeProject.AI's face API): detection, registration, recognition and matching on the box,
with a crash-safe face store."""

from edgewatch.daemon.modules.faces.module import MODULE_ID, FacesModule

__all__ = ["MODULE_ID", "FacesModule"]
