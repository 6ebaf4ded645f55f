"""Work-arounds for Litestar 2 routing bugs that clients can see (fixed in Litestar 3).

- OPTIONS answers ``Allow`` with only some of a path's methods (litestar-org/litestar#4169): when
  handlers of one path are registered one after another, Litestar builds a new route for the path
  each time but keeps the first route's automatic OPTIONS handler, which lists that first route's
  methods. :func:`fix_options_allow` points each such handler at the route that serves it.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.routes import HTTPRoute


def fix_options_allow(app: Litestar) -> int:
    """Make every automatic OPTIONS handler answer its own route's methods; how many were stale."""
    fixed = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            fn = getattr(handler.fn, "__closure__", None) and handler.fn
            if handler.handler_name != "options_handler" or fn is None:
                continue
            for cell in fn.__closure__:
                if isinstance(cell.cell_contents, HTTPRoute) and cell.cell_contents is not route:
                    cell.cell_contents = route
                    fixed += 1
    return fixed
