"""Typed, immutable records that cost the daemon no :mod:`typing` at run time.

``class Advert(NamedTuple): ...`` with ``NamedTuple`` imported from here reads as
typing's, and mypy checks it as typing's. At run time the class is made by
:func:`collections.namedtuple`: the fields, their defaults, the methods, properties and
docstring as written, plus ``_replace``, ``_asdict`` and ``_fields``. The daemon uses
nothing else from typing, and importing it costs ~1.2 MiB of resident memory per process
(it imports re and builds its generic aliases); dataclasses would cost ~2 MiB more
(inspect, dis, tokenize...).

``TYPE_CHECKING`` is typing's constant without the import: imports needed only by
annotations go under ``if TYPE_CHECKING:`` (mypy takes any constant of that name as true).
"""

from __future__ import annotations

from collections import namedtuple

__all__ = ["TYPE_CHECKING", "NamedTuple"]

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:

    class _RecordType(type):
        """Makes ``class X(NamedTuple)`` a namedtuple with X's fields and methods."""

        def __new__(mcls, name, bases, namespace):
            if not bases:  # NamedTuple itself
                return super().__new__(mcls, name, bases, namespace)
            fields = list(namespace.get("__annotations__", {}))
            defaults = [namespace[f] for f in fields if f in namespace]
            # namedtuple gives its defaults to the last fields: they must be those.
            if any(f not in namespace for f in fields[len(fields) - len(defaults):]):
                raise TypeError(f"{name}: a field without default follows one with a default")
            cls = namedtuple(name, fields, defaults=defaults, module=namespace["__module__"])
            for key, value in namespace.items():
                if key not in fields and key != "__module__":
                    setattr(cls, key, value)
            return cls

    class NamedTuple(metaclass=_RecordType):
        """The base of a record (see the module's docstring)."""
