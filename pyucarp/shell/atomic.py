"""Atomic file replacement: readers see the old file or the whole new one, never half."""

from __future__ import annotations

import os


def atomic_write(path: str, data: bytes, mode: int = 0o644, *, make_dirs: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    ``make_dirs`` creates missing parent directories (right for a state directory under
    /run, wrong for a mistyped --pidfile, which should fail).
    """
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    # No tempfile module: it drags random and shutil into a daemon that counts its memory.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
