"""Raw CARP frames in and out of one interface.

ucarp reads advertisements through libpcap, which hands them over in batches
(about one second apart); pyucarp reads them from an ``AF_PACKET`` socket as
they arrive.  A classic BPF program attached to the socket lets only IPv4
frames carrying IP protocol 112 through, so the daemon wakes for CARP and
nothing else.  Frames are sent whole, Ethernet header included, so the source
MAC ``00:00:5e:00:00:<vhid>`` and every other header byte are exactly those the
caller built (docs/compat.md §2).

Everything here is non-blocking: the daemon's event loop polls ``fileno()``
and calls :meth:`CarpSocket.recv_frames` when it is readable.
"""

from __future__ import annotations

import array
import errno
import os
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address

from pyucarp.closing import Closing
from pyucarp.core.codec import IPPROTO_CARP, multicast_mac
from pyucarp.core.codec6 import ipv6_multicast_mac
from pyucarp.errors import RuntimeFailure

__all__ = ["CarpSocket", "CARP_FILTER", "IPPROTO_CARP", "carp_filter", "multicast_mac"]

# Linux constants Python 3.10/3.11 does not export (linux/if_ether.h,
# asm-generic/socket.h, linux/if_packet.h).
_ETH_P_IP = 0x0800
_ETH_P_IPV6 = 0x86DD
_IPV6_JOIN_GROUP = 20  # linux/in6.h IPV6_ADD_MEMBERSHIP
_SOL_PACKET = 263
_SO_ATTACH_FILTER = 26
_SO_RCVBUFFORCE = 33
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_MULTICAST = 0
_PACKET_OUTGOING = 4

# Room for a burst of adverts from many peers while the loop is busy; with the
# filter in place only CARP frames take space here.
_RCVBUF_BYTES = 1 << 20
# Bigger than any frame an interface can hand us (jumbo frames included).
_MAX_FRAME = 65536

# Classic BPF opcodes (linux/bpf_common.h).
_BPF_LD_H_ABS = 0x28
_BPF_LD_B_ABS = 0x30
_BPF_LD_B_IND = 0x50
_BPF_LDX_B_MSH = 0xB1
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    """One ``struct sock_filter`` instruction in native byte order."""
    return struct.pack("=HBBI", code, jt, jf, k)


CARP_FILTER: bytes = b"".join(
    (
        _insn(_BPF_LD_H_ABS, 0, 0, 12),  # A = EtherType
        _insn(_BPF_JEQ_K, 0, 3, _ETH_P_IP),  # not IPv4 -> drop
        _insn(_BPF_LD_B_ABS, 0, 0, 14 + 9),  # A = IP protocol
        _insn(_BPF_JEQ_K, 0, 1, IPPROTO_CARP),  # not CARP -> drop
        _insn(_BPF_RET_K, 0, 0, 0x40000),  # accept the whole frame
        _insn(_BPF_RET_K, 0, 0, 0),  # drop
    )
)
"""The classic BPF program for a :class:`CarpSocket` without a vhid:
accept IPv4 frames whose IP protocol is 112, drop everything else."""


_DROP_ALL = _insn(_BPF_RET_K, 0, 0, 0)  # return 0: the frame is not delivered


def _carp_program(
    ethertype: int, proto_at: int, load_vhid: tuple[bytes, ...], vhids: list[int]
) -> bytes:
    """The program of both families: frames of ``ethertype`` whose protocol byte (at
    ``proto_at``) is 112 and, unless ``vhids`` is empty, whose vhid is one of ``vhids``
    (read into A by the ``load_vhid`` instructions).

    With one socket per interface, the daemon would otherwise wake up and authenticate
    every other host's adverts: at 50 vhids that is 50 wake-ups a second instead of
    one. ucarp ignores other vhids too (after reading them). One comparison per vhid:
    at most 255 of them, so every jump fits the 8-bit offsets of classic BPF.
    """
    n = len(vhids)
    # Each early "drop" sits right after its test, so every jump stays short.
    compares = [
        # A match jumps over the remaining comparisons to "accept"; the last
        # mismatch falls one further, to "drop".
        _insn(_BPF_JEQ_K, n - 1 - i, 1 if i == n - 1 else 0, vhid)
        for i, vhid in enumerate(vhids)
    ]
    vhid_part = (*load_vhid, *compares) if vhids else ()
    return b"".join(
        (
            _insn(_BPF_LD_H_ABS, 0, 0, 12),  # A = EtherType
            _insn(_BPF_JEQ_K, 1, 0, ethertype),  # our family -> go on
            _DROP_ALL,
            _insn(_BPF_LD_B_ABS, 0, 0, proto_at),  # A = IP protocol (IPv6: next header)
            _insn(_BPF_JEQ_K, 1, 0, IPPROTO_CARP),  # CARP -> go on
            _DROP_ALL,
            *vhid_part,  # one of ours -> accept, else drop
            _insn(_BPF_RET_K, 0, 0, 0x40000),  # accept the whole frame
            _DROP_ALL,
        )
    )


