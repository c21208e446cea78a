"""ucarp's command line: a table of real command lines, checked against our parser and against
the C ucarp itself (run in a private network namespace).

Each row says what pyucarp does with the line (runs with these values / fails with this
message / prints the help). Rows where ucarp behaves differently on purpose carry ``c=`` (what
ucarp does instead) and ``why``; all other rows must behave the same in both.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pyucarp import __version__
from pyucarp.config import options
from pyucarp.config.options import (
    USAGE,
    HelpRequested,
    facility_known,
    parse_args,
    scrub_password_from_argv,
)
from pyucarp.config.settings import Config
from pyucarp.errors import ConfigError

UCARP = "/usr/sbin/ucarp"
REPO = Path(__file__).resolve().parent.parent
RUNS, FAILS, HELP = "runs", "fails", "help"
C_WAIT_S = 0.7  # a ucarp still alive after this long has accepted its command line


@dataclass(frozen=True)
class Row:
    """One command line and what becomes of it."""

    id: str
    cmd: str  # shell words; {name} stands for a file of the ``files`` fixture
    expect: str  # RUNS, FAILS or HELP, for pyucarp
    fields: Mapping[str, object] = field(default_factory=dict)  # RUNS: Config values
    error: str = ""  # FAILS: pyucarp's exact message
    c: str | None = None  # ucarp's outcome where we deliberately differ ("better" rows)
    why: str = ""  # the reason for a "better" row
    c_rc: int = 1  # ucarp's exit status when it fails
    c_text: str | None = None  # ucarp's error text when ours differs; "" = not checked
    c_check: bool = True  # False: the situation cannot be made for the C binary
    no_default_interface: bool = False

    @property
    def c_expect(self) -> str:
        return self.expect if self.c is None else self.c


def runs(id: str, cmd: str, **fields: object) -> Row:
    return Row(id, cmd, RUNS, fields)


def fails(id: str, cmd: str, error: str, **kw: object) -> Row:
    return Row(id, cmd, FAILS, error=error, **kw)  # type: ignore[arg-type]


def better(row: Row, c: str, why: str) -> Row:
    return Row(**{**row.__dict__, "c": c, "why": why})


def shows_help(id: str, cmd: str) -> Row:
    return Row(id, cmd, HELP)


S = "-i eth0 -s 192.0.2.1 -v 1 -p pw -a 192.0.2.50"
NO_ADDR = "-i eth0 -s 192.0.2.1 -v 1 -p pw"  # -a repeated adds an address: give one
NO_PASS = "-i eth0 -s 192.0.2.1 -v 1 -a 192.0.2.50"
BASE = {"interface": "eth0", "srcip": "192.0.2.1", "vhid": 1, "password": b"pw",
        "addr": "192.0.2.50"}

ROWS: list[Row] = [
    # ---- command lines that start the daemon
    runs("classic_short", S, **BASE, addr_text="192.0.2.50", mcast="224.0.0.18", advbase=1,
         advskew=0, deadratio=3, preempt=False, neutral=False, shutdown=False, daemonize=False,
         facility="daemon", xparam=None, upscript=None, downscript=None, pidfile=None),
    runs("help_sample_long",
         "--interface=eth0 --srcip=192.0.2.1 --vhid=1 --pass=mypassword --addr=192.0.2.252 "
         "--upscript=/etc/vip-up.sh --downscript=/etc/vip-down.sh",
         password=b"mypassword", addr="192.0.2.252", upscript="/etc/vip-up.sh",
         downscript="/etc/vip-down.sh"),
    runs("long_space_separated",
         "--interface eth0 --srcip 192.0.2.1 --vhid 7 --pass secret --addr 192.0.2.7 --advskew 20",
         vhid=7, password=b"secret", addr="192.0.2.7", advskew=20),
    runs("init_script_lone_backslash",
         r"-z -b 1 -i eth0:carp0 '\' -v 42 -p secret -a 192.0.2.32 -s 192.0.2.1",
         interface="eth0:carp0", shutdown=True, advbase=1, vhid=42, password=b"secret",
         addr="192.0.2.32", srcip="192.0.2.1"),
    runs("debian_ifupdown_hook",
         "-i eth0 -s 192.0.2.1 -B -z -v 3 -p pw -a 192.0.2.50 -u /x/up -d /x/down "
         "-P -k 10 -b 2 -r 4 -M -x val",
         daemonize=True, shutdown=True, vhid=3, upscript="/x/up", downscript="/x/down",
         preempt=True, advskew=10, advbase=2, deadratio=4, nomcast=True, xparam="val"),
    runs("debian_ifupdown_hook_minimal",
         "-i eth0 -s 192.0.2.1 -B -z -v 4 -p pw -a 192.0.2.51 -u /x/up -d /x/down",
         daemonize=True, vhid=4, addr="192.0.2.51", preempt=False, nomcast=False, xparam=None),
    runs("long_prefix_flags",
         "--int=eth0 --sr=192.0.2.1 --vh=5 --pass=pw --add=192.0.2.5 "
         "--pre --neu --sh --ig --no --deb",
         interface="eth0", vhid=5, addr="192.0.2.5", preempt=True, neutral=True, shutdown=True,
         ignoreifstate=True, nomcast=True, debug=True),
    runs("long_prefix_values",
         S + " --advb 2 --advs=30 --dea 5 --f local1 --x=extra --u /x/up --do=/x/down",
         advbase=2, advskew=30, deadratio=5, facility="local1", xparam="extra",
         upscript="/x/up", downscript="/x/down"),
    runs("mcast_as_documented", S + " --mcast=224.0.0.19", mcast="224.0.0.19"),
    runs("mcastip_real_name", S + " --mcastip 224.0.0.20", mcast="224.0.0.20"),
    runs("mcast_short_prefix", S + " --mc=224.0.0.21", mcast="224.0.0.21"),
    runs("combined_flags", S + " -Pzn", preempt=True, shutdown=True, neutral=True),
    runs("flags_then_value", "-i eth0 -s 192.0.2.1 -p pw -a 192.0.2.50 -Pv5", preempt=True, vhid=5),
    runs("attached_values", "-ieth0 -s192.0.2.1 -v9 -ppw -a192.0.2.9 -b2 -k7",
         interface="eth0", vhid=9, password=b"pw", addr="192.0.2.9", advbase=2, advskew=7),
    runs("more_flags", S + " -DSM", debug=True, ignoreifstate=True, nomcast=True),
    runs("hex_vhid_last_wins", S + " -v 0x10", vhid=16),
    runs("octal_advskew", S + " -k 010", advskew=8),
    runs("octal_vhid_max", S + " -v 0377", vhid=255),
    runs("hex_upper_case", S + " -v 0X0FF -k 0xfe", vhid=255, advskew=254),
    runs("largest_timers", S + " -b 255 -k 255", advbase=255, advskew=255),
    runs("zero_advbase_with_skew", S + " -b 0 -k 1", advbase=0, advskew=1),
    runs("repetitions_last_wins", S + " -v 2 -v 3 -p a -p bb",
         vhid=3, password=b"bb"),
    # ucarp keeps the last -a; pyucarp moves every address, the first in the HMAC.
    runs("repeated_addr_every_address", S + " -a 192.0.2.60 -a 192.0.2.50",
         addr="192.0.2.50", addr_text="192.0.2.50", extra_addr_texts=("192.0.2.60",)),
    runs("stray_arguments", S + " foo bar", **BASE),
    runs("stray_arguments_mixed", "foo -P -i eth0 bar -s 192.0.2.1 -v 1 -p pw -a 192.0.2.50 baz",
         preempt=True, **BASE),
    runs("lone_dash_is_stray", S + " -", **BASE),
    runs("double_dash_ends_options", S + " -- -v 300 -q", vhid=1),
    runs("value_looking_like_option", S + " -x -P", xparam="-P", preempt=False),
    runs("default_interface", "-s 192.0.2.1 -v 1 -p pw -a 192.0.2.50", interface="eth0"),
    runs("empty_interface_means_default", "-i '' -s 192.0.2.1 -v 1 -p pw -a 192.0.2.50",
         interface="eth0"),
    runs("passfile", NO_PASS + " -o {pw1}", password=b"filepw"),
    runs("passfile_long_no_newline", NO_PASS + " --passfile={pwnonl}", password=b"nonl"),
    runs("pass_then_passfile", S + " -o {pw1}", password=b"filepw"),
    runs("passfile_then_pass", NO_PASS + " -o {pw1} -p later", password=b"later"),
    runs("passfile_blank_line_then_pass", NO_PASS + " -o {pwnl} -p pw", password=b"pw"),
    # ucarp keeps the \r in the key; so must we, or a mixed cluster disagrees.
    runs("passfile_crlf", NO_PASS + " -o {pwcrlf}", password=b"crlf\r"),
    runs("facility", S + " -f local3", facility="local3"),
    runs("facility_case_insensitive", S + " -f LOCAL3", facility="local3"),
    runs("facility_none", S + " -f none", facility="none"),
    runs("facility_unknown_kept", S + " -f bogus", facility="bogus"),
    # ucarp never turns syslog back on after -f none; the last -f wins here.
    runs("facility_last_wins", S + " -f none -f local0", facility="local0"),
    runs("xparam_empty", S + " -x ''", xparam=""),
    runs("password_19_bytes", S + " -p 1234567890123456789", password=b"1234567890123456789"),
    runs("deadratio_hex", S + " -r 0x0A", deadratio=10),
    runs("number_with_blank", S + " -v ' 7'", vhid=7),
    runs("number_with_plus", S + " -v +7", vhid=7),
    runs("alias_label", S + " -i eth0:carp1", interface="eth0:carp1"),
    better(runs("m_short_option", S + " -m 224.0.0.22", mcast="224.0.0.22"), HELP,
           "ucarp documents -m but its getopt string lacks it"),
    better(runs("pidfile_statedir",
                S + " --pidfile=/run/pyucarp-test.pid --statedir /tmp/pyucarp-state",
                pidfile="/run/pyucarp-test.pid", statedir="/tmp/pyucarp-state"), HELP,
           "pyucarp extensions"),
    better(runs("pidfile_prefix", S + " --pi=/run/p.pid --st=/tmp/s",
                pidfile="/run/p.pid", statedir="/tmp/s"), HELP, "pyucarp extensions"),
    # ---- configuration errors, same outcome as ucarp
    fails("missing_srcip", "-i eth0 -v 1 -p pw -a 192.0.2.50",
          "You must supply a persistent source address"),
    fails("missing_addr", "-i eth0 -s 192.0.2.1 -v 1 -p pw",
          "You must supply a virtual host address"),
    fails("missing_vhid", "-i eth0 -s 192.0.2.1 -p pw -a 192.0.2.50",
          "You must supply a valid virtual host id"),
    fails("missing_password", NO_PASS, "You must supply a password"),
    fails("empty_password", S + " -p ''", "You must supply a password"),
    fails("empty_password_long", S + " --pass=", "You must supply a password"),
    fails("vhid_zero", S + " -v 0", "vhid must be between 1 and 255."),
    fails("vhid_256", S + " -v 256", "vhid must be between 1 and 255."),
    fails("vhid_negative", S + " -v -1", "vhid must be between 1 and 255."),
    fails("vhid_hex_too_big", S + " -v 0x100", "vhid must be between 1 and 255."),
    fails("no_time_base", S + " -b 0 -k 0", "You must supply an advertisement time base"),
    fails("no_time_base_default_skew", S + " -b 0", "You must supply an advertisement time base"),
    fails("deadratio_zero", S + " -r 0", "Dead ratio can't be zero"),
    fails("deadratio_zero_hex", S + " -r 0x0", "Dead ratio can't be zero"),
    fails("password_too_long", S + " -p 12345678901234567890", "Password too long", c_rc=2),
    fails("srcip_three_parts", S + " -s 192.0.2", "Invalid address: [192.0.2]"),
    fails("addr_not_an_address", S + " -a foo", "Invalid address: [foo]"),
    fails("mcast_not_an_address", S + " --mcast=foo", "Invalid address: [foo]"),
    fails("addr_leading_zero", S + " -a 192.0.2.050", "Invalid address: [192.0.2.050]"),
    fails("addr_octet_overflow", S + " -a 192.0.2.256", "Invalid address: [192.0.2.256]"),
    fails("srcip_zero", S + " -s 0.0.0.0", "You must supply a persistent source address"),
    fails("addr_zero", NO_ADDR + " -a 0.0.0.0", "You must supply a virtual host address"),
    fails("passfile_missing", NO_PASS + " -o {missing}",
          "unable to open passfile {missing} for reading: No such file or directory"),
    fails("passfile_empty", NO_PASS + " -o {pwempty}",
          "error reading passfile {pwempty}: unexpected end of file"),
    fails("passfile_is_directory", NO_PASS + " -o {pwdir}",
          "error reading passfile {pwdir}: Is a directory"),
    fails("passfile_error_before_later_pass", NO_PASS + " -o {pwempty} -p pw",
          "error reading passfile {pwempty}: unexpected end of file"),
    fails("passfile_blank_first_line", NO_PASS + " -o {pwnl}",
          "You must supply a password (passfile {pwnl} starts with an empty line)",
          c_text="You must supply a password"),
    fails("error_before_help", S + " -v 300 -h", "vhid must be between 1 and 255."),
    fails("checks_in_ucarp_order_vhid", "-i eth0 -p pw -a 192.0.2.50",
          "You must supply a valid virtual host id"),
    fails("checks_in_ucarp_order_password", "-i eth0 -v 1 -b 0 -s 192.0.2.1 -a 192.0.2.50",
          "You must supply a password"),
    fails("vhid_garbage", S + " -v abc", "Invalid number for vhid: [abc]",
          c_text="vhid must be between 1 and 255."),
    fails("vhid_bad_octal", S + " -v 08", "Invalid number for vhid: [08]",
          c_text="vhid must be between 1 and 255."),
    fails("vhid_empty", S + " --vhid=", "Invalid number for vhid: []",
          c_text="vhid must be between 1 and 255."),
    fails("advbase_wrapping_to_zero", S + " -b 256", "advbase must be between 0 and 255",
          c_text="You must supply an advertisement time base"),
    fails("deadratio_wrapping_to_zero", S + " -r 4294967296",
          "deadratio must be between 1 and 4294967295", c_text="Dead ratio can't be zero"),
    fails("interface_name_too_long", "-i 0123456789abcdef -s 192.0.2.1 -v 1 -p pw -a 192.0.2.50",
          "Interface name too long", c_rc=2),
    fails("no_interface_at_all", "-s 192.0.2.1 -v 1 -p pw -a 192.0.2.50",
          "You must supply a network interface", c_check=False, no_default_interface=True),
    # ---- where ucarp shrugs (help + exit 0) or silently misreads, we refuse
    better(fails("unknown_long_option", S + " --bogus", "unrecognized option '--bogus'"), HELP,
           "ucarp prints the help and exits 0: a typo would look like a clean start"),
    better(fails("unknown_short_option", S + " -q", "invalid option -- 'q'"), HELP,
           "same"),
    better(fails("ambiguous_prefix", S + " --d",
                 "option '--d' is ambiguous; possibilities: "
                 "'--downscript' '--deadratio' '--debug' '--daemonize'"), HELP, "same"),
    better(fails("ambiguous_prefix_value_not_echoed", S + " --p=secret",
                 "option '--p' is ambiguous; possibilities: "
                 "'--pass' '--preempt' '--passfile'"), HELP,
           "same; and the value (maybe the password) is not repeated"),
    better(fails("missing_value_short", S + " -v", "option requires an argument -- 'v'"), HELP,
           "same"),
    better(fails("missing_value_long", S + " --vhid", "option '--vhid' requires an argument"),
           HELP, "same"),
    better(fails("flag_given_a_value", S + " --preempt=1",
                 "option '--preempt' doesn't allow an argument"), HELP, "same"),
    better(fails("help_given_a_value", "--help=x", "option '--help' doesn't allow an argument"),
           HELP, "same"),
    better(fails("m_with_bad_address", S + " -m foo", "Invalid address: [foo]"), HELP,
           "ucarp lacks -m"),
    better(fails("vhid_trailing_garbage", S + " -v 5x", "Invalid number for vhid: [5x]"), RUNS,
           "ucarp silently reads 5"),
    better(fails("advskew_garbage", S + " -k abc", "Invalid number for advskew: [abc]"), RUNS,
           "ucarp silently reads 0"),
    better(fails("advbase_garbage", S + " -b abc -k 5", "Invalid number for advbase: [abc]"),
           RUNS, "ucarp silently reads 0 and advertises every 5/256 s"),
    better(fails("advskew_wraps", S + " -k 256", "advskew must be between 0 and 255"), RUNS,
           "ucarp silently uses 0"),
    better(fails("advbase_wraps", S + " -b 300", "advbase must be between 0 and 255"), RUNS,
           "ucarp silently uses 44"),
    better(fails("advskew_negative", S + " -k -1", "advskew must be between 0 and 255"), RUNS,
           "ucarp silently uses 255"),
    better(fails("deadratio_negative", S + " -r -1", "deadratio must be between 1 and 4294967295"),
           RUNS, "ucarp silently uses 4294967295"),
    # ---- help
    shows_help("no_arguments", ""),
    shows_help("short_help", "-h"),
    shows_help("long_help", "--help"),
    shows_help("long_help_prefix", "--he"),
    shows_help("long_help_one_letter", "--h"),
    shows_help("help_in_flag_cluster", "-Ph"),
    shows_help("help_first_wins", "-h -v 300"),
    shows_help("help_after_valid_options", S + " -h"),
    shows_help("help_before_unknown_option", "-h --bogus"),
]


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Password files the rows refer to as {name}."""
    root = tmp_path_factory.mktemp("passfiles")
    contents = {"pw1": b"filepw\nsecond line\n", "pwempty": b"", "pwnl": b"\n",
                "pwcrlf": b"crlf\r\n", "pwnonl": b"nonl"}
    paths = {}
    for name, data in contents.items():
        (root / name).write_bytes(data)
        paths[name] = str(root / name)
    (root / "pwdir").mkdir()
    paths["pwdir"] = str(root / "pwdir")
    paths["missing"] = str(root / "no-such-file")
    return paths


