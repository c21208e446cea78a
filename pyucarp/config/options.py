"""ucarp's command line: GNU getopt_long parsing and the checks that turn argv into a Config.

The C ucarp is the reference: same options, same abbreviations, same order of checks and the
same error texts wherever ucarp has one. Where ucarp silently misreads a value (numbers that
wrap or are garbage) or shrugs at a mistake (an unknown option prints the help and exits 0),
pyucarp refuses with one clear line instead; each such place says so below.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

from pyucarp import __version__
from pyucarp.config.settings import (
    DEFAULT_GROUP6,
    DEFAULT_SCRIPT_TIMEOUT,
    DEFAULT_TRACK_FALL,
    DEFAULT_TRACK_INTERVAL,
    DEFAULT_TRACK_RISE,
    MAX_PASSWORD_BYTES,
    Config,
)
from pyucarp.errors import ConfigError
from pyucarp.records import TYPE_CHECKING, NamedTuple  # lean: no dataclasses/typing, ~3 MiB

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "USAGE",
    "NO_SYSLOG",
    "SYSLOG_FACILITIES",
    "HelpRequested",
    "facility_known",
    "parse_args",
    "read_passfile",
    "scrub_password_from_argv",
]

_TIMEOUT = f"{DEFAULT_SCRIPT_TIMEOUT:g}"
_INTERVAL = DEFAULT_TRACK_INTERVAL
_FALL = DEFAULT_TRACK_FALL
_RISE = DEFAULT_TRACK_RISE
_RT_PRIO = 10  # pyucarp.shell.realtime.DEFAULT_PRIORITY (not imported: it loads the shell)
USAGE = f"""\
pyucarp {__version__}

--interface=<if> (-i <if>): bind interface <if>
--srcip=<ip> (-s <ip>): source (real) IP address of that host
--mcast=<ip> (-m <ip>): multicast group IP address (default 224.0.0.18)
--vhid=<id> (-v <id>): virtual IP identifier (1-255)
--pass=<pass> (-p <pass>): password
--passfile=<file> (-o <file>): read password from file
--preempt (-P): becomes a master as soon as possible
--neutral (-n): don't run downscript at start if backup
--addr=<ip> (-a <ip>): virtual shared IP address
--help (-h): summary of command-line options
--advbase=<seconds> (-b <seconds>): advertisement frequency
--advskew=<skew> (-k <skew>): advertisement skew (0-255)
--upscript=<file> (-u <file>): run <file> to become a master
--downscript=<file> (-d <file>): run <file> to become a backup
--deadratio=<ratio> (-r <ratio>): ratio to consider a host as dead
--debug (-D): enable debug output
--shutdown (-z): call shutdown script at exit
--daemonize (-B): run in background
--ignoreifstate (-S): ignore interface state (down, no carrier)
--nomcast (-M): use broadcast (instead of multicast) advertisements
--facility=<facility> (-f): set syslog facility (default=daemon)
--xparam=<value> (-x): extra parameter to send to up/down scripts

Sample usage:

Manage the 10.1.1.252 shared virtual address on interface eth0, with
1 as a virtual address idenfitier, mypassword as a password, and
10.1.1.1 as a real permanent address for this host.
Call /etc/vip-up.sh when the host becomes a master, and
/etc/vip-down.sh when the virtual IP address has to be disabled.

ucarp --interface=eth0 --srcip=10.1.1.1 --vhid=1 --pass=mypassword \\
      --addr=10.1.1.252 \\
      --upscript=/etc/vip-up.sh --downscript=/etc/vip-down.sh

pyucarp extensions:
--pidfile=<file>: write the daemon's pid to <file>
--statedir=<dir>: directory for the JSON state file (default /run/pyucarp)
--script-timeout=<seconds>: kill an up/down script still running after this (default {_TIMEOUT})
--track-script=<command>: health check, run with /bin/sh -c (may be repeated)
--track-interval=<seconds>: time between two runs of a check (default {_INTERVAL:g})
--track-timeout=<seconds>: a check still running then fails (default: the interval)
--track-fall=<n>: failures in a row that make the service unhealthy (default {_FALL})
--track-rise=<n>: successes in a row that make it healthy again (default {_RISE})
--track-interface=<if>: unhealthy while <if> has no carrier (may be repeated)
--track-weight=<n>: unhealthy adds <n> to the advertised skew instead of FAULT
--notify=<file>: run <file> STATE interface vip vhid on every state change
--realtime[=<prio>]: real-time scheduling (SCHED_RR, default priority {_RT_PRIO}) and
                     locked memory, for sub-second adverts