def _wanted(vhids: Iterable[int]) -> list[int]:
    return sorted({v & 0xFF for v in vhids})


def carp6_filter(vhids: Iterable[int] | None) -> bytes:
    """The IPv6 program: next header 112 right after the fixed header (no extension
    header: the BSDs send none), and then, when given, one of ``vhids``."""
    wanted = _wanted(() if vhids is None else vhids)
    load_vhid = (_insn(_BPF_LD_B_ABS, 0, 0, 14 + 40 + 1),)  # A = vhid, after the IPv6 header
    return _carp_program(_ETH_P_IPV6, 14 + 6, load_vhid, wanted)


def carp_filter(vhids: int | Iterable[int]) -> bytes:
    """The IPv4 program that also keeps only our vhids (the CARP header's second byte)."""
    wanted = _wanted((vhids,) if isinstance(vhids, int) else vhids)
    if not wanted:
        raise ValueError("carp_filter needs at least one vhid")
    load_vhid = (
        _insn(_BPF_LDX_B_MSH, 0, 0, 14),  # X = IP header length (4 * IHL)
        _insn(_BPF_LD_B_IND, 0, 0, 14 + 1),  # A = CARP vhid, just after the IP header
    )
    return _carp_program(_ETH_P_IP, 14 + 9, load_vhid, wanted)


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    """Attach a classic BPF program (SO_ATTACH_FILTER with a struct sock_fprog)."""
    count = len(program) // 8
    # An array gives the program a stable address without loading ctypes (memory).
    buf = array.array("B", program)
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }:
    # native alignment puts the pointer where the kernel expects it.
    fprog = struct.pack("HP", count, buf.buffer_info()[0])
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    del buf  # the kernel copied the program during setsockopt


def _grow_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for a large receive buffer; root may exceed net.core.rmem_max."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _setup_failure(device: str, exc: OSError) -> RuntimeFailure:
    return RuntimeFailure(f"Unable to set up the CARP socket on [{device}]: {_why(exc)}")


