"""Server addresses: a client's URL and whether a host is loopback. Light (no numpy): the CLI reads these
before the editor paints."""

from __future__ import annotations

import ipaddress

from morph.errors import InputError


def server_url(url: str) -> str:
    """`url` with a scheme (http:// by default) and no trailing slash."""
    url = url.strip().rstrip("/")
    if not url:
        raise InputError("--server needs a URL, e.g. http://127.0.0.1:8765")
    if url.startswith("neuronpedia+"):  # a Neuronpedia inference server (morph.server.neuronpedia_client)
        return url
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise InputError(f"--server {url}: only http:// and https:// servers are supported")
    return url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
