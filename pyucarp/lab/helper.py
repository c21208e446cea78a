"""The lab's side inside a namespace: frame capture, frame sending, floods and ICMP probing.

A socket belongs to the namespace of the process that opens it, so whatever a lab does on
a host's wire runs as a short-lived process inside that host's namespace::

    ip netns exec NETNS python3 -I -u helper.py capture IFACE KINDS MAXSEC MAXCOUNT
    ip netns exec NETNS python3 -I -u helper.py send IFACE INTERVAL      < frames
    ip netns exec NETNS python3 -I -u helper.py flood IFACE RATE MAXSEC  < frames
    ip netns exec NETNS python3 -I -u helper.py probe TARGET INTERVAL DURATION

``frames`` on stdin are length-prefixed (:func:`pack_frames`). ``capture`` and ``probe``
print ``ready`` once their socket is open, then one line per frame or reply; ``flood``
prints one JSON line with what it did. A captured frame's line carries two times: the
monotonic clock when the helper read it, and the kernel's receive stamp (``SO_TIMESTAMPNS``,
CLOCK_REALTIME), which compares with what other tools stamp (``ip -ts monitor``, ``ping -D``)
and does not wait for the helper to be scheduled.
:mod:`pyucarp.lab.netlab` starts and reads them.

The file runs by its path with ``-I`` (no environment, no user site, not even its own
directory on the import path), so it imports nothing but the standard library. The lab
imports it too: one address check, one checksum and one frame packing for both sides.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterable

ALLOWED_NETWORKS = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
)
"""The only networks a lab may use (RFC 5737 documentation ranges, TEST-NET-1 and -2)."""

ALLOWED_NETWORKS6 = (ipaddress.IPv6Network("2001:db8::/32"),)
"""The only IPv6 network a lab may use (RFC 3849, the documentation prefix)."""

CAPTURE_KINDS = ("carp", "arp", "icmp", "carp6", "nd", "all")
"""What a capture keeps: CARP over IPv4 (protocol 112), ARP, ICMP over IPv4, CARP over
IPv6 (next header 112), IPv6 neighbour solicitations and advertisements, or every frame."""
MAX_SEND_FRAMES = 10_000
MAX_FLOOD_FRAMES = 200_000
MAX_FLOOD_SECONDS = 60.0

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4
_IPPROTO_ICMP = 1
_IPPROTO_CARP = 112
_IPPROTO_ICMPV6 = 58
_ND_TYPES = (135, 136)  # neighbour solicitation, neighbour advertisement
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # also SCM_TIMESTAMPNS, the cmsg type
_TIMESPEC = struct.Struct("@ll")


def check_test_address(addr: str) -> ipaddress.IPv4Interface:
    """Parse ``addr`` ("192.0.2.1/24" or "192.0.2.1") and insist it lies in a documentation range.

    The whole interface network must lie inside the range too, so an on-link route can
    never cover a real network. Raises ValueError otherwise.
    """
    iface = ipaddress.ip_interface(addr)
    if not isinstance(iface, ipaddress.IPv4Interface):
        raise ValueError(f"lab addresses are IPv4 only: {addr!r}")
    if not any(iface.network.subnet_of(net) for net in ALLOWED_NETWORKS):
        raise ValueError(f"lab address {addr!r} is outside 192.0.2.0/24 and 198.51.100.0/24")
    return iface


def check_test_address6(addr: str) -> ipaddress.IPv6Interface:
    """Parse ``addr`` ("2001:db8::1/64" or "2001:db8::1") and insist it lies in 2001:db8::/32.

    As for IPv4, the whole interface network must lie inside it. Raises ValueError otherwise.
    """
    iface = ipaddress.ip_interface(addr)
    if not isinstance(iface, ipaddress.IPv6Interface):
        raise ValueError(f"not an IPv6 address: {addr!r}")
    if not any(iface.network.subnet_of(net) for net in ALLOWED_NETWORKS6):
        raise ValueError(f"lab address {addr!r} is outside 2001:db8::/32")
    return iface


def inet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement checksum (odd length padded with a zero byte)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pack_frames(frames: Iterable[bytes]) -> bytes:
    """Frames as the senders read them on stdin: a 2-byte big-endian length before each."""
    return b"".join(len(f).to_bytes(2, "big") + f for f in frames)


def unpack_frames(data: bytes) -> list[bytes]:
    """The frames :func:`pack_frames` packed."""
    frames, i = [], 0
    while i + 2 <= len(data):
        n = int.from_bytes(data[i:i + 2], "big")
        frames.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return frames


# --------------------------------------------------------------------------- modes


def _wanted(frame: bytes, kinds: tuple[str, ...]) -> bool:
    if "all" in kinds:
        return True
    if len(frame) < 14:
        return False
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0806:
        return "arp" in kinds
    if ethertype == 0x0800 and len(frame) >= 34:
        proto = frame[23]
        return (("carp" in kinds and proto == _IPPROTO_CARP)
                or ("icmp" in kinds and proto == _IPPROTO_ICMP))
    if ethertype == 0x86DD and len(frame) >= 54:
        nxt = frame[20]  # no extension headers: neither CARP nor ND sends any
        return (("carp6" in kinds and nxt == _IPPROTO_CARP)
                or ("nd" in kinds and nxt == _IPPROTO_ICMPV6 and len(frame) > 54
                    and frame[54] in _ND_TYPES))
    return False


def capture(iface: str, kinds_arg: str, max_seconds: float, max_count: int) -> None:
    """Print ``<monotonic time> in|out <hex> <CLOCK_REALTIME time>`` for each wanted frame
    seen on ``iface``: when it was read, and the kernel's receive stamp."""
    kinds = tuple(kinds_arg.split(","))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.bind((iface, _ETH_P_ALL))
    cmsg_space = socket.CMSG_SPACE(_TIMESPEC.size)
    print("ready", flush=True)
    deadline = time.monotonic() + max_seconds
    count = 0
    while count < max_count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        readable, _, _ = select.select([sock], [], [], min(left, 0.5))
        if not readable:
            continue
        frame, ancillary, _flags, address = sock.recvmsg(65535, cmsg_space)
        now = time.monotonic()
        wall = _kernel_stamp(ancillary)
        if address[0] != iface or not _wanted(frame, kinds):
            continue
        direction = "out" if address[2] == _PACKET_OUTGOING else "in"
        print(f"{now:.6f} {direction} {frame.hex()} {wall:.6f}", flush=True)
        count += 1