def argv_of(row: Row, files: Mapping[str, str]) -> list[str]:
    return [word.format(**files) for word in shlex.split(row.cmd)]


def test_table_is_big_and_well_formed() -> None:
    ids = [row.id for row in ROWS]
    assert len(ROWS) >= 40
    assert len(ids) == len(set(ids))
    for row in ROWS:
        assert row.expect in (RUNS, FAILS, HELP)
        assert (row.expect == FAILS) == bool(row.error), row.id
        assert row.c is None or (row.c != row.expect and row.why), row.id
    daemonized = [row.cmd for row in ROWS if "-B" in shlex.split(row.cmd)]
    assert len(daemonized) == len(set(daemonized))  # told apart by their command lines


def _parse(row: Row, files: Mapping[str, str]) -> Config | HelpRequested:
    def default_interface() -> str | None:
        return None if row.no_default_interface else "eth0"

    return parse_args(argv_of(row, files), default_interface=default_interface)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_row_with_our_parser(row: Row, files: dict[str, str]) -> None:
    if row.expect == FAILS:
        with pytest.raises(ConfigError) as info:
            _parse(row, files)
        assert str(info.value) == row.error.format(**files)
        assert "\n" not in str(info.value)
        return
    result = _parse(row, files)
    if row.expect == HELP:
        assert isinstance(result, HelpRequested)
        return
    assert isinstance(result, Config)
    for name, want in row.fields.items():
        got = getattr(result, name)
        if isinstance(got, IPv4Address):
            got = str(got)
        assert got == want, name


