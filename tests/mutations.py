"""Frames broken in every small way, for the codec tests: edited by hand, or by Hypothesis."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, frames: Sequence[bytes]) -> bytes:
    """One of ``frames`` after up to four edits: a byte flipped or set, the frame cut
    short, or random bytes appended."""
    b = bytearray(draw(st.sampled_from(frames)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "extend", "set"]))
        if op in ("flip", "set") and b:
            i = draw(st.integers(0, len(b) - 1))
            b[i] = b[i] ^ draw(st.integers(1, 255)) if op == "flip" else draw(st.integers(0, 255))
        elif op == "truncate":
            del b[draw(st.integers(0, len(b))):]
        else:
            b += draw(st.binary(min_size=1, max_size=40))
    return bytes(b)


def replaced(frame: bytes, offset: int, value: int | bytes) -> bytes:
    """``frame`` with the byte (an int) or bytes at ``offset`` replaced."""
    b = bytearray(frame)
    data = bytes([value]) if isinstance(value, int) else value
    b[offset : offset + len(data)] = data
    return bytes(b)
