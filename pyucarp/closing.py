"""The ``with`` half of everything that holds a resource until its ``close()``.

The daemon's sockets and the lab's namespaces and helper processes share it, so each of
them states only what closing means. Nothing is imported at run time: the module sits on
the daemon's import path.
"""

from __future__ import annotations

from pyucarp.records import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType
    from typing import TypeVar

    _Self = TypeVar("_Self", bound="Closing")


class Closing:
    """A context manager whose ``with`` block ends in :meth:`close`.

    ``__enter__`` returns the object itself (a subclass that must start something first
    overrides it); a block left by an exception ends in :meth:`close_after_error`, which
    closes as usual unless the subclass has a quieter way.
    """

    def close(self) -> object:
        """Release what the object holds (idempotent)."""
        raise NotImplementedError

    def close_after_error(self) -> None:
        """Close when the ``with`` block raised: the block's exception must not be hidden."""
        self.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close_after_error()