def test_default_interface_asked_only_when_needed() -> None:
    asked: list[int] = []

    def default_interface() -> str | None:
        asked.append(1)
        return "eth9"

    cfg = parse_args(shlex.split(S), default_interface=default_interface)
    assert isinstance(cfg, Config) and cfg.interface == "eth0" and not asked
    cfg = parse_args(shlex.split(S)[2:], default_interface=default_interface)
    assert isinstance(cfg, Config) and cfg.interface == "eth9" and asked == [1]


def test_vip_kept_as_typed_and_device_from_label() -> None:
    cfg = parse_args(shlex.split(NO_ADDR + " -i eth0:carp0 -a 198.51.100.7"),
                     default_interface=lambda: None)
    assert isinstance(cfg, Config)
    assert cfg.addr_text == "198.51.100.7" and cfg.addr == IPv4Address("198.51.100.7")
    assert cfg.device == "eth0"


def test_password_is_the_bytes_typed() -> None:
    cfg = parse_args(shlex.split(S) + ["-p", "pässwörd"], default_interface=lambda: None)
    assert isinstance(cfg, Config)
    assert cfg.password == "pässwörd".encode()
    with pytest.raises(ConfigError, match="Password too long"):
        parse_args(shlex.split(S) + ["-p", "é" * 10], default_interface=lambda: None)  # 20 bytes


