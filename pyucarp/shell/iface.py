"""What the daemon knows about its interface, and how it hears of changes.

:func:`interface_facts` reads the facts once (MAC, addresses, flags);
:class:`LinkMonitor` then reports changes as the kernel announces them over
rtnetlink.  ucarp polls the interface flags and, once the carrier is gone,
re-checks only every 10 s (docs/compat.md §7); pyucarp learns of carrier loss and
return, of the interface being deleted or re-created, and of an address
(the VIP) being removed behind its back, as soon as they happen.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import netifaces

from pyucarp.closing import Closing
from pyucarp.errors import RuntimeFailure
from pyucarp.records import NamedTuple  # lean: no dataclasses/typing, ~3 MiB

__all__ = [
    "AddressEvent",
    "InterfaceFacts",
    "LinkEvent",
    "LinkMonitor",
    "MonitorEvent",
    "Resync",
    "default_interface",
    "has_address",
    "interface_facts",
    "parse_rtnetlink",
]

# linux/if.h
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
_SIOCGIFFLAGS = 0x8913
_IFNAMSIZ = 16

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h
_NLMSG_ERROR = 2
_NLMSG_OVERRUN = 4
_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_RTM_NEWADDR = 20
_RTM_DELADDR = 21
_RTMGRP_LINK = 0x1
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV6_IFADDR = 0x100
_IFLA_ADDRESS = 1
_IFLA_IFNAME = 3
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_LABEL = 3
_IFA_FLAGS = 8  # u32: every flag (ifa_flags in the header holds the low 8 bits only)
# linux/if_addr.h: the address flags IPv6's duplicate address detection sets.
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type

_MONITOR_RCVBUF = 1 << 20
_SO_RCVBUFFORCE = 33  # asm-generic/socket.h
_NETLINK_BUF = 65536
# Bound on datagrams read per call, so a storm of link changes cannot keep
# the event loop away from its timers.
_MAX_DATAGRAMS = 256


# --------------------------------------------------------------------------
# Interface facts


class InterfaceFacts(NamedTuple):
    """One interface as it is now.

    ``up`` is IFF_UP (administratively up); ``running`` is IFF_RUNNING
    (carrier, operationally up).  ucarp treats the interface as usable only
    when both are set; see :attr:`usable`.
    """

    device: str
    index: int  # type: ignore[assignment]  # the field hides tuple.index(), unused here
    mac: bytes
    addresses: tuple[IPv4Interface | IPv6Interface, ...]  # IPv4 ones first
    up: bool
    running: bool

    @property
    def usable(self) -> bool:
        """Both IFF_UP and IFF_RUNNING: ucarp's test for a working interface."""
        return self.up and self.running


def _interface_flags(device: str) -> int:
    """The SIOCGIFFLAGS flags of ``device`` (raises OSError if it does not exist).

    An ioctl rather than /sys: it answers for the network namespace of the
    calling thread, while /sys shows the namespace it was mounted in.
    """
    if len(device.encode()) >= _IFNAMSIZ:
        raise OSError(errno.ENODEV, "No such device")
    ifreq = struct.pack("16sH14x", device.encode(), 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        result = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, ifreq)
    flags: int = struct.unpack_from("H", result, 16)[0]
    return flags


def _parse_mac(text: str) -> bytes | None:
    """``aa:bb:cc:dd:ee:ff`` to 6 bytes; None for anything that is not a MAC-48."""
    try:
        raw = bytes(int(part, 16) for part in text.split(":"))
    except ValueError:
        return None
    return raw if len(raw) == 6 else None


def _netifaces_mac(device: str) -> bytes | None:
    try:
        families: dict[int, list[dict[str, str]]] = netifaces.ifaddresses(device)
    except ValueError:
        return None
    for entry in families.get(netifaces.AF_LINK, []):
        mac = _parse_mac(entry.get("addr", ""))
        if mac is not None:
            return mac
    return None


def _ipv4_addresses(device: str) -> tuple[IPv4Interface, ...]:
    """Every IPv4 address on ``device``, the ones under alias labels included.

    netifaces lists an address labelled ``eth0:carp0`` (as ucarp users often
    add the VIP) under that label, not under ``eth0``, so the labels are
    visited too.
    """
    found: list[IPv4Interface] = []
    names: list[str] = netifaces.interfaces()
    for name in names:
        if name != device and not name.startswith(device + ":"):
            continue
        try:
            families: dict[int, list[dict[str, str]]] = netifaces.ifaddresses(name)
        except ValueError:
            continue  # gone meanwhile
        for entry in families.get(netifaces.AF_INET, []):
            addr = entry.get("addr")
            if addr is None:
                continue
            mask = entry.get("netmask") or "255.255.255.255"
            iface = IPv4Interface(f"{addr}/{mask}")
            if iface not in found:
                found.append(iface)
    return tuple(found)


