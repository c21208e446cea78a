"""Keeping the loop's wake-ups prompt: real-time scheduling, locked memory, a quiet GC.

At advbase 0 an instance may advertise 20 to 100 times a second, and its backups decide
on intervals of tens of milliseconds. Two things can make the loop late that the loop
itself cannot see: the scheduler (other busy processes on the same cores) and paging
(memory swapped out under pressure), plus one thing of Python's own, the garbage
collector, whose full collections walk every object.

* :func:`quiet_gc` runs once the instances have started: it collects, then freezes what
  survived (``gc.freeze``), so later collections only walk what was allocated since — a
  few objects per advert — instead of the whole start-up heap.
* :func:`enter_realtime` is ``--realtime[=PRIORITY]``, opt-in as keepalived's
  ``vrrp_rt_priority`` and ``no_swap``: SCHED_RR at PRIORITY (1-99) and mlockall. It
  loads ctypes (about 1 MiB) only when asked for.
"""

from __future__ import annotations

import gc
import os

from pyucarp.errors import RuntimeFailure

DEFAULT_PRIORITY = 10  # above every SCHED_OTHER task, far below the kernel's own threads
_MCL_CURRENT = 1  # <sys/mman.h>
_MCL_FUTURE = 2


def quiet_gc() -> None:
    """Collect once, then keep the start-up heap out of every later collection."""
    gc.collect()
    gc.freeze()


def enter_realtime(priority: int) -> None:
    """SCHED_RR at ``priority`` and all memory locked; RuntimeFailure when refused."""
    if not 1 <= priority <= 99:
        raise RuntimeFailure(f"Real-time priority must be between 1 and 99: [{priority}]")
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(priority))
    except OSError as exc:
        raise RuntimeFailure(f"Unable to set real-time priority {priority}: {exc.strerror}") \
            from None
    import ctypes  # only with --realtime: mlockall has no binding in os

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        raise RuntimeFailure(f"Unable to lock memory: {os.strerror(ctypes.get_errno())}")
