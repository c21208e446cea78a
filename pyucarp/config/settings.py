"""The daemon's validated configuration: what the command line means, nothing more.

Field names follow ucarp's long options (docs/compat.md §1).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from pyucarp.records import NamedTuple  # lean: no dataclasses/typing, ~3 MiB

DEFAULT_GROUP = IPv4Address("224.0.0.18")
DEFAULT_GROUP6 = IPv6Address("ff02::12")  # the BSDs' CARP group over IPv6
IPAddress = IPv4Address | IPv6Address
DEFAULT_FACILITY = "daemon"  # syslog facility when -f is not given
DEFAULT_SCRIPT_TIMEOUT = 60.0  # seconds before a hung up/down script is killed
MAX_PASSWORD_BYTES = 19  # ucarp keeps the key in 20 bytes, NUL included
DEFAULT_TRACK_INTERVAL = 2.0  # seconds between two starts of a check
DEFAULT_TRACK_FALL = 2  # failures in a row that make a check failed
DEFAULT_TRACK_RISE = 2  # successes in a row that make it good again


class Config(NamedTuple):
    """Everything one pyucarp instance needs to run, already checked.

    A frozen record (a NamedTuple: no dataclasses on the daemon's import path, see
    pyucarp.records); ``config._replace(field=value)`` makes a changed copy.
    """

    interface: str  # as typed, alias label included ("eth0:carp0")
    srcip: IPAddress
    vhid: int
    password: bytes
    addr: IPAddress
    addr_text: str  # the VIP exactly as typed: scripts receive it verbatim
    mcast: IPAddress = DEFAULT_GROUP  # ff02::12 for an IPv6 instance
    preempt: bool = False
    neutral: bool = False
    advbase: int = 1
    advskew: int = 0
    upscript: str | None = None
    downscript: str | None = None
    deadratio: int = 3
    debug: bool = False
    shutdown: bool = False
    daemonize: bool = False
    ignoreifstate: bool = False
    nomcast: bool = False
    facility: str = DEFAULT_FACILITY
    xparam: str | None = None
    pidfile: str | None = None
    statedir: str | None = None
    script_timeout: float = DEFAULT_SCRIPT_TIMEOUT
    # Service health (docs/health.md): checks, tracked interfaces, what failing does.
    track_scripts: tuple[str, ...] = ()
    track_interval: float = DEFAULT_TRACK_INTERVAL
    track_timeout: float | None = None  # None: the interval
    track_fall: int = DEFAULT_TRACK_FALL
    track_rise: int = DEFAULT_TRACK_RISE
    track_interfaces: tuple[str, ...] = ()
    track_weight: int | None = None  # None: unhealthy means FAULT
    notify: str | None = None
    realtime: int | None = None  # SCHED_RR priority, None: normal scheduling
    # Beyond multicast (docs/beyond-multicast.md): more addresses, unicast, own MAC.
    extra_addrs: tuple[IPAddress, ...] = ()  # -a repeated: they move with the first
    extra_addr_texts: tuple[str, ...] = ()  # as typed, for the scripts
    peers: tuple[IPAddress, ...] = ()  # unicast: adverts to these, none to the group
    real_mac: bool = False  # adverts from the interface's MAC, not 00:00:5e:00:00:<vhid>
    manage_vip: int | None = None  # prefix length: pyucarp adds/removes the addresses

    @property
    def addresses(self) -> tuple[tuple[IPAddress, str], ...]:
        """Every address of the virtual host with its text as typed, the first (the one
        in the HMAC) first."""
        return ((self.addr, self.addr_text), *zip(self.extra_addrs, self.extra_addr_texts,
                                                   strict=True))

    @property
    def tracked(self) -> bool:
        """Whether health checks or tracked interfaces decide this instance's health."""
        return bool(self.track_scripts or self.track_interfaces)

    @property
    def check_timeout(self) -> float:
        """Seconds before a running check is killed and counts as failed."""
        return self.track_interval if self.track_timeout is None else self.track_timeout

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={'***' if name == 'password' else repr(value)}"
            for name, value in zip(self._fields, self, strict=True)
        )
        return f"Config({shown})"  # never the password: configs end up in logs and tracebacks

    @property
    def device(self) -> str:
        """The kernel device: an alias label ``eth0:carp0`` names device ``eth0``."""
        return self.interface.split(":", 1)[0]