def _kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The receive time the kernel attached (CLOCK_REALTIME); the time now without one."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return float(sec + nsec / 1e9)
    return time.time()


def _sender(iface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    sock.bind((iface, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    return sock


def send(iface: str, interval_s: float) -> None:
    """Send the frames on stdin from ``iface``, ``interval_s`` apart; any refusal is fatal."""
    frames = unpack_frames(sys.stdin.buffer.read())[:MAX_SEND_FRAMES]
    sock = _sender(iface)
    for frame in frames:
        sock.send(frame)
        if interval_s > 0:
            time.sleep(interval_s)


def flood(iface: str, rate: float, max_seconds: float) -> None:
    """Send the frames on stdin at about ``rate`` frames/s in a tight, gently paced loop.

    Refused sends are counted by errno name, not fatal; the result is one JSON line.
    """
    frames = unpack_frames(sys.stdin.buffer.read())[:MAX_FLOOD_FRAMES]
    send_one = _sender(iface).send
    errors: dict[str, int] = {}
    sent = 0
    batch = 64  # frames between two looks at the clock
    start = time.monotonic()
    deadline = start + min(max_seconds, MAX_FLOOD_SECONDS)
    for i, frame in enumerate(frames):
        if i % batch == 0:
            now = time.monotonic()
            if now >= deadline:
                break
            due = start + i / rate
            if due > now:
                time.sleep(due - now)
        try:
            send_one(frame)
            sent += 1
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            errors[name] = errors.get(name, 0) + 1
    print(json.dumps({"sent": sent, "errors": errors,
                      "elapsed": round(time.monotonic() - start, 6)}), flush=True)


def probe(target: str, interval_s: float, duration_s: float) -> None:
    """Ping ``target``: ``reply <seq> <sent at> <received at>`` per echo reply, then ``sent N``."""
    check_test_address(target)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    print("ready", flush=True)
    start = time.monotonic()
    end = start + duration_s
    next_send = start
    seq = 0
    sent_at: dict[int, float] = {}
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            header = bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
            payload = b"pyucarp-lab!"
            csum = inet_checksum(header + payload)
            packet = header[:2] + csum.to_bytes(2, "big") + header[4:] + payload
            try:
                sock.sendto(packet, (target, 0))
            except OSError:
                pass  # no route or no neighbour yet: that silence is what is measured
            sent_at[seq] = now
            next_send += interval_s
            if next_send < now:  # fallen behind: never burst to catch up
                next_send = now + interval_s
        wait = max(0.0, min(next_send, end) - time.monotonic())
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            continue
        packet, (src, _) = sock.recvfrom(2048)
        t = time.monotonic()
        icmp = packet[(packet[0] & 0x0F) * 4:]
        if len(icmp) < 8 or icmp[0] != 0 or src != target:
            continue
        if int.from_bytes(icmp[4:6], "big") != ident:
            continue
        rseq = int.from_bytes(icmp[6:8], "big")
        print(f"reply {rseq} {sent_at.get(rseq, 0.0):.6f} {t:.6f}", flush=True)
    print(f"sent {len(sent_at)}", flush=True)


USAGE = """usage: helper.py capture IFACE KINDS MAXSEC MAXCOUNT
       helper.py send IFACE INTERVAL < frames
       helper.py flood IFACE RATE MAXSEC < frames
       helper.py probe TARGET INTERVAL DURATION"""


def main(argv: list[str]) -> int:
    """Run one mode; 2 on a usage error."""
    # a helper dies quietly on SIGTERM; SIGINT comes from the parent's terminal: the
    # parent's business, it tears the lab down
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mode, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if mode == "capture" and len(args) == 4:
            capture(args[0], args[1], float(args[2]), int(args[3]))
        elif mode == "send" and len(args) == 2:
            send(args[0], float(args[1]))
        elif mode == "flood" and len(args) == 3:
            flood(args[0], float(args[1]), float(args[2]))
        elif mode == "probe" and len(args) == 3:
            probe(args[0], float(args[1]), float(args[2]))
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except ValueError as exc:
        print(f"helper.py {mode}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
