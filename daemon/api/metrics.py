"""GET /metrics: the daemon's Prometheus metrics (``edgewatch.daemon.metrics``) in the text format.

A plain route handler, so that access control can be given to it as a Litestar guard where it is
registered; it is left out of the OpenAPI schema (the README lists the metrics)."""

from __future__ import annotations

from litestar import Response, get

from edgewatch.daemon.api.errors import ApiError
from edgewatch.daemon.metrics import CONTENT_TYPE
from edgewatch.daemon.services import ServicesDep


@get("/metrics", include_in_schema=False, media_type=CONTENT_TYPE, opt={"scope": "admin"})
async def scrape_metrics(services: ServicesDep) -> Response[bytes]:
    if services.metrics is None:
        raise ApiError(503, "metrics are not ready yet: the daemon is still starting")
    return Response(services.metrics.scrape(), media_type=CONTENT_TYPE)
