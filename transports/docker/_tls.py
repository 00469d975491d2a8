"""TLS settings per registry: certs.d folders (containers-certs.d(5)) and insecure registries."""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from imagetypes.errors import ImageError
from imagetypes.types import TransportOptions

__all__ = ["TLSConfigError", "cert_dir_for", "make_ssl_context", "system_cert_dirs"]

_SYSTEM_CERTS_D = ("/etc/containers/certs.d", "/etc/docker/certs.d")


class TLSConfigError(ImageError):
    """A certs.d folder is unusable (a client certificate without its key, an unreadable CA)."""


def system_cert_dirs() -> tuple[str, ...]:
    """The certs.d roots searched for a registry's folder, in order of preference."""
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return (os.path.join(home, "containers", "certs.d"), *_SYSTEM_CERTS_D)


def cert_dir_for(
    host: str, options: TransportOptions, roots: Sequence[str] | None = None
) -> Path | None:
    """The folder holding CAs and client certificates for ``host`` (``HOST[:PORT]``).

    ``options.cert_dir`` replaces the search (as skopeo's ``--cert-dir`` does); otherwise the
    first ``<root>/<host>`` that exists is used.
    """
    if options.cert_dir:
        return Path(options.cert_dir)
    for root in roots if roots is not None else system_cert_dirs():
        candidate = Path(root) / host
        if candidate.is_dir():
            return candidate
    return None


def make_ssl_context(host: str, options: TransportOptions) -> ssl.SSLContext:
    """An SSL context for ``host``: system trust plus the certs.d CAs, and any client pair.

    With ``tls_verify=False`` certificates are not checked (but client certificates are still
    presented).
    """
    ctx = ssl.create_default_context()
    if options.tls_verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    folder = cert_dir_for(host, options)
    if folder is None or not folder.is_dir():
        return ctx
    names = sorted(p.name for p in folder.iterdir())
    for name in names:
        path = folder / name
        if name.endswith(".crt"):
            try:
                ctx.load_verify_locations(cafile=str(path))
            except (OSError, ssl.SSLError) as e:
                raise TLSConfigError(f"cannot load CA certificate {path}: {e}") from e
        elif name.endswith(".cert"):
            key = folder / (name[: -len(".cert")] + ".key")
            if not key.exists():
                raise TLSConfigError(f"missing key {key.name} for client certificate {path}")
            try:
                ctx.load_cert_chain(certfile=str(path), keyfile=str(key))
            except (OSError, ssl.SSLError) as e:
                raise TLSConfigError(f"cannot load client certificate {path}: {e}") from e
        elif name.endswith(".key"):
            cert = folder / (name[: -len(".key")] + ".cert")
            if not cert.exists():
                raise TLSConfigError(f"missing client certificate {cert.name} for key {path}")
    return ctx
