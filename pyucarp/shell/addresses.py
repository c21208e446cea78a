"""Adding and removing the virtual addresses without scripts (``--manage-vip``), by netlink.

One ``RTM_NEWADDR``/``RTM_DELADDR`` request per address on a NETLINK_ROUTE socket, each
acknowledged by the kernel before the next: the same as ``ip address replace|del``, without
a child process (an address is up within a millisecond of the takeover). The socket has a
short timeout, so a kernel that does not answer cannot hold the loop.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address

_RTM_NEWADDR = 20
_RTM_DELADDR = 21
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_REPLACE = 0x100
_NLM_F_CREATE = 0x400
_NLMSG_ERROR = 2
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_LABEL = 3
_RT_SCOPE_UNIVERSE = 0
_IFA_F_NODAD = 0x02
_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_TIMEOUT = 0.5  # seconds the kernel gets to acknowledge one request


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


class AddressManager:
    """Puts addresses on one interface and takes them off again."""

    def __init__(self, device: str, label: str | None, prefixlen: int) -> None:
        self.device = device
        self.label = label  # "eth0:carp0": the addresses carry the alias label
        self.prefixlen = prefixlen
        self._seq = 0

    def add(self, addresses: Iterable[IPv4Address | IPv6Address]) -> list[str]:
        """Add (or refresh) each address; the errors, one line each."""
        return [e for a in addresses if (e := self._request(_RTM_NEWADDR, a)) is not None]

    def remove(self, addresses: Iterable[IPv4Address | IPv6Address]) -> list[str]:
        """Remove each address that is there (a missing one is no error)."""
        return [e for a in addresses if (e := self._request(_RTM_DELADDR, a)) is not None]

    def _request(self, kind: int, address: IPv4Address | IPv6Address) -> str | None:
        verb = "add" if kind == _RTM_NEWADDR else "remove"
        try:
            index = socket.if_nametoindex(self.device)
        except OSError:
            return f"Cannot {verb} {address}: interface [{self.device}] is gone"
        flags = _NLM_F_REQUEST | _NLM_F_ACK
        if kind == _RTM_NEWADDR:
            flags |= _NLM_F_CREATE | _NLM_F_REPLACE
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        # IPv6: no duplicate address detection, or the address stays "tentative" (unusable)
        # for a second or more after the takeover; CARP itself guarantees one holder.
        ifa_flags = _IFA_F_NODAD if address.version == 6 else 0
        body = _IFADDRMSG.pack(family, self.prefixlen, ifa_flags, _RT_SCOPE_UNIVERSE, index)
        body += _attr(_IFA_LOCAL, address.packed) + _attr(_IFA_ADDRESS, address.packed)
        if self.label is not None:
            body += _attr(_IFA_LABEL, os.fsencode(self.label) + b"\0")
        self._seq += 1
        message = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, self._seq, 0) + body
        try:
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
                nl.settimeout(_TIMEOUT)
                nl.sendto(message, (0, 0))
                while True:
                    reply = nl.recv(65536)
                    _len, rtype, _flags, seq, _pid = _NLMSGHDR.unpack_from(reply)
                    if rtype == _NLMSG_ERROR and seq == self._seq:
                        code = -struct.unpack_from("=i", reply, _NLMSGHDR.size)[0]
                        break
        except OSError as exc:
            return f"Cannot {verb} {address} on [{self.device}]: {exc.strerror or exc}"
        if code == 0 or (kind == _RTM_DELADDR and code == errno.EADDRNOTAVAIL):
            return None
        return f"Cannot {verb} {address} on [{self.device}]: {os.strerror(code)}"