class CarpSocket(Closing):
    """A non-blocking raw socket that receives and sends CARP frames on one device.

    Received frames are complete Ethernet frames, exactly as they were on the
    wire.  Frames this host transmits are never returned.  Unless ``nomcast``,
    the device is made to accept the group's multicast traffic for as long as
    the socket is open.

    If the device is deleted the socket stops receiving for good; the daemon
    learns of it from :class:`pyucarp.iface.LinkMonitor` and opens a new one.
    """

    def __init__(
        self,
        device: str,
        *,
        srcip: IPv4Address | IPv6Address,
        group: IPv4Address | IPv6Address,
        nomcast: bool,
        vhid: int | Iterable[int] | None = None,
    ) -> None:
        self.ipv6 = group.version == 6
        self.device = device
        self.srcip = srcip
        self.group = group
        self.nomcast = nomcast
        self._buf = bytearray(_MAX_FRAME)
        self._mcast: socket.socket | None = None
        try:
            self.ifindex = socket.if_nametoindex(device)
        except OSError:
            raise RuntimeFailure(
                f"Unable to open interface [{device}]: no such interface"
            ) from None
        try:
            # Protocol 0: nothing is queued until bind(), which happens only
            # once the filter is in place, so no stray frame slips in.
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as exc:
            raise RuntimeFailure(
                f"Unable to open a raw socket on [{device}]: {_why(exc)}"
            ) from None
        try:
            _attach_filter(self._sock, self._program(vhid))
            _grow_rcvbuf(self._sock, _RCVBUF_BYTES)
            self._sock.bind((device, _ETH_P_IPV6 if self.ipv6 else _ETH_P_IP))
            self._sock.setblocking(False)
            if not nomcast and group.is_multicast:
                self._join(group)
        except OSError as exc:
            self.close()
            raise _setup_failure(device, exc) from None
        except RuntimeFailure:
            self.close()
            raise

    def _program(self, vhid: int | Iterable[int] | None) -> bytes:
        if self.ipv6:
            return carp6_filter(None if vhid is None else
                                ((vhid,) if isinstance(vhid, int) else vhid))
        return CARP_FILTER if vhid is None else carp_filter(vhid)

    def _join(self, group: IPv4Address | IPv6Address) -> None:
        """Make the device accept the group's frames.

        Like ucarp, join the group at the IP level (IP_ADD_MEMBERSHIP) on a
        socket kept open for the daemon's life; unlike ucarp, name the device by
        its index (struct ip_mreqn), so the join works even before the
        interface has an address.  The link-level membership on the packet
        socket also keeps the MAC in the device's filter independently of the
        IPv4 stack.  Failing both is fatal: a backup that hears no adverts
        would make itself a second master.
        """
        errors: list[str] = []
        if isinstance(group, IPv6Address):
            self._join6(group)
            return
        try:
            # struct packet_mreq { int ifindex; u16 type; u16 alen; u8 addr[8]; }
            mreq = struct.pack(
                "=iHH8s", self.ifindex, _PACKET_MR_MULTICAST, 6, multicast_mac(group)
            )
            self._sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            errors.append(f"PACKET_ADD_MEMBERSHIP: {_why(exc)}")
        try:
            msock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as exc:
            errors.append(f"IP_ADD_MEMBERSHIP: {_why(exc)}")
        else:
            try:
                mreqn = struct.pack(
                    "=4s4si", group.packed, self.srcip.packed, self.ifindex
                )
                msock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
                self._mcast = msock
            except OSError as exc:
                msock.close()
                errors.append(f"IP_ADD_MEMBERSHIP: {_why(exc)}")
        if len(errors) == 2:
            raise RuntimeFailure(
                f"Can't join multicast group {group} on [{self.device}]: "
                + "; ".join(errors)
            )

    def _join6(self, group: IPv6Address) -> None:
        """ff02::12 on this link: the link-level membership (33:33:00:00:00:12) on the packet
        socket, and the IPv6 one on a socket kept open, so the host answers MLD queries
        and snooping switches keep forwarding the group to us."""
        mac = ipv6_multicast_mac(group)
        mreq = struct.pack("=iHH8s", self.ifindex, _PACKET_MR_MULTICAST, 6, mac)
        self._sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
        try:
            msock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        except OSError:
            return  # no IPv6 stack to report to: the link-level membership is enough
        try:
            msock.setsockopt(socket.IPPROTO_IPV6, _IPV6_JOIN_GROUP,
                             group.packed + struct.pack("=I", self.ifindex))
            self._mcast = msock
        except OSError:
            msock.close()

    def set_vhids(self, vhids: Iterable[int]) -> None:
        """Filter on another set of vhids (the kernel swaps the program atomically)."""
        try:
            _attach_filter(self._sock, self._program(list(vhids)))
        except OSError as exc:
            raise _setup_failure(self.device, exc) from None

    def fileno(self) -> int:
        """The descriptor to watch for readability."""
        return self._sock.fileno()

    def filenos(self) -> list[int]:
        """Every descriptor this object holds: daemonizing must keep them all open
        (the multicast membership lives as long as its socket)."""
        fds = [self._sock.fileno()]
        if self._mcast is not None:
            fds.append(self._mcast.fileno())
        return fds

    def send(self, frame: bytes) -> None:
        """Transmit one complete Ethernet frame as is; raise OSError on failure."""
        # The EtherType is passed as the packet's protocol so the kernel
        # (qdiscs, bonding) sees the frame for what it is, ARP included.
        ethertype = int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else 0
        self._sock.sendto(frame, (self.device, ethertype))

    def recv_frames(self, max_frames: int = 64) -> list[bytes]:
        """Return the frames queued so far (at most ``max_frames``), never blocking.

        Raises OSError for socket errors other than "nothing queued" and the
        one-off ENETDOWN the kernel reports when the link goes down (that
        news comes from the link monitor).
        """
        frames: list[bytes] = []
        for _ in range(max_frames):
            try:
                size, addr = self._sock.recvfrom_into(self._buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENETDOWN:
                    break
                raise
            # addr = (ifname, proto, pkttype, hatype, hwaddr).  Linux copies
            # transmitted frames only to ETH_P_ALL taps, so a socket bound to
            # ETH_P_IP should never see one; the check keeps the promise that
            # our own adverts are never handed back, whatever the kernel does.
            if addr[2] == _PACKET_OUTGOING:
                continue
            frames.append(bytes(self._buf[:size]))
        return frames

    def close(self) -> None:
        """Release the sockets (and with them the multicast membership)."""
        if self._mcast is not None:
            self._mcast.close()
            self._mcast = None
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._sock.fileno() < 0


_IPV6_HDRINCL = 36  # linux/in6.h (Linux 4.5): Python does not export it


def open_unicast_socket(device: str, version: int = 4) -> socket.socket:
    """The raw socket (IPv4, or IPv6 with ``version`` 6) for adverts to unicast peers, on
    ``device`` only.

    The packet is ours byte for byte (IP_HDRINCL, IPV6_HDRINCL: hop limit 255 and the -s
    source, which the kernel neither picks nor checks); the kernel routes it and resolves
    the peer's MAC. Over IPv6 the CARP checksum and HMAC cover no IPv6 header field (no
    pseudo-header, ``carp_send_ad``), so handing over the header changes nothing in them.
    The socket is opened for protocol 112, not IPPROTO_RAW: while a raw socket for 112
    exists, the kernel no longer answers each unicast advert it receives with an ICMP
    "protocol unreachable" (ICMPv6 "unrecognized next header"). It reads nothing (a filter
    drops every packet): the packet socket does the receiving.
    """
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    sock: socket.socket | None = None
    try:
        sock = socket.socket(family, socket.SOCK_RAW, IPPROTO_CARP)
        _attach_filter(sock, _DROP_ALL)
        if version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_HDRINCL, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, os.fsencode(device))
        sock.setblocking(False)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise RuntimeFailure(f"Unable to open the unicast socket on [{device}]: {_why(exc)}") \
            from None
    return sock