-a may be repeated:  every address moves with the first, which is the one in the
                     HMAC (the one a C ucarp peer must be given)
--peer=<ip>: unicast: adverts to this peer instead of the group (may be repeated;
                     IPv4 or IPv6, the family of -s and -a)
--real-mac: send adverts from the interface's MAC, not 00:00:5e:00:00:<vhid>
--manage-vip[=<prefixlen>]: add the addresses on MASTER and remove them otherwise
                     (default /32), with or without up/down scripts

Administration (the pyucarp command): pyucarp status | demote | promote | metrics | watch
(pyucarp SUBCOMMAND --help for each)
"""
"""The ``--help`` text: ucarp's, with pyucarp's name and version and its two extra options."""

# glibc's facilitynames table, which ucarp searches case-insensitively for -f. "mark" is
# glibc's internal pseudo-facility (LOG_NFACILITIES << 3) and "security" an alias of auth;
# ucarp accepts both, so we do too. The logger (pyucarp.shell.logs) opens syslog with
# these codes; they are plain numbers so that parsing needs no syslog module.
SYSLOG_FACILITIES: Mapping[str, int] = MappingProxyType(
    {
        "auth": 4 << 3,
        "authpriv": 10 << 3,
        "cron": 9 << 3,
        "daemon": 3 << 3,
        "ftp": 11 << 3,
        "kern": 0 << 3,
        "lpr": 6 << 3,
        "mail": 2 << 3,
        "mark": 24 << 3,
        "news": 7 << 3,
        "security": 4 << 3,
        "syslog": 5 << 3,
        "user": 1 << 3,
        "uucp": 8 << 3,
        **{f"local{n}": (16 + n) << 3 for n in range(8)},
    }
)
"""The -f names ucarp knows (lower case) and their syslog facility codes. ``none`` is apart."""

NO_SYSLOG = "none"  # ucarp's -f value that turns syslog off

_IFNAMSIZ = 16  # the kernel's limit, NUL included; ucarp: "Interface name too long"
_MAX_DEADRATIO = 2**32 - 1  # ucarp keeps it in an unsigned int


class HelpRequested(NamedTuple):
    """The command line asks for the help text (``-h``, ``--help``, or no argument at all)."""


class _Option(NamedTuple):
    long: str
    short: str | None
    takes_arg: bool
    optional_arg: bool = False  # long only: "--opt" or "--opt=value"


# In ucarp's getopt_long table order: the order decides how ambiguous prefixes are listed.
# ucarp's own getopt string lacks "m:" although its help documents -m; we accept -m.
# pyucarp's extensions come last and are long-only; an abbreviation is looked up among
# ucarp's own options first (_resolve_long), so none that worked with ucarp changes meaning
# or becomes ambiguous ("--no" is still --nomcast, not --notify; "--r" --deadratio).
_OPTIONS: tuple[_Option, ...] = (
    _Option("interface", "i", True),
    _Option("srcip", "s", True),
    _Option("mcastip", "m", True),
    _Option("vhid", "v", True),
    _Option("pass", "p", True),
    _Option("preempt", "P", False),
    _Option("neutral", "n", False),
    _Option("addr", "a", True),
    _Option("help", "h", False),
    _Option("advbase", "b", True),
    _Option("advskew", "k", True),
    _Option("upscript", "u", True),
    _Option("downscript", "d", True),
    _Option("deadratio", "r", True),
    _Option("debug", "D", False),
    _Option("shutdown", "z", False),
    _Option("facility", "f", True),
    _Option("daemonize", "B", False),
    _Option("ignoreifstate", "S", False),
    _Option("nomcast", "M", False),
    _Option("passfile", "o", True),
    _Option("xparam", "x", True),
    _Option("pidfile", None, True),
    _Option("statedir", None, True),
    _Option("script-timeout", None, True),
    _Option("track-script", None, True),
    _Option("track-interval", None, True),
    _Option("track-timeout", None, True),
    _Option("track-fall", None, True),
    _Option("track-rise", None, True),
    _Option("track-interface", None, True),
    _Option("track-weight", None, True),
    _Option("notify", None, True),
    _Option("realtime", None, True, optional_arg=True),
    _Option("peer", None, True),
    _Option("real-mac", None, False),
    _Option("manage-vip", None, True, optional_arg=True),
)
_UCARP_OPTIONS = _OPTIONS[: [o.long for o in _OPTIONS].index("xparam") + 1]
_BY_SHORT = {opt.short: opt for opt in _OPTIONS if opt.short is not None}
_BY_LONG = {opt.long: opt for opt in _OPTIONS}


class _Occurrence(NamedTuple):
    """One option found in argv: its long name, its value, and where the value sits."""

    name: str
    value: str | None
    element: int  # argv element holding the value (or the option itself)
    offset: int  # where the value starts inside that element


def facility_known(name: str) -> bool:
    """Whether ucarp accepts ``name`` for -f (case-insensitive; ``none`` included)."""
    lowered = name.lower()
    return lowered == NO_SYSLOG or lowered in SYSLOG_FACILITIES


def _resolve_long(name: str) -> _Option:
    """getopt_long's lookup: an exact name, else the one option ``name`` abbreviates."""
    exact = _BY_LONG.get(name)
    if exact is not None:
        return exact
    matches = [opt for opt in _UCARP_OPTIONS if name and opt.long.startswith(name)]
    if not matches:
        matches = [opt for opt in _OPTIONS if name and opt.long.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    # Only the name is quoted, never an "=value": that could be the password.
    if not matches:
        raise ConfigError(f"unrecognized option '--{name}'")
    listed = " ".join(f"'--{opt.long}'" for opt in matches)
    raise ConfigError(f"option '--{name}' is ambiguous; possibilities: {listed}")


def _scan(argv: Sequence[str]) -> Iterator[_Occurrence]:
    """Walk argv the way GNU getopt_long (permuting mode) does, yielding each option in order.

    Non-option arguments are skipped (ucarp never reads them: the classic init script
    passes a lone backslash), ``--`` ends the options, and a lone ``-`` is a non-option.
    ucarp prints its help and exits 0 on any getopt error; we raise ConfigError with
    getopt's own wording instead, so a typo cannot pass for a successful start.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            opt = _resolve_long(name)
            if eq:
                if not opt.takes_arg:
                    raise ConfigError(f"option '--{opt.long}' doesn't allow an argument")
                yield _Occurrence(opt.long, value, i, len(name) + 3)
            elif opt.optional_arg:
                yield _Occurrence(opt.long, "", i, 0)
            elif opt.takes_arg:
                if i + 1 >= len(argv):
                    raise ConfigError(f"option '--{opt.long}' requires an argument")
                i += 1  # the next element is the value even if it starts with "-"
                yield _Occurrence(opt.long, argv[i], i, 0)
            else:
                yield _Occurrence(opt.long, None, i, 0)
        elif arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                short = _BY_SHORT.get(arg[j])
                if short is None:
                    raise ConfigError(f"invalid option -- '{arg[j]}'")
                if not short.takes_arg:
                    yield _Occurrence(short.long, None, i, j)
                    j += 1
                    continue
                if j + 1 < len(arg):  # "-v5", or "-Pv5" after flags
                    yield _Occurrence(short.long, arg[j + 1 :], i, j + 1)
                elif i + 1 < len(argv):
                    i += 1
                    yield _Occurrence(short.long, argv[i], i, 0)
                else:
                    raise ConfigError(f"option requires an argument -- '{arg[j]}'")
                break
        i += 1


# strtoul(s, NULL, 0) syntax: C white space, a sign, then 0x-hex, 0-octal or decimal.
# ucarp stops at the first bad character and keeps what it read ("5x" is 5, "abc" and
# "08" are 0, "-1" wraps to ULONG_MAX, then unsigned char keeps the low 8 bits). A
# silently different vhid or timer is worse than a refusal, so the whole value must be
# a number here; white space around it is tolerated (strtoul skips the leading part).
# Read by hand: the re module would cost every daemon ~0.4 MiB for this and one more check.
_C_SPACE = " \t\n\v\f\r"
_DIGITS = {16: frozenset("0123456789abcdefABCDEF"), 8: frozenset("01234567"),
           10: frozenset("0123456789")}


def _c_integer(text: str, what: str) -> int:
    """``text`` read as a C integer literal (``0x10`` = 16, ``010`` = 8), or ConfigError."""
    digits = text.strip(_C_SPACE)
    sign = digits[:1]
    if sign in ("+", "-"):
        digits = digits[1:]
    if digits[:2] in ("0x", "0X"):
        base, digits = 16, digits[2:]
    elif digits[:1] == "0":
        base = 8
    else:
        base = 10
    if not digits or not set(digits) <= _DIGITS[base]:
        raise ConfigError(f"Invalid number for {what}: [{text}]")
    value = int(digits, base)
    return -value if sign == "-" else value


def _in_range(text: str, what: str, low: int, high: int, message: str) -> int:
    value = _c_integer(text, what)
    if not low <= value <= high:
        raise ConfigError(message)
    return value


def _address(text: str) -> IPv4Address | IPv6Address:
    """An IPv4 address as inet_pton reads it, or an IPv6 one (pyucarp: CARP over IPv6)."""
    if ":" not in text:
        return _ipv4(text)
    try:
        return IPv6Address(text)
    except ValueError:
        raise ConfigError(f"Invalid address: [{text}]") from None


def _ipv4(text: str) -> IPv4Address:
    """A dotted quad as inet_pton reads it; ucarp's "Invalid address: [...]" otherwise."""
    # ipaddress takes exactly inet_pton's syntax: four decimal octets, no leading zeros.
    try:
        return IPv4Address(text)
    except ValueError:
        raise ConfigError(f"Invalid address: [{text}]") from None


def read_passfile(path: str) -> bytes:
    """The first line of ``path`` without its line end, with ucarp's error texts (``-o``).

    ucarp reads one line with fgets and cuts it at the newline; as a C string it also ends
    at a NUL byte. A carriage return before the newline stays in the key, as in ucarp:
    a mixed cluster sharing one CRLF file must compute the same HMAC on every node.
    """
    try:
        with open(path, "rb") as handle:
            line = handle.readline(4096)
    except IsADirectoryError as exc:  # C's fopen succeeds on a directory, fgets fails
        raise ConfigError(f"error reading passfile {path}: {exc.strerror}") from None
    except OSError as exc:
        raise ConfigError(
            f"unable to open passfile {path} for reading: {exc.strerror}"
        ) from None
    if not line:
        raise ConfigError(f"error reading passfile {path}: unexpected end of file")
    return line.split(b"\n", 1)[0].split(b"\0", 1)[0]


# Config's defaults, the one place they are written; the draft falls back on them.
_DEFAULTS: Mapping[str, object] = MappingProxyType(Config._field_defaults)


class _Draft:
    """The options seen so far; the last repetition of an option wins, as in ucarp.

    ``given`` holds the values by Config field name; anything not given is Config's default.
    """

    __slots__ = ("given", "passfile")

    def __init__(self) -> None:
        self.given: dict[str, Any] = {}
        self.passfile: str | None = None  # where the current password came from, for messages

    def __getitem__(self, name: str) -> Any:
        return self.given.get(name, _DEFAULTS.get(name))

    def __setitem__(self, name: str, value: object) -> None:
        self.given[name] = value


_FLAGS = frozenset(
    {"preempt", "neutral", "debug", "shutdown", "daemonize", "ignoreifstate", "nomcast",
     "real-mac"}
)
_STRINGS = frozenset({"interface", "upscript", "downscript", "xparam"})


def _apply(draft: _Draft, name: str, value: str) -> None:
    """Record one option with a value, checking it at once as ucarp does for -s/-a/-m/-v/-o."""
    if name in _STRINGS:
        draft[name] = value  # kept verbatim: scripts receive exactly this
    elif name == "srcip":
        draft["srcip"] = _address(value)
    elif name == "mcastip":
        draft["mcast"] = _ipv4(value)
    elif name == "addr":
        address = _address(value)
        if address.version == 6 and address.scope_id:
            raise ConfigError(f"Invalid virtual address: [{value}] (no scope on a VIP)")
        if draft["addr"] is None:
            draft["addr"] = address
            draft["addr_text"] = value
        elif int(address) == 0 or _not_a_host(address):
            raise ConfigError(f"Invalid virtual address: [{value}]")
        elif address != draft["addr"] and address not in draft["extra_addrs"]:
            # ucarp keeps only the last -a; every one counts here, the first in the HMAC.
            draft["extra_addrs"] = (*draft["extra_addrs"], address)
            draft["extra_addr_texts"] = (*draft["extra_addr_texts"], value)
    elif name == "vhid":
        draft["vhid"] = _in_range(value, "vhid", 1, 255, "vhid must be between 1 and 255.")
    elif name == "pass":
        draft["password"] = os.fsencode(value)  # the bytes typed, whatever the locale
        draft.passfile = None
    elif name == "passfile":
        draft["password"] = read_passfile(value)
        draft.passfile = value
    elif name == "advbase":
        # ucarp stores both in an unsigned char: 256 silently becomes 0, 300 becomes 44.
        draft["advbase"] = _in_range(value, "advbase", 0, 255, "advbase must be between 0 and 255")
    elif name == "advskew":
        draft["advskew"] = _in_range(value, "advskew", 0, 255, "advskew must be between 0 and 255")
    elif name == "deadratio":
        # Zero is refused after the other checks, with ucarp's text; values that would
        # wrap ucarp's unsigned int (to 0 or to something else) are refused here.
        draft["deadratio"] = _in_range(
            value, "deadratio", 0, _MAX_DEADRATIO,
            f"deadratio must be between 1 and {_MAX_DEADRATIO}",
        )
    elif name == "facility":
        # ucarp logs "Unknown syslog facility: [...]" and goes on; the logger does the
        # same with the text kept here. Known names are stored in lower case. (ucarp
        # never turns syslog back on after "-f none"; here the last -f simply wins.)
        draft["facility"] = value.lower() if facility_known(value) else value
    elif name in ("pidfile", "statedir"):
        if not value:
            raise ConfigError(f"--{name} needs a non-empty path")
        draft[name] = value
    elif name == "script-timeout":
        draft["script_timeout"] = _seconds(value, "script timeout")
    elif name in ("track-script", "track-interface"):
        what = "command" if name == "track-script" else "interface"
        if not value.strip():
            raise ConfigError(f"--{name} needs a non-empty {what}")
        if name == "track-interface" and len(os.fsencode(value)) >= _IFNAMSIZ:
            raise ConfigError(f"Interface name too long: [{value}]")
        field = "track_scripts" if name == "track-script" else "track_interfaces"
        draft[field] = (*draft[field], value)  # repeated: every one counts
    elif name == "track-interval":
        draft["track_interval"] = _seconds(value, "check interval")
    elif name == "track-timeout":
        draft["track_timeout"] = _seconds(value, "check timeout")
    elif name in ("track-fall", "track-rise"):
        draft[name.replace("-", "_")] = _in_range(
            value, name[6:], 1, 1000, f"--{name} must be between 1 and 1000")
    elif name == "track-weight":
        draft["track_weight"] = _in_range(
            value, "track weight", 1, 255, "--track-weight must be between 1 and 255")
    elif name == "notify":
        if not value:
            raise ConfigError("--notify needs a non-empty path")
        draft["notify"] = value
    elif name == "peer":
        peer: IPv4Address | IPv6Address
        try:
            peer = IPv6Address(value) if ":" in value else IPv4Address(value)
        except ValueError:
            raise ConfigError(f"Invalid peer address: [{value}]") from None
        if _not_a_host(peer) or peer.is_unspecified:
            raise ConfigError(f"Invalid peer address: [{value}] (a unicast address)")
        if peer not in draft["peers"]:
            draft["peers"] = (*draft["peers"], peer)  # a scope is checked in _finish
    elif name == "manage-vip":
        draft["manage_vip"] = 0 if not value else _in_range(  # 0: the family's host length
            value, "prefix length", 1, 128, f"Invalid prefix length: [{value}] (1-32, or"
            " 1-128 over IPv6)")
    elif name == "realtime":
        draft["realtime"] = _RT_PRIO if not value else _in_range(
            value, "real-time priority", 1, 99, "--realtime priority must be between 1 and 99")
    else:  # pragma: no cover - every option with a value is handled above
        raise AssertionError(name)


def _seconds(value: str, what: str) -> float:
    """A positive number of seconds (fractions allowed), at most a day."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:  # also refuses nan and inf
        raise ConfigError(f"Invalid {what}: [{value}] (seconds, 0 < t <= 86400)")
    return seconds


def _finish(draft: _Draft, default_interface: Callable[[], str | None]) -> Config:
    """ucarp's checks after the options, in ucarp's order, then the Config."""
    interface = draft["interface"] or default_interface() or ""
    if not interface:
        raise ConfigError("You must supply a network interface")
    if draft["vhid"] is None:
        raise ConfigError("You must supply a valid virtual host id")
    password = draft["password"]
    if not password:
        where = f" (passfile {draft.passfile} starts with an empty line)" if draft.passfile else ""
        raise ConfigError(f"You must supply a password{where}")
    if draft["advbase"] == 0 and draft["advskew"] == 0:
        raise ConfigError("You must supply an advertisement time base")
    if draft["srcip"] is None or int(draft["srcip"]) == 0:
        raise ConfigError("You must supply a persistent source address")
    if draft["addr"] is None or int(draft["addr"]) == 0:
        raise ConfigError("You must supply a virtual host address")
    if draft["deadratio"] == 0:
        raise ConfigError("Dead ratio can't be zero")
    # ucarp finds these two only after its checks (and exits 2); they are static
    # properties of the command line, so they are configuration errors here.
    if len(password) > MAX_PASSWORD_BYTES:
        raise ConfigError("Password too long")
    if len(os.fsencode(interface)) >= _IFNAMSIZ:
        raise ConfigError("Interface name too long")
    _check_families(draft)
    _check_peer_scopes(draft, interface.split(":", 1)[0])
    _check_unicast_and_managed(draft)
    return Config(**{**draft.given, "interface": interface})


def _not_a_host(address: IPv4Address | IPv6Address) -> bool:
    """Multicast, loopback or the broadcast address: never a virtual host's or a peer's."""
    return address.is_multicast or address.is_loopback or address == _BROADCAST


_BROADCAST = IPv4Address("255.255.255.255")


def _check_peer_scopes(draft: _Draft, device: str) -> None:
    """An IPv6 peer may carry a scope (``fe80::2%eth0``: a link-local peer), which must
    name the interface, as -s's must; the peers are kept without it (the kernel is given
    the interface when sending)."""
    peers: list[IPv4Address | IPv6Address] = []
    for peer in draft["peers"]:
        scope = getattr(peer, "scope_id", None)
        if scope and scope != device:
            raise ConfigError(f"Peer address [{peer}] is scoped to [{scope}], not to [{device}]")
        if scope:
            peer = IPv6Address(peer.packed)
        if peer not in peers:
            peers.append(peer)
    if draft["peers"]:
        draft["peers"] = tuple(peers)


def _check_unicast_and_managed(draft: _Draft) -> None:
    """What --peer and --manage-vip cannot mean."""
    srcip = draft["srcip"]
    if draft["peers"]:
        if any(peer.packed == srcip.packed for peer in draft["peers"]):
            raise ConfigError(f"Invalid peer address: [{srcip}] (this host's own)")
        # (an IPv6 instance's mcast is ff02::12, set by _check_families, not given)
        if draft["nomcast"] or ("mcast" in draft.given and draft["mcast"].version == 4):
            raise ConfigError("--peer sends unicast adverts: -M and --mcast mean nothing then")
    if draft["manage_vip"] is not None:
        for address in (draft["addr"], *draft["extra_addrs"]):
            if address == srcip:
                raise ConfigError(f"Virtual address [{address}] is the source address: "
                                  "--manage-vip would take it off the host")
            if _not_a_host(address):
                raise ConfigError(f"Invalid virtual address for --manage-vip: [{address}]")


def _check_families(draft: _Draft) -> None:
    """One family per instance, peers included; over IPv6 the BSDs' group, or peers."""
    version = draft["addr"].version
    for what, address in (("Source address", draft["srcip"]),
                          *(("Virtual address", a) for a in draft["extra_addrs"]),
                          *(("Peer address", a) for a in draft["peers"])):
        if address.version != version:
            raise ConfigError(f"{what} [{address}] is IPv{address.version}, the virtual "
                              f"address [{draft['addr_text']}] IPv{version}: use one family")
    if version == 6:
        if "mcast" in draft.given:
            raise ConfigError("--mcast is for IPv4: IPv6 adverts go to ff02::12")
        if draft["nomcast"]:
            raise ConfigError("--nomcast is for IPv4: IPv6 adverts go to ff02::12 "
                              "(or to each --peer)")
        draft["mcast"] = DEFAULT_GROUP6
    prefix = draft["manage_vip"]
    if prefix == 0:
        draft["manage_vip"] = 32 if version == 4 else 128
    elif version == 4 and prefix is not None and prefix > 32:
        raise ConfigError(f"Invalid prefix length: [{prefix}] (1-32)")