S6 = "-i eth0 -s 2001:db8::1 -v 1 -p pw -a 2001:db8::100"


def _parsed(cmd: str) -> Config:
    result = parse_args(shlex.split(cmd), default_interface=lambda: None)
    assert isinstance(result, Config)
    return result


@pytest.mark.parametrize(("cmd", "peers"), [
    (S + " --peer=192.0.2.2 --peer 192.0.2.3", ("192.0.2.2", "192.0.2.3")),
    (S + " --peer=192.0.2.2 --peer=192.0.2.2", ("192.0.2.2",)),  # once is enough
    (S6 + " --peer=2001:db8::2", ("2001:db8::2",)),
    (S6 + " --peer 2001:db8::2 --peer=2001:db8::3", ("2001:db8::2", "2001:db8::3")),
    # getopt_long's abbreviations, as for every long option ("--pe" is --peer alone)
    (S6 + " --pe=2001:db8::2 --pee 2001:db8::3", ("2001:db8::2", "2001:db8::3")),
    # a link-local peer: its scope, when written, names the interface and is not kept
    (S6 + " --peer=fe80::2%eth0 --peer=fe80::3", ("fe80::2", "fe80::3")),
    (S6 + " -i eth0:carp0 --peer=fe80::2%eth0", ("fe80::2",)),
    (S6 + " --peer=fe80::2%eth0 --peer=fe80::2", ("fe80::2",)),
    (S6.replace("-s 2001:db8::1", "-s fe80::1%eth0") + " --peer=fe80::2%eth0", ("fe80::2",)),
])
def test_peers_of_either_family(cmd: str, peers: tuple[str, ...]) -> None:
    cfg = _parsed(cmd)
    assert tuple(str(p) for p in cfg.peers) == peers
    assert all(getattr(p, "scope_id", None) is None for p in cfg.peers)
    assert all(p.version == cfg.addr.version for p in cfg.peers)
    assert cfg.nomcast is False  # unicast is not broadcast: the port keys on peers


