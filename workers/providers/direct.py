"""The direct path: a built request handed straight to httpx's transport, and when it may be used."""

from __future__ import annotations

from urllib.request import getproxies

import httpx


def environment_names_a_proxy() -> bool:
    """Whether HTTP_PROXY, HTTPS_PROXY or ALL_PROXY is set: httpx.Client then routes through it,
    so the direct transport path (which knows no proxies) must not be used."""
    proxies = getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def send_direct(transport: httpx.BaseTransport, request: httpx.Request) -> httpx.Response:
    """The reply to ``request``, read in full, as ``Client.send`` would return it."""
    response = transport.handle_request(request)
    try:
        response.read()
    except BaseException:
        response.close()  # hands the connection back (or drops it), as Client.send does
        raise
    return response
