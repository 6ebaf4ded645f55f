"""/v1/status and /v1/log: liveness, version, update check, backends, recent log."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.params import Parameter

from edgewatch.daemon import __version__
from edgewatch.daemon.access import access_summary
from edgewatch.daemon.api.schemas import (AccessSummary, BackendsResponse, LogEntry, LogResponse, MqttResponse,
                                          StorageSummary, UpdateResponse, VersionInfo, VersionResponse,
                                          inference_summary)
from edgewatch.daemon.host_readings import LOW_DISK_BYTES, disk_space
from edgewatch.daemon.mqtt.state import MqttState
from edgewatch.daemon.services import Services, ServicesDep


def version_info() -> VersionInfo:
    core, _, pre = __version__.partition("+")[0].partition("-")
    nums = [int(p) if p.isdigit() else 0 for p in core.split(".")[:3]] + [0, 0, 0]
    return VersionInfo(major=nums[0], minor=nums[1], patch=nums[2], preRelease=pre or None, securityUpdate=False,
                       build=0, file=f"edgewatch-{__version__}", releaseNotes="edgewatch edge AI daemon")


def storage_summary(services: Services) -> StorageSummary | None:
    """The data dir's disk, for /v1/status/version and `edgewatch status`."""
    space = disk_space(services.config.data_dir)
    if space is None:
        return None
    free, total = space
    return StorageSummary(freeBytes=free, totalBytes=total, low=free < LOW_DISK_BYTES)


class StatusController(Controller):
    path = "/v1/status"
    tags = ["status"]
    opt = {"scope": "detect"}  # NVRs read these

    @get("/ping", summary="Is the server alive", opt={"scope": "public"})
    async def ping(self) -> VersionResponse:
        return VersionResponse(success=True, message=__version__, version=version_info())

    @get("/version", summary="Server version, and which inference backend runs")
    async def version(self, services: ServicesDep) -> VersionResponse:
        return VersionResponse(success=True, message=__version__, version=version_info(),
                               inference=inference_summary(services),
                               modules=[m.status() for m in services.modules.values()],
                               access=msgspec.convert(access_summary(services.config.access), AccessSummary),
                               storage=storage_summary(services))

    @get("/updateavailable", summary="Whether an update is available (cannot be checked offline)")
    async def update_available(self) -> UpdateResponse:
        current = version_info()
        return UpdateResponse(
            success=True,
            message=(f"edgewatch {__version__} cannot check for updates: it never contacts a release server. "
                     "Compare `edgewatch --version` with the project's releases to update."),
            version=None, current=current, latest=None, updateAvailable=False)

    @get("/backends", summary="Each inference backend: available here or why not; which one runs")
    async def backends(self, services: ServicesDep) -> BackendsResponse:
        return BackendsResponse(success=True, **msgspec.structs.asdict(inference_summary(services)))

    @get("/mqtt", summary="The broker connection: connected or the last error")
    async def mqtt(self, services: ServicesDep) -> MqttResponse:
        link = services.mqtt
        return MqttResponse(success=True, mqtt=link.state() if link is not None else MqttState.off())


class LogController(Controller):
    path = "/v1/log"
    tags = ["status"]
    opt = {"scope": "admin"}

    @get("/list", summary="Recent log entries after last_id")
    async def list_entries(self, services: ServicesDep,
                           count: int = Parameter(default=20, ge=1, le=1000),
                           last_id: int = Parameter(default=0, ge=0)) -> LogResponse:
        entries = services.log_buffer.after(last_id, count)
        return LogResponse(success=True, entries=[LogEntry(**e) for e in entries])