@pytest.mark.parametrize(("cmd", "error"), [
    (S6 + " --peer=192.0.2.2", "Peer address [192.0.2.2] is IPv4, the virtual address "
     "[2001:db8::100] IPv6: use one family"),
    (S + " --peer=2001:db8::2", "Peer address [2001:db8::2] is IPv6, the virtual address "
     "[192.0.2.50] IPv4: use one family"),
    (S6 + " --peer=ff02::12", "Invalid peer address: [ff02::12] (a unicast address)"),
    (S6 + " --peer=ff02::1", "Invalid peer address: [ff02::1] (a unicast address)"),
    (S6 + " --peer=::1", "Invalid peer address: [::1] (a unicast address)"),
    (S6 + " --peer=::", "Invalid peer address: [::] (a unicast address)"),
    (S6 + " --peer=2001:db8::zz", "Invalid peer address: [2001:db8::zz]"),
    (S6 + " --peer=2001:db8::1", "Invalid peer address: [2001:db8::1] (this host's own)"),
    (S6.replace("-s 2001:db8::1", "-s fe80::1%eth0") + " --peer=fe80::1",
     "Invalid peer address: [fe80::1%eth0] (this host's own)"),
    (S6 + " --peer=fe80::2%lo", "Peer address [fe80::2%lo] is scoped to [lo], not to [eth0]"),
    (S6 + " --peer=2001:db8::2 -M",
     "--nomcast is for IPv4: IPv6 adverts go to ff02::12 (or to each --peer)"),
    (S6 + " -M", "--nomcast is for IPv4: IPv6 adverts go to ff02::12 (or to each --peer)"),
    (S + " --peer=192.0.2.2 -M", "--peer sends unicast adverts: -M and --mcast mean nothing then"),
])
def test_bad_peers_are_one_line(cmd: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_args(shlex.split(cmd), default_interface=lambda: None)
    assert str(info.value) == error


@pytest.mark.parametrize("value", range(256))
def test_advskew_accepts_every_c_spelling(value: int) -> None:
    for text in (str(value), hex(value), f"0{value:o}", f"0X{value:X}"):
        cfg = parse_args(shlex.split(S) + ["-k", text], default_interface=lambda: None)
        assert isinstance(cfg, Config) and cfg.advskew == value, text


@pytest.mark.parametrize(
    "name", ["daemon", "user", "auth", "authpriv", "cron", "ftp", "kern", "lpr", "mail", "mark",
             "news", "security", "syslog", "uucp", "none", "NONE", "Daemon"]
    + [f"local{n}" for n in range(8)],
)
def test_facility_known(name: str) -> None:
    assert facility_known(name)


@pytest.mark.parametrize("name", ["", "bogus", "local8", "daemon ", "err", "warning"])
def test_facility_unknown(name: str) -> None:
    assert not facility_known(name)


def test_usage_shape() -> None:
    lines = USAGE.splitlines()
    assert lines[0] == f"pyucarp {__version__}"
    tail = USAGE[USAGE.index("pyucarp extensions:"):]
    assert "--pidfile=<file>" in tail and "--statedir=<dir>" in tail
    assert USAGE.endswith("\n")


_SAMPLE_VALUES = {"interface": "eth0", "srcip": "192.0.2.1", "mcast": "224.0.0.18",
                  "vhid": "1", "pass": "pw", "passfile": "", "addr": "192.0.2.50",
                  "advbase": "1", "advskew": "0", "upscript": "/x", "downscript": "/y",
                  "deadratio": "3", "facility": "daemon", "xparam": "v",
                  "pidfile": "/run/x.pid", "statedir": "/tmp/x",
                  "script-timeout": "5", "track-script": "pidof nginx",
                  "track-interval": "0.5", "track-timeout": "0.4", "track-fall": "3",
                  "track-rise": "2", "track-interface": "eth1", "track-weight": "50",
                  "notify": "/usr/local/sbin/notify", "peer": "192.0.2.2"}


def test_every_documented_option_is_accepted(files: dict[str, str]) -> None:
    documented = re.findall(r"^--([\w-]+)(=<\w+>)?(?: \(-(\w)[ )])?", USAGE, re.MULTILINE)
    assert len(documented) == 37
    for long, takes_value, short in documented:
        value = files["pw1"] if long == "passfile" else _SAMPLE_VALUES.get(long, "")
        values = [value] if takes_value else []
        spellings = [[f"--{long}", *values]] + ([[f"-{short}", *values]] if short else [])
        for spelling in spellings:
            result = parse_args(shlex.split(S) + spelling, default_interface=lambda: None)
            assert isinstance(result, HelpRequested if long == "help" else Config), spelling


@pytest.mark.cucarp
def test_usage_matches_c_help() -> None:
    out = subprocess.run([UCARP, "--help"], capture_output=True, text=True, timeout=10).stdout
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("--interface="))
    last = max(i for i, line in enumerate(lines) if "--upscript=/etc/vip-up.sh" in line)
    body = "\n".join(lines[first : last + 1])
    assert body in USAGE
    assert USAGE.index(body) == len(f"pyucarp {__version__}\n\n")


