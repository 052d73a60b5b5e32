"""When a provider may hand requests straight to httpx's transport instead of going through the Client."""

from __future__ import annotations

from urllib.request import getproxies


def environment_names_a_proxy() -> bool:
    """Whether HTTP_PROXY, HTTPS_PROXY or ALL_PROXY is set: httpx.Client then routes through it,
    so the direct transport path (which knows no proxies) must not be used."""
    proxies = getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))
