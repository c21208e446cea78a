"""Fuzzing the frame decoder: ``parse_frame`` and ``AdvertCodec.decode`` never raise.

Two parts: a seeded loop over 100,000 generated inputs (structured mutations of valid
adverts, plus random bytes), fast enough for every run, and Hypothesis tests with fewer
examples that shrink a failure to a minimal frame. Every result is also checked for
sense: an accepted advert really carries the right vhid, TTL, group, checksum and HMAC.
"""

from __future__ import annotations

import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile
from pyucarp.core.codec import Advert, AdvertCodec, CarpFrame, Dropped, DropReason, parse_frame

VHID = 7
PASSWORD = b"s3cret"
VIP = "192.0.2.100"
OURS = "192.0.2.1"
PEER = "192.0.2.2"
TOTAL_INPUTS = 100_000
SEED = 20240425

CODEC = AdvertCodec(vhid=VHID, password=PASSWORD, vip=IPv4Address(VIP),
                    srcip=IPv4Address(OURS), group=IPv4Address(hostile.GROUP))


def _valid(rng: random.Random, counter: int | None = None, advbase: int | None = None,
           advskew: int | None = None) -> bytes:
    return hostile.advert(
        vhid=VHID, src=PEER, vip=VIP, password=PASSWORD,
        counter=rng.getrandbits(64) if counter is None else counter,
        advbase=rng.randrange(1, 256) if advbase is None else advbase,
        advskew=rng.randrange(256) if advskew is None else advskew,
        ip_id=rng.getrandbits(16),
    )


def _with_ihl(frame: bytes, ihl: int, rng: random.Random) -> bytes:
    """The advert re-framed with an IPv4 header of ``ihl`` words (options of noise)."""
    if len(frame) < 15:
        return frame
    ip = bytearray(frame[14:34])
    ip[0] = 0x40 | ihl
    options = rng.randbytes(max(0, ihl * 4 - 20))
    return frame[:14] + bytes(ip) + options + frame[34:]


# Each mutation takes a frame and the generator and returns a new frame.
Mutation = Callable[[bytes, random.Random], bytes]