# --------------------------------------------------------------------------- the C binary


@dataclass(frozen=True)
class COutcome:
    outcome: str
    rc: int | None
    stdout: str
    stderr: str


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _netns_pids(netns: str) -> list[int]:
    return [int(tok) for tok in _ip("netns", "pids", netns).stdout.split() if tok.isdigit()]


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _kill_and_wait(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)


@pytest.fixture(scope="session")
def c_netns() -> Iterator[str]:
    """One namespace for the whole session with eth0 = 192.0.2.1/24 up."""
    if os.geteuid() != 0 or shutil.which("ip") is None or not os.access(UCARP, os.X_OK):
        pytest.skip("needs root, iproute2 and the C ucarp")
    # pyu<pid>-<hex>-: the pattern the shared lab cleans up after runs that died
    name = f"pyu{os.getpid()}-{secrets.token_hex(3)}-opt"
    if _ip("netns", "add", name).returncode != 0:
        pytest.skip("cannot create a network namespace")
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        if _ip("-n", name, "link", "add", "eth0", "type", "dummy").returncode != 0:
            # no dummy driver: a veth pair with both ends inside the namespace
            made = _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
            assert made.returncode == 0, made.stderr
            _ip("-n", name, "link", "set", "eth0p", "up")
        assert _ip("-n", name, "addr", "add", "192.0.2.1/24", "dev", "eth0").returncode == 0
        assert _ip("-n", name, "link", "set", "eth0", "up").returncode == 0
        yield name
    finally:
        for _ in range(20):
            pids = _netns_pids(name)
            if not pids:
                break
            for pid in pids:
                _kill_and_wait(pid)
        _ip("netns", "del", name)


