"""Retry policies: how often and how patiently an operation is tried again."""

from __future__ import annotations

import random
from collections.abc import Iterator

import attrs

__all__ = ["RetryAttempt", "RetryPolicy"]


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how long to wait before trying a failed request (or blob) again.

    A value the caller configures and inspects, like urllib3's ``Retry``: ``attempts`` counts
    retries after the first try; waits grow as ``backoff * 2**n`` (capped at ``max_backoff``)
    with full jitter; a server's ``Retry-After`` is honoured (capped at ``max_retry_after``)
    for the statuses in ``retry_after_statuses``.

    Transports apply it to each request (and a registry to each resumed transfer); the copy
    engine applies the destination's policy once more to each blob whose put failed with a
    retryable error (:attr:`~imagetypes.ImageError.retryable`), with a budget of its own per blob.
    """

    #: Retries after the first attempt (skopeo's ``--retry-times``).
    attempts: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    #: The first wait, in seconds.
    backoff: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    #: The longest wait between two attempts, in seconds.
    max_backoff: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    #: Randomise waits (full jitter) so that many clients do not retry in step.
    jitter: bool = True
    #: HTTP statuses worth retrying.
    statuses: frozenset[int] = attrs.field(
        default=frozenset({408, 429, 500, 502, 503, 504}), converter=frozenset
    )
    #: Statuses whose Retry-After header is honoured.
    retry_after_statuses: frozenset[int] = attrs.field(
        default=frozenset({429, 503}), converter=frozenset
    )
    #: The longest Retry-After honoured, in seconds.
    max_retry_after: float = 120.0

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(attempts=0)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits before each retry, in order (``attempts`` values)."""
        rnd = rng or random.Random()
        for n in range(self.attempts):
            cap = min(self.max_backoff, self.backoff * (2**n))
            yield rnd.uniform(0, cap) if self.jitter else cap

    def retry_after(self, status: int, header: str | None) -> float | None:
        """The server-requested wait for this response, if it is to be honoured."""
        if header is None or status not in self.retry_after_statuses:
            return None
        try:
            seconds = float(header.strip())
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                when = parsedate_to_datetime(header)
            except (TypeError, ValueError):
                return None
            import datetime as _dt

            now = _dt.datetime.now(when.tzinfo or _dt.timezone.utc)
            seconds = (when - now).total_seconds()
        return max(0.0, min(seconds, self.max_retry_after))


@attrs.frozen
class RetryAttempt:
    """What a transport reports just before it tries an operation again.

    Given to ``TransportOptions.on_retry``; the copy engine turns it into a progress event.
    """

    #: What is retried, in words (``reading manifest registry.example/app:1.0``); never with
    #: credentials or query strings.
    operation: str
    #: 1 for the first retry, 2 for the second, ...
    attempt: int
    #: Seconds waited before the retry.
    delay: float
    #: Why: the error or the HTTP status that failed the previous try.
    reason: str