def parse_args(
    argv: Sequence[str], *, default_interface: Callable[[], str | None]
) -> Config | HelpRequested:
    """Read ucarp's command line (without the program name) into a checked Config.

    Options are handled strictly left to right like ucarp's getopt loop: ``-h`` wins over
    anything after it, a bad address or vhid before it is reported first. No argument at
    all asks for help, as in ucarp. ``default_interface`` is asked only when no -i (or an
    empty one) was given. Raises ConfigError with one line for every configuration error.
    """
    if not argv:
        return HelpRequested()
    draft = _Draft()
    for occurrence in _scan(argv):
        if occurrence.name == "help":
            return HelpRequested()
        if occurrence.value is None:
            assert occurrence.name in _FLAGS
            draft[occurrence.name.replace("-", "_")] = True
        else:
            _apply(draft, occurrence.name, occurrence.value)
    return _finish(draft, default_interface)


_PROC_SELF = "/proc/self"  # a string: pathlib would cost the daemon ~1 MiB (re, urllib...)
# /proc/PID/stat fields 48 and 49 (1-based, Linux >= 3.5): where argv lives in memory.
_ARG_START_FIELD = 48
_ARG_END_FIELD = 49


def _password_spans(args: Sequence[str]) -> list[tuple[int, int]]:
    """(element, character offset) of each -p/--pass value in ``args``, as parsing sees them."""
    spans: list[tuple[int, int]] = []
    try:
        for occurrence in _scan(args):
            if occurrence.name == "pass" and occurrence.value:
                spans.append((occurrence.element, occurrence.offset))
    except ConfigError:
        pass  # the options before the error are still found and scrubbed
    return spans


