"""Hostile and broken CARP traffic, for the hardening and fuzz tests.

Frame builders: CARP advertisements byte for byte as ucarp sends them (reference §2),
written here independently of :mod:`pyucarp.core.codec` so the tests do not grade the codec
with its own encoder, plus every way of breaking one (checksums, TTL, version, vhid,
truncation, random bytes, replays). :func:`hostile_mix` assembles a seeded flood, which a
lab host sends with :meth:`pyucarp.lab.netlab.Host.flood`. :func:`bpf_run` runs a classic
socket filter the way the kernel does, to tell which frames a daemon's socket receives.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyucarp.lab.helper import inet_checksum

__all__ = [
    "GROUP",
    "HostileMix",
    "VictimView",
    "advert",
    "bpf_passes",
    "bpf_run",
    "break_checksum",
    "carp_digest",
    "hostile_mix",
    "inet_checksum",
    "truncations",
]

GROUP = "224.0.0.18"
GROUP_MAC = bytes.fromhex("01005e000012")


# --------------------------------------------------------------------------- frames


def carp_digest(password: bytes, vhid: int, vip: str, counter: int) -> bytes:
    """ucarp's HMAC-SHA1 over ``02 01 vhid VIP counter``, keyed with the password."""
    message = bytes([2, 1, vhid]) + ipaddress.IPv4Address(vip).packed + counter.to_bytes(8, "big")
    return hmac.new(password, message, hashlib.sha1).digest()


def advert(
    *,
    vhid: int,
    src: str,
    vip: str,
    counter: int,
    password: bytes | None = None,
    digest: bytes | None = None,
    advbase: int = 1,
    advskew: int = 0,
    ttl: int = 255,
    version: int = 2,
    ip_id: int = 0,
    group: str = GROUP,
    eth_src: bytes | None = None,
) -> bytes:
    """One 70-byte advertisement as ucarp builds it.

    The digest is ``digest`` when given, else the true HMAC for ``password`` (a frame
    with neither gets 20 zero bytes). Both checksums are correct for the fields given.
    """
    if digest is None:
        digest = carp_digest(password, vhid, vip, counter) if password is not None else bytes(20)
    carp = bytearray(struct.pack("!BBBBBBHQ20s", (version << 4) | 1, vhid, advskew, 7, 0,
                                 advbase, 0, counter, digest))
    struct.pack_into("!H", carp, 6, inet_checksum(bytes(carp)))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 56, ip_id, 0x4000, ttl, 112, 0,
                               ipaddress.IPv4Address(src).packed,
                               ipaddress.IPv4Address(group).packed))
    struct.pack_into("!H", ip, 10, inet_checksum(bytes(ip)))
    if eth_src is None:
        eth_src = bytes([0, 0, 0x5E, 0, 0, vhid])
    return GROUP_MAC + eth_src + b"\x08\x00" + bytes(ip) + bytes(carp)


def break_checksum(frame: bytes) -> bytes:
    """``frame`` with its CARP checksum field off by one (nothing else changed)."""
    out = bytearray(frame)
    value = struct.unpack_from("!H", out, 40)[0]
    struct.pack_into("!H", out, 40, (value + 1) & 0xFFFF)
    return bytes(out)


def truncations(frame: bytes) -> list[bytes]:
    """``frame`` cut at every length from 0 to ``len(frame) - 1``."""
    return [frame[:n] for n in range(len(frame))]


def bpf_passes(program: bytes, frame: bytes) -> bool:
    """Whether a socket with the classic BPF ``program`` attached would receive ``frame``."""
    return bpf_run(program, frame) > 0


_BPF_INSN = struct.Struct("=HBBI")
_MASK32 = 0xFFFFFFFF


