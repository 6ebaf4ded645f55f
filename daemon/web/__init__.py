"""The web page served at ``/``: try any image endpoint on a snapshot and see the boxes, the
cameras, backends, models and the recent log. A few static files (Alpine.js vendored from npm);
the page calls the JSON API like any client, sending the ``x-api-key`` the user typed, if any."""

from edgewatch.daemon.web.controller import ASSETS, page_response, wants_page, web_routes

__all__ = ["ASSETS", "page_response", "wants_page", "web_routes"]
