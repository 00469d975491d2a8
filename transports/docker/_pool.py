"""Registry clients shared by the images of one run (a sync, or a caller's batch of copies).

A run that opens many images puts a shared-state object (:class:`imagetypes.SharedState`) in
``TransportOptions.extra`` under :data:`imagetypes.SHARED_STATE_OPTION` (``imagetypes.copy.sync``
does). The docker transport then keeps a :class:`RegistryClientPool` there: every source,
destination and registry listing of the run that talks to the same registry, for the same
repository, with equal options, shares one :class:`~._client.RegistryClient` (its connections,
credentials, tokens and the answer to its ``/v2/`` ping) instead of making its own. The pool's
clients are closed when the run closes its shared state; without one, every user makes (and closes)
a client of its own, as before.

Clients are shared per repository, not per host: a token's scopes are those of every
repository its client has used, so one client per host would ask the token server for ever
longer scope lists over a sync of many repositories.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from imagetypes.types import SHARED_STATE_OPTION, TransportOptions

from ._client import RegistryClient

__all__ = [
    "CLIENT_POOL_KEY",
    "SHARED_STATE_OPTION",
    "RegistryClientPool",
    "registry_client",
    "run_configuration",
    "run_memo",
]

#: The key the docker transport keeps its :class:`RegistryClientPool` under in that state.
CLIENT_POOL_KEY = "docker.client_pool"

_T = TypeVar("_T")


class _SharedState(Protocol):
    def get(self, key: str, factory: Callable[[], _T]) -> _T: ...


# Equal options make equal clients. TransportOptions compares every field but ``on_retry``
# (each copy reports retries through its own callback: see _ClientView), ``extra`` included.
_Key = tuple[str, "str | None", TransportOptions]


class RegistryClientPool:
    """One :class:`~._client.RegistryClient` per (registry host, repository, options).

    :meth:`client` hands out views of the pooled clients; closing a view leaves the pooled
    client open for the next user, :meth:`close` closes them all. Safe across threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[_Key, RegistryClient] = {}
        self._closed = False
        #: Clients made so far (for tests and diagnostics).
        self.created = 0

    def __repr__(self) -> str:
        with self._lock:
            return f"<RegistryClientPool of {len(self._clients)} clients>"

    def client(
        self, host: str, options: TransportOptions, *, repository: str | None = None
    ) -> RegistryClient:
        """The client for ``host`` (``repository``'s credentials) with ``options``."""
        key: _Key = (host, repository, options)
        with self._lock:
            if self._closed:
                raise RuntimeError("the registry client pool is closed")
            shared = self._clients.get(key)
            if shared is None:
                # Made under the lock: two images starting together must not both make one.
                # It costs no request (the ping waits for the first use).
                shared = RegistryClient(host, options, repository=repository)
                self._clients[key] = shared
                self.created += 1
        return _ClientView(shared, options)

    def close(self) -> None:
        """Close every pooled client; the pool hands out no more."""
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


class _ClientView(RegistryClient):
    """A pooled client as one user sees it: the pool's connections, credentials, tokens and
    ping, with the user's own options (so retries are reported to its own ``on_retry``).
    Closing it leaves the pooled client open."""

    def __init__(self, shared: RegistryClient, options: TransportOptions) -> None:
        # No RegistryClient.__init__: everything but the options is the shared client's (the
        # same objects, so tokens fetched through one view serve the others).
        vars(self).update(vars(shared))
        self.options = options
        self.shared = True
        self._shared = shared

    def __repr__(self) -> str:
        return f"<RegistryClient {self.host} (shared)>"

    @property
    def base_url(self) -> str:
        # The shared client pings once; its answer serves every view.
        return self._shared.base_url

    def close(self) -> None:
        """Nothing: the pool closes the shared client when the run ends."""


def _run_state(options: TransportOptions) -> _SharedState | None:
    state: Any = options.extra.get(SHARED_STATE_OPTION)
    if state is None:
        return None
    if not callable(getattr(state, "get", None)):
        raise TypeError(
            f"{SHARED_STATE_OPTION} must be a shared-state object with get(key, factory), "
            f"not {type(state).__name__}"
        )
    shared: _SharedState = state
    return shared


def client_pool(options: TransportOptions) -> RegistryClientPool | None:
    """The run's pool, when ``options`` carry a run's shared state."""
    state = _run_state(options)
    return None if state is None else state.get(CLIENT_POOL_KEY, RegistryClientPool)


def run_memo(options: TransportOptions, key: str, factory: Callable[[], _T]) -> _T:
    """``factory()``, made once per run when ``options`` carry a run's shared state.

    For what a run reads once, as skopeo reads it once per process: the registries.conf and
    registries.d files (a sync opens every image's source and destination).
    """
    state = _run_state(options)
    return factory() if state is None else state.get(key, factory)


def run_configuration(
    options: TransportOptions,
    key: str,
    kind: type[_T],
    load: Callable[[str | os.PathLike[str] | None], _T],
) -> _T:
    """The configuration ``options.extra[key]`` names: a ``kind`` object as it is, else the
    files at that path (``None``: the default ones) read by ``load``, once per run (see
    :func:`run_memo`; a sync opens every image's source and destination)."""
    value = options.extra.get(key)
    if isinstance(value, kind):
        return value
    if value is None or isinstance(value, (str, os.PathLike)):
        path: str | os.PathLike[str] | None = value
        return run_memo(options, f"{key}:{value}", lambda: load(path))
    raise TypeError(f"{key} must be a path or a {kind.__name__}, not {type(value).__name__}")


def registry_client(
    host: str, options: TransportOptions, *, repository: str | None = None
) -> RegistryClient:
    """A client for ``host``: the run's pooled one when ``options`` carry shared state, else a
    new one (which the caller closes either way)."""
    pool = client_pool(options)
    if pool is None:
        return RegistryClient(host, options, repository=repository)
    return pool.client(host, options, repository=repository)