def _scrub(proc_self: str) -> None:
    args = sys.argv[1:]
    spans = _password_spans(args)
    if not spans:
        return
    with open(os.path.join(proc_self, "stat"), "rb") as handle:
        stat = handle.read()
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat[stat.rindex(b")") + 2 :].split()
    arg_start = int(fields[_ARG_START_FIELD - 3])
    arg_end = int(fields[_ARG_END_FIELD - 3])
    encoded = [os.fsencode(arg) for arg in args]
    with open(os.path.join(proc_self, "mem"), "r+b", buffering=0) as mem:
        mem.seek(arg_start)
        area = mem.read(arg_end - arg_start)
        words = area.split(b"\0")
        if area.endswith(b"\0"):
            words.pop()
        # The interpreter's own arguments come first; ours must be the exact tail, else
        # the area was rewritten by someone else and is left alone.
        if len(words) < len(encoded) or words[len(words) - len(encoded) :] != encoded:
            return
        position = arg_start + sum(len(w) + 1 for w in words[: len(words) - len(encoded)])
        starts = []
        for word in encoded:
            starts.append(position)
            position += len(word) + 1
        for index, offset in spans:
            skip = len(os.fsencode(args[index][:offset]))
            mem.seek(starts[index] + skip)
            # Same length, so the other arguments keep their places in ps output.
            mem.write(b"x" * (len(encoded[index]) - skip))


def scrub_password_from_argv() -> None:
    """Overwrite the -p/--pass value in this process's argv memory with ``x`` characters.

    ucarp leaves the password readable by every local user in /proc/PID/cmdline. Python
    cannot change argv itself, so the kernel's copy is rewritten through /proc/self/mem.
    Best effort: when anything is missing or refused, nothing happens and nothing is raised.
    """
    try:
        _scrub(_PROC_SELF)
    except (OSError, ValueError, IndexError):
        return