def bpf_run(program: bytes, frame: bytes) -> int:
    """Run a classic BPF socket filter (``struct sock_filter`` array, native order) on
    ``frame`` the way the kernel does: the return value is how many bytes are kept, 0
    drops the frame, and so does a load past the frame's end.

    Covers loads, stores, ALU, jumps, TAX/TXA and returns; anything else raises
    ValueError, so a new kind of filter in pyucarp cannot be misjudged silently.
    """
    insns = [_BPF_INSN.unpack_from(program, i) for i in range(0, len(program), 8)]
    acc = x = 0
    mem = [0] * 16
    pc = 0
    for _ in range(4096):  # classic BPF only jumps forward; this bounds a broken program
        if pc >= len(insns):
            raise ValueError("BPF program runs off its end")
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls in (0x00, 0x01):  # LD, LDX
            size, mode = code & 0x18, code & 0xE0
            if mode == 0x00:
                value = k
            elif mode == 0x80:
                value = len(frame)
            elif mode == 0x60:
                value = mem[k & 15]
            elif mode in (0x20, 0x40) or (cls == 0x01 and mode == 0xA0):
                offset = k + (x if mode == 0x40 else 0)
                width = 1 if mode == 0xA0 else {0x00: 4, 0x08: 2, 0x10: 1}[size]
                if offset + width > len(frame):
                    return 0
                value = int.from_bytes(frame[offset:offset + width], "big")
                if mode == 0xA0:
                    value = (value & 0x0F) * 4
            else:
                raise ValueError(f"BPF load mode {code:#x}")
            if cls == 0x00:
                acc = value
            else:
                x = value
        elif cls in (0x02, 0x03):  # ST, STX
            mem[k & 15] = acc if cls == 0x02 else x
        elif cls == 0x04:  # ALU
            op = code & 0xF0
            operand = x if code & 0x08 else k
            if op == 0x80:
                acc = -acc & _MASK32
            elif op in (0x30, 0x90) and operand == 0:
                return 0
            else:
                ops: dict[int, Callable[[int, int], int]] = {
                    0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b,
                    0x20: lambda a, b: a * b, 0x30: lambda a, b: a // b,
                    0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b,
                    0x60: lambda a, b: a << b, 0x70: lambda a, b: a >> b,
                    0x90: lambda a, b: a % b, 0xA0: lambda a, b: a ^ b,
                }
                if op not in ops:
                    raise ValueError(f"BPF ALU op {code:#x}")
                acc = ops[op](acc, operand) & _MASK32
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            operand = x if code & 0x08 else k
            if op == 0x00:
                pc += k
                continue
            tests: dict[int, bool] = {0x10: acc == operand, 0x20: acc > operand,
                                      0x30: acc >= operand, 0x40: bool(acc & operand)}
            if op not in tests:
                raise ValueError(f"BPF jump {code:#x}")
            pc += jt if tests[op] else jf
        elif cls == 0x06:  # RET
            return acc if code & 0x18 == 0x10 else k
        elif cls == 0x07:  # MISC: TAX / TXA
            if code & 0xF8 == 0x00:
                x = acc
            else:
                acc = x
    raise ValueError("BPF program too long")


@dataclass(frozen=True)
class VictimView:
    """What a hostile sender needs to know about the cluster it attacks."""

    vhid: int
    vip: str
    attacker_ip: str
    attacker_mac: bytes


@dataclass
class HostileMix:
    """A seeded flood: frames by category, and the interleaved order they are sent in."""

    categories: dict[str, list[bytes]]
    order: list[bytes] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many frames the flood holds."""
        return len(self.order)


# Share of each category in a flood (the rest of the total is made of forged adverts).
MIX_SHARES: dict[str, float] = {
    "bad_checksum": 0.10,
    "bad_ttl": 0.10,
    "bad_version": 0.05,
    "truncated": 0.07,
    "random_bytes": 0.10,
    "random_carp": 0.10,
    "other_vhid": 0.10,
    "replay": 0.13,
}


def hostile_mix(view: VictimView, captured: bytes, total: int, seed: int) -> HostileMix:
    """``total`` hostile frames against ``view``'s virtual host, in a seeded random order.

    Categories: ``forged_better`` (advbase 1, advskew 0, a made-up digest), ``bad_checksum``,
    ``bad_ttl`` (any TTL but 255), ``bad_version``, ``truncated`` (a forged advert cut at
    every length 0..69, repeated), ``random_bytes`` (whole frames of noise),
    ``random_carp`` (noise behind an Ethernet type 0x0800 and IP protocol 112, so a
    protocol filter lets it through), ``other_vhid``, and ``replay`` (``captured``, a real
    advert of the master, over and over). Everything but the replays comes from
    ``view.attacker_ip``.
    """
    rng = random.Random(seed)

    def forged(**kw: Any) -> bytes:
        fields: dict[str, Any] = dict(vhid=view.vhid, src=view.attacker_ip, vip=view.vip,
                                      counter=rng.getrandbits(64), digest=rng.randbytes(20),
                                      advbase=1, advskew=0, ip_id=rng.getrandbits(16),
                                      eth_src=view.attacker_mac)
        fields.update(kw)
        return advert(**fields)

    counts = {name: int(total * share) for name, share in MIX_SHARES.items()}
    counts["forged_better"] = total - sum(counts.values())
    cats: dict[str, list[bytes]] = {}
    cats["forged_better"] = [forged() for _ in range(counts["forged_better"])]
    cats["bad_checksum"] = [break_checksum(forged()) for _ in range(counts["bad_checksum"])]
    cats["bad_ttl"] = [forged(ttl=rng.randrange(255)) for _ in range(counts["bad_ttl"])]
    versions = [v for v in range(16) if v != 2]
    cats["bad_version"] = [forged(version=rng.choice(versions))
                           for _ in range(counts["bad_version"])]
    cut = truncations(forged())
    cats["truncated"] = [cut[i % len(cut)] for i in range(counts["truncated"])]
    cats["random_bytes"] = [rng.randbytes(rng.randrange(14, 200))
                            for _ in range(counts["random_bytes"])]
    carpish = []
    for _ in range(counts["random_carp"]):
        noise = bytearray(rng.randbytes(rng.randrange(24, 120)))
        noise[0:14] = GROUP_MAC + view.attacker_mac + b"\x08\x00"
        noise[23] = 112
        carpish.append(bytes(noise))
    cats["random_carp"] = carpish
    others = [v for v in range(1, 256) if v != view.vhid]
    cats["other_vhid"] = [forged(vhid=rng.choice(others)) for _ in range(counts["other_vhid"])]
    cats["replay"] = [captured] * counts["replay"]
    order = [frame for frames in cats.values() for frame in frames]
    rng.shuffle(order)
    return HostileMix(cats, order)
