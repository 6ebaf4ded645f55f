"""The capability modules the daemon serves, in start order: one folder each on the contract of
:mod:`.base`. Adding a capability is its folder plus one line here."""

from __future__ import annotations

from edgewatch.daemon.modules.alpr import AlprModule
from edgewatch.daemon.modules.background import BackgroundModule
from edgewatch.daemon.modules.base import CapabilityModule
from edgewatch.daemon.modules.cartoon import CartoonModule
from edgewatch.daemon.modules.detection import DetectionModule
from edgewatch.daemon.modules.faces import FacesModule
from edgewatch.daemon.modules.portrait import PortraitModule
from edgewatch.daemon.modules.scene import SceneModule
from edgewatch.daemon.modules.sound import SoundModule
from edgewatch.daemon.modules.superresolution import SuperResolutionModule
from edgewatch.daemon.modules.taskapi import TaskApiModule
from edgewatch.daemon.modules.text import TextModule

MODULES: tuple[type[CapabilityModule], ...] = (
    DetectionModule,
    FacesModule,
    AlprModule,
    SoundModule,
    TextModule,
    BackgroundModule,
    PortraitModule,
    SuperResolutionModule,
    SceneModule,
    CartoonModule,
    TaskApiModule,
)