def _find_daemon(netns: str, args: list[str], deadline: float) -> int | None:
    """The detached ucarp started with ``args`` (-B), if it is still alive at ``deadline``."""
    wanted = b"\0".join(os.fsencode(a) for a in [UCARP, *args]) + b"\0"
    found = None
    while True:
        for pid in _netns_pids(netns):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == wanted:
                    found = pid
            except OSError:
                pass
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if found is None:
        return None
    alive = _alive(found)
    _kill_and_wait(found)
    return found if alive else None


def _run_c(netns: str, args: list[str]) -> COutcome:
    """Start the C ucarp with ``args`` in ``netns`` and classify what it did within C_WAIT_S."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # ip netns exec execs ucarp in place: proc.pid is ucarp's pid
        proc = subprocess.Popen(["ip", "netns", "exec", netns, UCARP, *args],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            rc: int | None = proc.wait(timeout=C_WAIT_S)
        except subprocess.TimeoutExpired:
            rc = None
            proc.kill()
            proc.wait(timeout=5)
        out.seek(0)
        stdout = out.read().decode(errors="replace")
        outcome = RUNS if rc is None else FAILS
        if rc == 0 and "Sample usage:" in stdout:
            outcome = HELP
        elif rc == 0 and _find_daemon(netns, args, start + C_WAIT_S) is not None:
            outcome = RUNS  # -B: the foreground exits 0 at once, the daemon lives on
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return COutcome(outcome, rc, stdout, stderr)


@pytest.fixture(scope="session")
def c_results(c_netns: str, files: dict[str, str]) -> dict[str, COutcome]:
    """Every comparable row run once through the C ucarp, a few at a time."""
    rows = [row for row in ROWS if row.c_check]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda row: _run_c(c_netns, argv_of(row, files)), rows)
        return {row.id: result for row, result in zip(rows, results, strict=True)}


C_ROWS = [row for row in ROWS if row.c_check]


@pytest.mark.netns
@pytest.mark.cucarp
@pytest.mark.parametrize("row", C_ROWS, ids=[row.id for row in C_ROWS])
def test_row_with_c_ucarp(row: Row, c_results: dict[str, COutcome], files: dict[str, str]) -> None:
    got = c_results[row.id]
    assert got.outcome == row.c_expect, (got, row.why)
    if got.outcome == FAILS and row.c is None:
        assert got.rc == row.c_rc, got
        text = row.error if row.c_text is None else row.c_text
        assert f"[ERROR] {text.format(**files)}" in got.stderr, got


# --------------------------------------------------------------------------- argv scrubbing


def _proc_self_mem_writable() -> bool:
    """Whether this process may write its own argv area through /proc/self/mem."""
    try:
        stat = Path("/proc/self/stat").read_bytes()
        arg_start = int(stat[stat.rindex(b")") + 2 :].split()[45])
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(arg_start)
            first = mem.read(1)
            mem.seek(arg_start)
            mem.write(first)
    except (OSError, ValueError, IndexError):
        return False
    return True


_CHILD = (
    "import sys; sys.path.insert(0, sys.argv.pop(1));"
    "from pyucarp.config.options import scrub_password_from_argv as scrub; scrub();"
    "print('ready', flush=True); sys.stdin.read()"
)


def _child_cmdline(args: list[str]) -> bytes:
    """Start python -c that scrubs its argv, and read its /proc/PID/cmdline from outside."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(REPO), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the child prints at once or dies
        assert line == b"ready\n"
        return Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's argv memory needs root")
