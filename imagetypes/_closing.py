"""``with`` support shared by sources, destinations, registries, images and blob readers."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self


class Closing:
    """Context manager plumbing: leaving a ``with`` block calls :meth:`close`."""

    def close(self) -> None:
        """Release resources. Safe to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