def _ipv6_addresses(device: str) -> tuple[IPv6Interface, ...]:
    """Every IPv6 address on ``device``, link-local ones without their ``%scope``."""
    try:
        families: dict[int, list[dict[str, str]]] = netifaces.ifaddresses(device)
    except ValueError:
        return ()
    found: list[IPv6Interface] = []
    for entry in families.get(netifaces.AF_INET6, []):
        addr = entry.get("addr", "").split("%", 1)[0]
        mask = entry.get("netmask", "/128")
        prefix = mask.rsplit("/", 1)[1] if "/" in mask else "128"
        try:
            found.append(IPv6Interface(f"{addr}/{prefix}"))
        except ValueError:
            continue
    return tuple(found)


def interface_facts(device: str) -> InterfaceFacts:
    """Read the facts of ``device`` (a kernel device name, not an alias label).

    Raises RuntimeFailure when the device does not exist or has no Ethernet
    address, with ucarp's wording ("Unable to find MAC address of [eth7]");
    ucarp exits with status 2 in both cases.
    """
    if ":" in device:
        # The kernel's ioctls quietly read "eth0:carp0" as "eth0"; an alias
        # label is resolved to its device by the configuration, not here.
        raise RuntimeFailure(
            f"Unable to find MAC address of [{device}]: an alias label, not a device"
        )
    try:
        index = socket.if_nametoindex(device)
        flags = _interface_flags(device)
    except OSError:
        raise RuntimeFailure(
            f"Unable to find MAC address of [{device}]: no such interface"
        ) from None
    mac = _netifaces_mac(device)
    if mac is None:
        raise RuntimeFailure(
            f"Unable to find MAC address of [{device}]: not an Ethernet interface"
        )
    return InterfaceFacts(
        device=device,
        index=index,
        mac=mac,
        addresses=(*_ipv4_addresses(device), *_ipv6_addresses(device)),
        up=bool(flags & IFF_UP),
        running=bool(flags & IFF_RUNNING),
    )


def has_address(device: str, addr: IPv4Address) -> bool:
    """Whether ``addr`` is configured on ``device`` (under any of its labels)."""
    return any(iface.ip == addr for iface in _ipv4_addresses(device))


def default_interface() -> str | None:
    """The interface ucarp would pick without ``-i``; None if there is none.

    ucarp asks libpcap, which ranks interfaces up and running first, in
    kernel (ifindex) order, loopback excluded; with no such interface it
    falls back to the pseudo-device ``any``, on which ucarp then fails
    ("Unable to find MAC address of [any]").  pyucarp returns None instead
    and also passes over interfaces without an Ethernet address, which
    CARP cannot use.
    """
    for _, name in sorted(socket.if_nameindex()):
        try:
            flags = _interface_flags(name)
        except OSError:
            continue
        if flags & IFF_LOOPBACK or (flags & (IFF_UP | IFF_RUNNING)) != (
            IFF_UP | IFF_RUNNING
        ):
            continue
        if _netifaces_mac(name) is not None:
            return name
    return None


# --------------------------------------------------------------------------
# Link monitoring


class LinkEvent(NamedTuple):
    """An interface appeared, changed (flags, name, MAC) or was deleted."""

    index: int  # type: ignore[assignment]  # the field hides tuple.index(), unused here
    name: str
    flags: int
    up: bool
    running: bool
    deleted: bool
    mac: bytes | None = None


class AddressEvent(NamedTuple):
    """An IPv4 or IPv6 address was added to, changed on or removed from an interface.

    ``flags`` are the kernel's ``IFA_F_*``: over IPv6 an address first comes ``tentative``
    (duplicate address detection under way: the kernel neither sends from it nor answers
    for it), then again without that flag once usable, or with ``dadfailed`` for good when
    another host has it. ``nodad`` addresses (``--manage-vip``'s) are usable at once.
    """

    index: int  # type: ignore[assignment]  # the field hides tuple.index(), unused here
    address: IPv4Interface | IPv6Interface
    label: str
    deleted: bool
    flags: int = 0

    @property
    def tentative(self) -> bool:
        """Duplicate address detection has not passed (yet, or ever: see dadfailed)."""
        return bool(self.flags & IFA_F_TENTATIVE)

    @property
    def dadfailed(self) -> bool:
        """Duplicate address detection found the address on another host."""
        return bool(self.flags & IFA_F_DADFAILED)

    @property
    def usable(self) -> bool:
        """On the interface and usable: neither removed, tentative nor a duplicate."""
        return not (self.deleted or self.tentative or self.dadfailed)


class Resync(NamedTuple):
    """Notifications were lost (receive queue overrun): re-read the facts."""


MonitorEvent = LinkEvent | AddressEvent | Resync
"""Anything :meth:`LinkMonitor.read_events` returns."""


