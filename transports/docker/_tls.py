"""TLS settings per registry: certs.d folders (containers-certs.d(5)) and insecure registries."""

from __future__ import annotations

import os
import ssl
import threading
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


_SSLKey = tuple[object, ...]
_ssl_contexts: dict[_SSLKey, ssl.SSLContext] = {}
_ssl_lock = threading.Lock()


def _start_afresh_after_fork() -> None:
    """In a forked child: a parent's thread that held the lock does not exist here."""
    global _ssl_lock
    _ssl_lock = threading.Lock()


os.register_at_fork(after_in_child=_start_afresh_after_fork)


def make_ssl_context(host: str, options: TransportOptions) -> ssl.SSLContext:
    """An SSL context for ``host``: system trust plus the certs.d CAs, and any client pair.

    With ``tls_verify=False`` certificates are not checked (but client certificates are still
    presented). Made once per process for the same settings: making one loads the system's
    CA bundle (about 40 ms), and a sync makes clients for every image. The key covers
    everything a context is made from: the certs.d folder's files (by name, size and mtime)
    and the environment's CA locations, so a changed setting makes a new context. Contexts
    are shared: httpx only reads them, and ``SSLContext`` is thread-safe.
    """
    folder = cert_dir_for(host, options)
    files: tuple[tuple[str, int, int], ...] = ()
    if folder is not None and folder.is_dir():
        files = tuple(sorted(_file_signature(e) for e in os.scandir(folder)))
    else:
        folder = None
    env = tuple(os.environ.get(v) for v in ("SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE"))
    key: _SSLKey = (host, options.tls_verify is False, str(folder), files, env)
    with _ssl_lock:
        ctx = _ssl_contexts.get(key)
    if ctx is not None:
        return ctx
    if options.tls_verify is False and folder is None:
        # Nothing is verified and no client certificate is sent: the system's CAs, which
        # create_default_context would load, would never be used.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if env[2]:
            ctx.keylog_filename = env[2]
    else:
        ctx = _new_ssl_context(folder, options)
    with _ssl_lock:
        return _ssl_contexts.setdefault(key, ctx)


def _file_signature(entry: os.DirEntry[str]) -> tuple[str, int, int]:
    try:
        st = entry.stat()
    except OSError:  # a dangling link: _new_ssl_context reports it, if it matters
        return entry.name, -1, -1
    return entry.name, st.st_size, st.st_mtime_ns


def _new_ssl_context(folder: Path | None, options: TransportOptions) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if options.tls_verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if folder is None:
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