def test_scrub_hides_password_in_proc_cmdline() -> None:
    if not _proc_self_mem_writable():
        pytest.skip("/proc/self/mem is not writable here")
    args = ["-i", "eth0", "-p", "hunter2", "--pass=swordfish", "-Pzpopensesame", "-x", "keep",
            "--", "-p", "notanoption"]
    cmdline = _child_cmdline(args)
    words = cmdline.split(b"\0")[:-1]
    assert b"hunter2" not in cmdline and b"swordfish" not in cmdline
    assert b"opensesame" not in cmdline
    tail = words[-len(args):]
    assert tail == [b"-i", b"eth0", b"-p", b"xxxxxxx", b"--pass=xxxxxxxxx", b"-Pzpxxxxxxxxxx",
                    b"-x", b"keep", b"--", b"-p", b"notanoption"]


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's argv memory needs root")
def test_scrub_leaves_argv_without_password_alone() -> None:
    if not _proc_self_mem_writable():
        pytest.skip("/proc/self/mem is not writable here")
    args = ["-i", "eth0", "-o", "/etc/pw", "-v", "3"]
    assert _child_cmdline(args).split(b"\0")[-len(args) - 1 : -1] == [a.encode() for a in args]


def test_scrub_is_silent_without_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(options, "_PROC_SELF", tmp_path / "nothing-here")
    monkeypatch.setattr(sys, "argv", ["pyucarp", "-p", "secret"])
    scrub_password_from_argv()  # must neither raise nor write anything


def test_scrub_leaves_foreign_argv_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    before = Path("/proc/self/cmdline").read_bytes()
    # sys.argv no longer matches the argv area: nothing may be written
    monkeypatch.setattr(sys, "argv", ["pyucarp", "-p", "not-in-memory"])
    scrub_password_from_argv()
    assert Path("/proc/self/cmdline").read_bytes() == before


def test_read_passfile_takes_the_first_line_up_to_a_nul(tmp_path: Path) -> None:
    # The one reader of -o files: the daemon's parser and ``pyucarp watch`` both use it.
    path = tmp_path / "pass"
    path.write_bytes(b"s3cret\nsecond line\n")
    assert options.read_passfile(str(path)) == b"s3cret"
    path.write_bytes(b"ab\0cd\r\n")
    assert options.read_passfile(str(path)) == b"ab"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="unexpected end of file"):
        options.read_passfile(str(path))