def _flip_bits(frame: bytes, rng: random.Random) -> bytes:
    out = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_byte(frame: bytes, rng: random.Random) -> bytes:
    out = bytearray(frame)
    if out:
        out[rng.randrange(len(out))] = rng.choice((0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    return bytes(out)


def _set_field(frame: bytes, rng: random.Random) -> bytes:
    """An interesting value in a header field that steers parsing (IHL, protocol, TTL...)."""
    out = bytearray(frame)
    offset = rng.choice((12, 13, 14, 22, 23, 34, 35, 36, 37, 39))
    if offset < len(out):
        values = (0, 0x45, 0x4F, 0x40, 0x21, 0x11, 112, 255, VHID, rng.randrange(256))
        out[offset] = rng.choice(values)
    return bytes(out)


def _truncate(frame: bytes, rng: random.Random) -> bytes:
    return frame[:rng.randrange(len(frame) + 1)]


def _extend(frame: bytes, rng: random.Random) -> bytes:
    return frame + rng.randbytes(rng.randrange(1, 64))


def _insert_or_delete(frame: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(frame) + 1)
    if rng.random() < 0.5:
        return frame[:at] + rng.randbytes(rng.randrange(1, 8)) + frame[at:]
    return frame[:at] + frame[at + rng.randrange(1, 8):]


def _ihl(frame: bytes, rng: random.Random) -> bytes:
    return _with_ihl(frame, rng.randrange(16), rng)


def _lengths(frame: bytes, rng: random.Random) -> bytes:
    """Lie in the IP total length (never checked by ucarp, must not matter)."""
    out = bytearray(frame)
    if len(out) >= 18:
        struct.pack_into("!H", out, 16, rng.choice((0, 20, 55, 56, 57, 0xFFFF)))
    return bytes(out)


def _splice(frame: bytes, rng: random.Random) -> bytes:
    other = _valid(rng)
    at = rng.randrange(len(frame) + 1)
    return frame[:at] + other[at:]


def _fix_checksums(frame: bytes) -> bytes:
    """Recompute both checksums after a mutation, so the checks behind them are reached."""
    if len(frame) < 34 or frame[14] >> 4 != 4:
        return frame
    ip_len = (frame[14] & 0x0F) * 4
    if ip_len < 20 or len(frame) < 14 + ip_len + 36:
        return frame
    out = bytearray(frame)
    struct.pack_into("!H", out, 24, 0)
    struct.pack_into("!H", out, 24, hostile.inet_checksum(bytes(out[14:14 + ip_len])))
    carp = 14 + ip_len
    struct.pack_into("!H", out, carp + 6, 0)
    struct.pack_into("!H", out, carp + 6, hostile.inet_checksum(bytes(out[carp:carp + 36])))
    return bytes(out)


MUTATIONS: tuple[Mutation, ...] = (_flip_bits, _set_byte, _set_field, _truncate, _extend,
                                   _insert_or_delete, _ihl, _lengths, _splice)


def generate(rng: random.Random) -> bytes:
    """One fuzz input: random bytes (1 in 5) or a valid advert under 1-3 mutations,
    half of them with their checksums made right again."""
    if rng.random() < 0.2:
        return rng.randbytes(rng.randrange(0, 160))
    frame = _valid(rng)
    for _ in range(rng.randrange(1, 4)):
        frame = rng.choice(MUTATIONS)(frame, rng)
    return _fix_checksums(frame) if rng.random() < 0.5 else frame


def check(frame: bytes) -> Advert | Dropped:
    """Decode ``frame`` both ways; fail on an exception or on a result that makes no sense."""
    parsed = parse_frame(frame)
    assert isinstance(parsed, (CarpFrame, Dropped)), type(parsed)
    if isinstance(parsed, Dropped):
        assert isinstance(parsed.reason, DropReason) and isinstance(parsed.message, str)
    result = CODEC.decode(frame)
    if isinstance(result, Dropped):
        assert isinstance(result.reason, DropReason) and isinstance(result.message, str)
        return result
    assert isinstance(result, Advert), type(result)
    # Accepted: every check ucarp makes must really hold on the bytes.
    assert isinstance(parsed, CarpFrame)
    ip_len = (frame[14] & 0x0F) * 4
    carp = frame[14 + ip_len:14 + ip_len + 36]
    assert frame[12:14] == b"\x08\x00" and frame[23] == 112 and frame[22] == 255
    assert carp[0] >> 4 == 2 and carp[1] == VHID
    assert frame[30:34] == IPv4Address(hostile.GROUP).packed
    assert frame[26:30] != IPv4Address(OURS).packed
    assert hostile.inet_checksum(frame[14:14 + ip_len + 36]) == 0
    counter = int.from_bytes(carp[8:16], "big")
    assert carp[16:36] == hostile.carp_digest(PASSWORD, VHID, VIP, counter)
    assert (result.advbase, result.advskew, result.counter) == (carp[5], carp[2], counter)
    assert result.src == IPv4Address(frame[26:30])
    return result


def test_seeded_loop_of_100000_inputs_never_raises() -> None:
    """100,000 seeded inputs: no exception, sane results, and every drop reason reached."""
    rng = random.Random(SEED)
    reasons: Counter[str] = Counter()
    started = time.perf_counter()
    for _ in range(TOTAL_INPUTS):
        result = check(generate(rng))
        reasons["accepted" if isinstance(result, Advert) else result.reason.name] += 1
    elapsed = time.perf_counter() - started
    print(f"\nFIGURE fuzz_seeded_inputs = {TOTAL_INPUTS} in {elapsed:.1f} s; outcomes: "
          + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    # The mutations must reach every judgement of the decoder (else the fuzzing is blind).
    expected = {r.name for r in DropReason} - {"REPLAY"}  # replay is the daemon's, not the codec's
    assert expected <= set(reasons), expected - set(reasons)
    assert reasons["accepted"] > 0


def test_valid_adverts_are_accepted_and_own_are_dropped() -> None:
    """The generator's starting point is right: valid adverts pass, our own do not."""
    rng = random.Random(1)
    frame = _valid(rng, counter=5, advbase=1, advskew=9)
    assert check(frame) == Advert(IPv4Address(PEER), 1, 9, 5)
    own = hostile.advert(vhid=VHID, src=OURS, vip=VIP, counter=5, password=PASSWORD)
    result = check(own)
    assert isinstance(result, Dropped) and result.reason is DropReason.OWN
    # IP options (IHL > 5) move the CARP header: still judged, never misread.
    with_options = _with_ihl(frame, 6, rng)
    ip = bytearray(with_options[14:38])
    struct.pack_into("!H", ip, 10, 0)
    struct.pack_into("!H", ip, 10, hostile.inet_checksum(bytes(ip)))
    assert isinstance(check(with_options[:14] + bytes(ip) + with_options[38:]), (Advert, Dropped))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256))
def test_random_bytes_never_raise(frame: bytes) -> None:
    """Hypothesis: arbitrary byte strings."""
    check(frame)


@st.composite
def mutated_adverts(draw: st.DrawFn) -> bytes:
    """A valid advert with a few Hypothesis-chosen byte changes, cuts and additions."""
    frame = bytearray(hostile.advert(
        vhid=VHID, src=PEER, vip=VIP, password=PASSWORD,
        counter=draw(st.integers(0, 2**64 - 1)), advbase=draw(st.integers(0, 255)),
        advskew=draw(st.integers(0, 255)), ttl=draw(st.sampled_from((255, 254, 0, 1))),
    ))
    for offset, value in draw(st.lists(st.tuples(st.integers(0, 69), st.integers(0, 255)),
                                       max_size=4)):
        frame[offset] = value
    cut = draw(st.integers(0, len(frame)))
    tail = draw(st.binary(max_size=40))
    return bytes(frame[:cut]) + tail


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_adverts())
def test_mutated_adverts_never_raise(frame: bytes) -> None:
    """Hypothesis: structured mutations of a valid advert."""
    check(frame)