def _attributes(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    """The rtattr list between ``offset`` and ``end`` (the first of each type)."""
    attrs: dict[int, bytes] = {}
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > end:
            break
        attrs.setdefault(kind, data[offset + _RTATTR.size : offset + length])
        offset += (length + 3) & ~3
    return attrs


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _link_event(data: bytes, offset: int, end: int, deleted: bool) -> LinkEvent | None:
    if offset + _IFINFOMSG.size > end:
        return None
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, offset)
    attrs = _attributes(data, offset + _IFINFOMSG.size, end)
    mac = attrs.get(_IFLA_ADDRESS)
    return LinkEvent(
        index=index,
        name=_cstring(attrs.get(_IFLA_IFNAME, b"")),
        flags=flags,
        up=bool(flags & IFF_UP),
        running=bool(flags & IFF_RUNNING),
        deleted=deleted,
        mac=mac if mac is not None and len(mac) == 6 else None,
    )


def _address_event(
    data: bytes, offset: int, end: int, deleted: bool
) -> AddressEvent | None:
    if offset + _IFADDRMSG.size > end:
        return None
    family, prefixlen, flags, _scope, index = _IFADDRMSG.unpack_from(data, offset)
    if family == socket.AF_INET:
        size = 4
    elif family == socket.AF_INET6:
        size = 16
    else:
        return None
    attrs = _attributes(data, offset + _IFADDRMSG.size, end)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    # point-to-point links and equals IFA_LOCAL elsewhere (IPv6 sends IFA_LOCAL
    # only when there is a peer: IFA_ADDRESS alone is the address).
    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
    if raw is None or len(raw) != size:
        return None
    wide = attrs.get(_IFA_FLAGS)
    if wide is not None and len(wide) == 4:
        flags = struct.unpack("=I", wide)[0]
    address: IPv4Interface | IPv6Interface
    if size == 4:
        address = IPv4Interface((IPv4Address(raw), prefixlen))
    else:
        address = IPv6Interface((IPv6Address(raw), prefixlen))
    return AddressEvent(
        index=index,
        address=address,
        label=_cstring(attrs.get(_IFA_LABEL, b"")),
        deleted=deleted,
        flags=flags,
    )


def parse_rtnetlink(data: bytes) -> list[MonitorEvent]:
    """Decode one rtnetlink datagram into events; other messages are skipped."""
    events: list[MonitorEvent] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        body, end = offset + _NLMSGHDR.size, offset + length
        event: MonitorEvent | None = None
        if kind in (_RTM_NEWLINK, _RTM_DELLINK):
            event = _link_event(data, body, end, kind == _RTM_DELLINK)
        elif kind in (_RTM_NEWADDR, _RTM_DELADDR):
            event = _address_event(data, body, end, kind == _RTM_DELADDR)
        elif kind == _NLMSG_OVERRUN:
            event = Resync()
        if event is not None:
            events.append(event)
        offset += (length + 3) & ~3
    return events


class LinkMonitor(Closing):
    """Kernel notifications of link and address changes (IPv4 and IPv6), non-blocking.

    Watch :meth:`fileno` for readability, then call :meth:`read_events`.
    Events are for every interface of the namespace; the caller picks its own
    by index or name.
    """

    def __init__(self, *, rcvbuf: int = _MONITOR_RCVBUF) -> None:
        self._buf = bytearray(_NETLINK_BUF)
        try:
            self._sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE
            )
        except OSError as exc:
            raise RuntimeFailure(
                f"Unable to open a netlink socket: {exc.strerror or exc}"
            ) from None
        try:
            try:
                # Root may go past net.core.rmem_max: a burst of changes (a
                # bridge with many ports flapping) must not overrun the queue.
                self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV6_IFADDR))
            self._sock.setblocking(False)
        except OSError as exc:
            self._sock.close()
            raise RuntimeFailure(
                f"Unable to listen to link changes: {exc.strerror or exc}"
            ) from None

    def fileno(self) -> int:
        """The descriptor to watch for readability."""
        return self._sock.fileno()

    def read_events(self) -> list[MonitorEvent]:
        """Return the notifications queued so far, never blocking.

        A receive-queue overrun (ENOBUFS) means some notifications were
        lost; it is reported in sequence as a :class:`Resync` event.
        """
        events: list[MonitorEvent] = []
        for _ in range(_MAX_DATAGRAMS):
            try:
                size, (pid, _groups) = self._sock.recvfrom_into(self._buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                if not events or not isinstance(events[-1], Resync):
                    events.append(Resync())
                continue
            if pid != 0:
                continue  # only the kernel speaks for the kernel
            events.extend(parse_rtnetlink(bytes(self._buf[:size])))
        return events

    def close(self) -> None:
        """Stop listening."""
        self._sock.close()
