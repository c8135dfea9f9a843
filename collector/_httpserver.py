"""The start and stop plumbing of the standard library's ``ThreadingHTTPServer`` in a component.

The health check, the feedback endpoint, the Prometheus exporter and the OTLP/HTTP receiver each
serve from one daemon thread; these helpers bind, serve and stop the same way for all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import TypeVar

from collector.errors import ComponentError

_Server = TypeVar("_Server", bound=ThreadingHTTPServer)


def bind(make: Callable[[], _Server], where: str, endpoint: str) -> _Server:
    """``make()`` the server with daemon handler threads.

    Raises ``ComponentError`` ("<where>: cannot listen on <endpoint>: ...") when the address cannot be
    bound: a port in use or an address not on this host is a configuration mistake, found at start-up.
    """
    try:
        server = make()
    except OSError as exc:
        raise ComponentError(f"{where}: cannot listen on {endpoint}: {exc}") from exc
    server.daemon_threads = True
    return server


def serve(server: ThreadingHTTPServer, name: str, *, poll_interval: float = 0.5) -> threading.Thread:
    """Start and return a daemon thread named ``name`` running ``server.serve_forever(poll_interval)``."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval}, name=name, daemon=True
    )
    thread.start()
    return thread


def stop(server: ThreadingHTTPServer) -> None:
    """Stop serving (waits for ``serve_forever`` to return) and close the listening socket."""
    server.shutdown()
    server.server_close()
