"""Reading the init script's files as the init script does: ``pyucarp.config.interface_files``.

The files are sourced by ``/bin/sh``, so everything a shell fragment may do (quoting,
``$(...)``, comments, ``IFS``, exports) must come out as the init script would see it. The
strongest check runs the real ``init.d/ucarp start`` with a recording
``start-stop-daemon`` in place of the real one (in a private mount namespace) and compares
its daemons' arguments, environment and pass files with ours. ``pyucarp run --check`` is
tested through the command once the command exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyucarp.config import interface_files as itf
from pyucarp.config.interface_files import (
    BadFile,
    InstanceFile,
    address_list,
    check_main,
    list_interface_files,
    load_directory,
    load_file,
    read_defaults,
)

REPO = Path(__file__).resolve().parent.parent
INIT_SCRIPT = REPO / "init.d" / "ucarp"
DASH = shutil.which("dash")
SECRET = "hunter2-Secret"

GOOD = (
    "INTERFACE=eth0:carp0\n"
    "INSTANCE_ID=42\n"
    f"PASSWORD={SECRET}\n"
    "VIRTUAL_ADDRESS=192.0.2.100\n"
    "SOURCE_ADDRESS=192.0.2.1\n"
)


class Tree:
    """A defaults file, executable up/down scripts and an interface directory in tmp_path."""

    def __init__(self, root: Path, defaults: str = "") -> None:
        self.root = root
        self.dir = root / "interface"
        self.dir.mkdir()
        self.up = self._script("up.sh")
        self.down = self._script("down.sh")
        self.defaults = root / "default-ucarp"
        self.defaults.write_text(f"UPSCRIPT={self.up}\nDOWNSCRIPT={self.down}\n" + defaults)

    def _script(self, name: str) -> str:
        path = self.root / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
        return str(path)

    def file(self, name: str, text: str = GOOD) -> Path:
        path = self.dir / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    def load(self, name: str, text: str | None = None, **kw: float) -> InstanceFile | BadFile:
        path = self.file(name, GOOD if text is None else text)
        return load_file(str(path), str(self.defaults), **kw)

    def good(self, name: str, text: str | None = None) -> InstanceFile:
        item = self.load(name, text)
        assert isinstance(item, InstanceFile), item
        return item

    def bad(self, name: str, text: str) -> str:
        item = self.load(name, text)
        assert isinstance(item, BadFile), item
        assert item.name == name and item.path == str(self.dir / name)
        assert "\n" not in item.problem
        return item.problem


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


# --------------------------------------------------------------------------- variables


def test_variables_and_the_init_scripts_defaults(tree: Tree) -> None:
    item = tree.good("ucarp0")
    assert item.argv == (
        "-z", "-b", "1", "-i", "eth0:carp0", "-v", "42", "-o", "/run/ucarp/ucarp0.pass",
        "-a", "192.0.2.100", "-s", "192.0.2.1", "-u", tree.up, "-d", tree.down,
    )
    c = item.config
    assert (c.interface, c.device, c.vhid) == ("eth0:carp0", "eth0", 42)
    assert c.password == SECRET.encode()
    assert (str(c.addr), str(c.srcip), c.advbase, c.shutdown) == \
        ("192.0.2.100", "192.0.2.1", 1, True)
    assert (c.upscript, c.downscript, c.daemonize, c.pidfile, c.statedir) == (
        tree.up, tree.down, False, None, None)
    env = dict(item.script_env)
    assert env["IFCONFIG"] == "/sbin/ifconfig" and env["LC_ALL"] == "C"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/sbin:/usr/sbin:/bin:/usr/bin"
    assert "VIRTUAL_NETMASK" not in env and "VIRTUAL_BROADCAST" not in env  # unset: not exported


def test_settings_from_the_defaults_file(tmp_path: Path) -> None:
    tree = Tree(tmp_path, 'OPTIONS="-z -P -k 7"\nUCARP_RUNDIR=/run/elsewhere\n'
                          "UCARP_STATEDIR=/var/lib/pyucarp\nIFCONFIG=\n"
                          # The defaults file cannot set a file's variables: they are cleared.
                          "PASSWORD=from-defaults\nINSTANCE_ID=9\nUCARP_BASE=7\n")
    item = tree.good("x")
    assert item.argv[:3] == ("-z", "-P", "-k")
    assert ("-o", "/run/elsewhere/x.pass") == item.argv[10:12]
    assert "--statedir=/var/lib/pyucarp" in item.argv and item.config.statedir == "/var/lib/pyucarp"
    assert item.config.preempt and item.config.advskew == 7
    assert item.config.password == SECRET.encode() and item.config.vhid == 42
    assert item.config.advbase == 1  # UCARP_BASE defaults to 1 in each file
    assert dict(item.script_env)["IFCONFIG"] == ""  # set, even empty: exported
    assert read_defaults(str(tree.defaults)).interface_dir == "/etc/ucarp/interface"
    tree.defaults.write_text(tree.defaults.read_text() + f"R_INTERFACE={tree.dir}\nrun_ucarp=0\n")
    assert read_defaults(str(tree.defaults)) == itf.Defaults(str(tree.dir), "0")


def test_without_a_defaults_file_the_shipped_scripts_are_used(tree: Tree) -> None:
    path = tree.file("x")
    item = load_file(str(path), str(tree.root / "no-such-defaults"))
    # /etc/ucarp/vip-up.sh is the init script's default; ucarp refuses a missing script.
    if not os.access("/etc/ucarp/vip-up.sh", os.X_OK):
        assert isinstance(item, BadFile)
        assert item.problem.startswith("Script [/etc/ucarp/vip-up.sh] is not an executable file")


def test_the_callers_environment_does_not_leak_in(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("PASSWORD", "SOURCE_ADDRESS", "VIRTUAL_NETMASK", "OPTIONS", "UPSCRIPT"):
        monkeypatch.setenv(var, "from-the-caller")
    problem = tree.bad("x", "INTERFACE=eth0\nINSTANCE_ID=3\nVIRTUAL_ADDRESS=192.0.2.100\n")
    assert problem == "PASSWORD is not set; SOURCE_ADDRESS is not set"
    item = tree.good("y")
    assert "from-the-caller" not in repr(item) + repr(item.config)


def test_quoting_expansions_and_comments(tree: Tree) -> None:
    item = tree.good("q", (
        "# a comment line\n"
        "INTERFACE=eth0   # trailing comment\n"
        "INSTANCE_ID=$((40 + 2))\n"
        "PASSWORD='a b#c'\n"
        'VIRTUAL_ADDRESS="192.0.2.$(echo 100)"\n'
        "net=192.0.2\n"
        "SOURCE_ADDRESS=${net}.1\n"
        "VIRTUAL_NETMASK=255.255.\\\n255.0\n"
        'VIRTUAL_BROADCAST=`echo 192.0.2.255`\n'
        "export EXTRA='x y'\n"
        "export PASSWORD\n"
    ))
    c = item.config
    assert (c.vhid, c.password) == (42, b"a b#c")
    assert (str(c.addr), str(c.srcip)) == ("192.0.2.100", "192.0.2.1")
    env = dict(item.script_env)
    assert env["VIRTUAL_NETMASK"] == "255.255.255.0" and env["VIRTUAL_BROADCAST"] == "192.0.2.255"
    assert env["EXTRA"] == "x y"
    assert "PASSWORD" not in env and "net" not in env  # exported password never passed on


def test_per_file_options_replace_the_global_ones(tmp_path: Path) -> None:
    tree = Tree(tmp_path, 'OPTIONS="-z -P"\n')
    assert tree.good("global").argv[:3] == ("-z", "-P", "-b")
    replaced = tree.good("own", GOOD + 'OPTIONS="-k 20 -n"\n')
    assert replaced.argv[:4] == ("-k", "20", "-n", "-b")
    assert not replaced.config.shutdown and not replaced.config.preempt and replaced.config.neutral
    empty = tree.good("empty", GOOD + "OPTIONS=\n")
    assert empty.argv[0] == "-b" and not empty.config.shutdown
    # Split by the shell as "set -- $OPTIONS" does: quotes inside the value are not syntax,
    # and the file's IFS applies.
    quoted = tree.good("quoted", GOOD + "OPTIONS=\"-x 'a b'\"\n")
    assert quoted.argv[:3] == ("-x", "'a", "b'") and quoted.config.xparam == "'a"
    ifs = tree.good("ifs", GOOD + 'OPTIONS="-z:-k:9"\nIFS=:\n')
    assert ifs.argv[:3] == ("-z", "-k", "9") and ifs.config.advskew == 9
    # A file may also override the scripts and the state directory, as with the init script.
    scripts = tree.good("scripts", GOOD + "UPSCRIPT=\nUCARP_STATEDIR=/tmp/st\n")
    assert "-u" not in scripts.argv and scripts.config.upscript is None
    assert scripts.config.statedir == "/tmp/st"


# A check command with everything a shell could trip on: blanks, both quotes, a pipe, a
# comment sign, a glob, a dollar. It must reach the daemon as ONE word, unexpanded.
TRICKY_CHECK = """curl -fsS "http://127.0.0.1/h?a=1&b=2" | grep -q 'ok' # $HOME /tmp/*"""


def test_health_variables_become_long_options(tmp_path: Path) -> None:
    # The defaults file cannot set them (they are a file's variables, cleared before it).
    tree = Tree(tmp_path, "TRACK_SCRIPT=from-defaults\nNOTIFY=/nonexistent\nTRACK_WEIGHT=9\n")
    quoted = TRICKY_CHECK.replace("'", "'\\''")
    item = tree.good("h", GOOD + (
        f"TRACK_SCRIPT='{quoted}'\n"
        "TRACK_SCRIPT_3=\"test -d /tmp/*\"\n"          # _2 missing: the others still count
        "TRACK_SCRIPT_9=\n"                            # empty: no option
        "TRACK_INTERVAL=0.5\nTRACK_TIMEOUT=0.25\nTRACK_FALL=3\nTRACK_RISE=4\n"
        "TRACK_INTERFACE=\"  eth1\teth2\n dummy*  \"\n"  # blanks of any kind; no glob
        "IFS=:\n"                                       # the file's IFS does not split them
        f"TRACK_WEIGHT=20\nNOTIFY={tree.up}\n"
    ))
    assert item.argv[item.argv.index("-d") + 2:] == (
        f"--track-script={TRICKY_CHECK}", "--track-script=test -d /tmp/*",
        "--track-interval=0.5", "--track-timeout=0.25", "--track-fall=3", "--track-rise=4",
        "--track-interface=eth1", "--track-interface=eth2", "--track-interface=dummy*",
        "--track-weight=20", f"--notify={tree.up}",
    )
    c = item.config
    assert c.track_scripts == (TRICKY_CHECK, "test -d /tmp/*")
    assert (c.track_interval, c.track_timeout, c.track_fall, c.track_rise) == (0.5, 0.25, 3, 4)
    assert c.track_interfaces == ("eth1", "eth2", "dummy*")
    assert (c.track_weight, c.notify, c.tracked) == (20, tree.up, True)
    # None set: no option at all, health untracked.
    plain = tree.good("plain")
    assert not any(w.startswith(("--track", "--notify")) for w in plain.argv)
    assert not plain.config.tracked and plain.config.notify is None
    # A changed check is a changed file (a reload restarts its instance).
    again = tree.good("h2", GOOD + "TRACK_SCRIPT='true'\n")
    assert tree.good("h2", GOOD + "TRACK_SCRIPT='false'\n").digest != again.digest


def test_health_variables_are_checked_as_the_daemon_checks_them(tree: Tree) -> None:
    assert tree.bad("fall", GOOD + "TRACK_FALL=0\n") == "--track-fall must be between 1 and 1000"
    assert tree.bad("rise", GOOD + "TRACK_RISE=x\n") == "Invalid number for rise: [x]"
    assert tree.bad("weight", GOOD + "TRACK_WEIGHT=256\n") == \
        "--track-weight must be between 1 and 255"
    assert tree.bad("interval", GOOD + "TRACK_INTERVAL=0\n") == \
        "Invalid check interval: [0] (seconds, 0 < t <= 86400)"
    assert tree.bad("blank", GOOD + "TRACK_SCRIPT='  '\n") == \
        "--track-script needs a non-empty command"
    assert tree.bad("iface", GOOD + f"TRACK_INTERFACE={'x' * 16}\n") == \
        f"Interface name too long: [{'x' * 16}]"
    assert tree.bad("notify", GOOD + f"NOTIFY={tree.root}/nope\n") == \
        f"Script [{tree.root}/nope] is not an executable file"
    # Unset under "set -u": the init script's code reads them with ${VAR-}.
    assert isinstance(tree.load("strict", "set -u\n" + GOOD), InstanceFile)


def test_vhid_with_a_leading_zero_is_read_as_ucarp_reads_it(tree: Tree) -> None:
    # The init script accepts 010 (decimal 10 to test(1)); ucarp's strtoul reads octal.
    item = tree.good("octal", GOOD.replace("INSTANCE_ID=42", "INSTANCE_ID=010"))
    assert "010" in item.argv and item.config.vhid == 8


# --------------------------------------------------------------------------- broken files


def test_files_that_do_not_source(tree: Tree) -> None:
    # sh's own message, with the line it names (dash: where the file ended).
    assert re.fullmatch(r"line [23]: Syntax error: Unterminated quoted string",
                        tree.bad("syntax", "INTERFACE=eth0\nPASSWORD='open\n"))
    assert tree.bad("exit1", GOOD + "exit 1\n") == "reading it ended the shell (exit in it?)"
    assert tree.bad("exit0", GOOD + "exit 0\n") == "reading it ended the shell (exit in it?)"
    assert tree.bad("unset", "set -u\nINTERFACE=$NOPE\n") == "line 2: NOPE: parameter not set"
    # A failing command does not end the shell: the init script reads on, and so do we.
    assert isinstance(tree.load("noise", "no-such-command\n" + GOOD), InstanceFile)


def test_a_hanging_file_is_killed(tree: Tree) -> None:
    item = tree.load("slow", GOOD + "sleep 30\n", timeout=0.5)
    assert isinstance(item, BadFile)
    assert item.problem == "reading it took longer than 0.5 s (killed)"
    # A background child holding the shell's output does not hang us either.
    item = tree.load("bg", GOOD + "sleep 30 &\n", timeout=0.5)
    assert isinstance(item, BadFile) or isinstance(item, InstanceFile)


def test_the_init_scripts_checks_and_phrases(tree: Tree) -> None:
    assert tree.bad("missing", "INTERFACE=eth0\n") == (
        "INSTANCE_ID is not set; PASSWORD is not set; VIRTUAL_ADDRESS is not set; "
        "SOURCE_ADDRESS is not set")
    assert tree.bad("vhid", GOOD.replace("=42", "=300")) == \
        "INSTANCE_ID [300] is not a number from 1 to 255"
    assert tree.bad("hex", GOOD.replace("=42", "=0x10")) == \
        "INSTANCE_ID [0x10] is not a number from 1 to 255"
    assert tree.bad("base", GOOD + "UCARP_BASE=256\n") == \
        "UCARP_BASE [256] is not a number from 0 to 255"
    assert tree.bad("mask", GOOD + "VIRTUAL_NETMASK=255.255.255.00\n") == \
        "VIRTUAL_NETMASK [255.255.255.00] is neither an IPv4 netmask nor a prefix length"
    assert tree.bad("blank", GOOD.replace("eth0:carp0", "'eth0 x'")) == \
        "INTERFACE [eth0 x] contains blanks"
    assert tree.bad("pidfile", GOOD + "UCARP_PIDFILE=run/x.pid\n") == \
        "UCARP_PIDFILE [run/x.pid] is not an absolute path"


# --------------------------------------------------------------------------- address lists


def test_an_address_list_gives_one_a_per_address_in_order(tree: Tree) -> None:
    # Blanks of any kind between them, split whatever the file's IFS, never globbed.
    item = tree.good("list", GOOD.replace("VIRTUAL_ADDRESS=192.0.2.100",
                                          "VIRTUAL_ADDRESS=' 192.0.2.100\t198.51.100.7\n"
                                          "  192.0.2.101 '\nIFS=:"))
    at = item.argv.index("-o") + 2
    assert item.argv[at:at + 8] == ("-a", "192.0.2.100", "-a", "198.51.100.7",
                                    "-a", "192.0.2.101", "-s", "192.0.2.1")
    c = item.config
    assert str(c.addr) == "192.0.2.100"  # the first: the one in the HMAC
    assert [str(a) for a in c.extra_addrs] == ["198.51.100.7", "192.0.2.101"]
    # Another order is another instance (the scripts run in that order).
    again = tree.good("list2", GOOD.replace("VIRTUAL_ADDRESS=192.0.2.100",
                                            "VIRTUAL_ADDRESS='192.0.2.101 192.0.2.100'"))
    assert str(again.config.addr) == "192.0.2.101" and again.digest != item.digest
    six = tree.good("six", GOOD.replace("VIRTUAL_ADDRESS=192.0.2.100",
                                        "VIRTUAL_ADDRESS='2001:db8::100 2001:DB8::101'")
                    .replace("SOURCE_ADDRESS=192.0.2.1", "SOURCE_ADDRESS=2001:db8::1")
                    + "VIRTUAL_NETMASK=64\n")
    assert [w for w in six.argv if ":" in w and w != "eth0:carp0"] == [
        "2001:db8::100", "2001:DB8::101", "2001:db8::1"]
    assert dict(six.script_env)["VIRTUAL_NETMASK"] == "64"
    assert address_list(" a\tb\n\nc  ") == ["a", "b", "c"]
    assert address_list("a\vb") == ["a\vb"]  # the shell's blanks only


def test_address_list_problems(tree: Tree) -> None:
    def with_vips(value: str, extra: str = "") -> str:
        return GOOD.replace("VIRTUAL_ADDRESS=192.0.2.100", f"VIRTUAL_ADDRESS='{value}'") + extra

    assert tree.bad("blank", with_vips(" \t ")) == "VIRTUAL_ADDRESS is not set"
    assert tree.bad("mixed", with_vips("192.0.2.100\n  2001:db8::100 192.0.2.101")) == (
        "VIRTUAL_ADDRESS [192.0.2.100 2001:db8::100 192.0.2.101] mixes IPv4 and IPv6 "
        "addresses")
    assert tree.bad("word", with_vips("192.0.2.100 192.0.2.300 x*")) == (
        "VIRTUAL_ADDRESS [192.0.2.300] is not an IPv4 or IPv6 address; "
        "VIRTUAL_ADDRESS [x*] is not an IPv4 or IPv6 address")
    # The daemon's own checks still apply to every address.
    assert tree.bad("mcast", with_vips("192.0.2.100 224.0.0.18")) == \
        "Invalid virtual address: [224.0.0.18]"
    # The same address twice is one address.
    twice = tree.good("twice", with_vips("192.0.2.100 192.0.2.100"))
    assert twice.argv.count("-a") == 2 and twice.config.extra_addrs == ()


def test_netmask_is_a_dotted_mask_or_a_prefix_length(tree: Tree) -> None:
    six = GOOD.replace("VIRTUAL_ADDRESS=192.0.2.100", "VIRTUAL_ADDRESS=2001:db8::100").replace(
        "SOURCE_ADDRESS=192.0.2.1", "SOURCE_ADDRESS=2001:db8::1")
    for text, mask in ((GOOD, "24"), (GOOD, "32"), (GOOD, "255.255.255.128"),
                       (GOOD, "255.255.255.255"), (six, "64"), (six, "128")):
        tree.good("ok", text + f"VIRTUAL_NETMASK={mask}\n")
    bad = {
        (GOOD, "33"): "is not a prefix length from 1 to 32",
        (GOOD, "0"): "is not a prefix length from 1 to 32",
        (GOOD, "024"): "is not a prefix length from 1 to 32",  # ip would read it as octal
        (six, "129"): "is not a prefix length from 1 to 128",
        (GOOD, "255.0.255.0"): "is neither an IPv4 netmask nor a prefix length",
        (GOOD, "0.0.0.0"): "is neither an IPv4 netmask nor a prefix length",
        (GOOD, "/24"): "is neither an IPv4 netmask nor a prefix length",
        (six, "255.255.255.0"): "is an IPv4 netmask: give IPv6 addresses a prefix length",
    }
    for (text, mask), phrase in bad.items():
        assert tree.bad("bad", text + f"VIRTUAL_NETMASK={mask}\n") == \
            f"VIRTUAL_NETMASK [{mask}] {phrase}", mask


def test_ucarps_own_checks_and_messages(tree: Tree) -> None:
    assert tree.bad("skew", GOOD + 'OPTIONS="-k 300"\n') == "advskew must be between 0 and 255"
    assert tree.bad("opt", GOOD + 'OPTIONS="--bogus"\n') == "unrecognized option '--bogus'"
    assert tree.bad("long", GOOD.replace(SECRET, "x" * 20)) == "Password too long"
    assert tree.bad("iface", GOOD.replace("eth0:carp0", "a" * 16)) == "Interface name too long"
    assert tree.bad("help", GOOD + "OPTIONS=-h\n") == \
        "OPTIONS ask for the help text (-h): nothing to run"
    # A password whose first line is empty: the pass file the init script writes says so.
    problem = tree.bad("nl", GOOD.replace(f"PASSWORD={SECRET}", 'PASSWORD="\nrest"'))
    assert problem == \
        "You must supply a password (passfile /run/ucarp/nl.pass starts with an empty line)"


def test_scripts_must_be_executable_files(tree: Tree) -> None:
    os.chmod(tree.up, 0o644)
    problem = tree.bad("x", GOOD)
    assert problem == f"Script [{tree.up}] is not an executable file"
    assert tree.bad("y", GOOD + f"DOWNSCRIPT={tree.root}\n") == (
        f"Script [{tree.up}] is not an executable file; "
        f"Script [{tree.root}] is not an executable file")


def test_a_broken_defaults_file_breaks_every_file(tree: Tree) -> None:
    tree.defaults.write_text('OPTIONS="-z\n')
    tree.file("a")
    tree.file("b")
    items = load_directory(str(tree.dir), str(tree.defaults))
    assert [type(i) for i in items] == [BadFile, BadFile]
    assert re.fullmatch(rf"defaults file {re.escape(str(tree.defaults))}: line [12]: Syntax error: "
                        "Unterminated quoted string", items[0].problem)  # type: ignore[union-attr]
    with pytest.raises(itf.ConfigError, match="Syntax error"):
        read_defaults(str(tree.defaults))
    tree.defaults.write_text("sleep 30\n")
    item = load_file(str(tree.dir / "a"), str(tree.defaults), timeout=0.5)
    late = "reading it took longer than 0.5 s (killed)"
    assert item == BadFile("a", str(tree.dir / "a"), f"defaults file {tree.defaults}: {late}")


def test_relative_paths(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    tree.file("a", GOOD + ". ./nothing-here\n")
    monkeypatch.chdir(tree.root)
    item = load_file("interface/a", "default-ucarp")
    # Read from /, as the init script: the file's own relative paths are relative to /.
    assert isinstance(item, BadFile) and item.path == "interface/a"
    assert item.problem == "line 6: .: cannot open ./nothing-here: No such file"
    assert isinstance(load_file("interface/b", "default-ucarp"), BadFile)  # gone
    tree.file("c")
    assert isinstance(load_file("interface/c", "default-ucarp"), InstanceFile)


# --------------------------------------------------------------------------- the directory


def test_order_and_what_is_skipped(tree: Tree) -> None:
    for name in ("b", "a", "A", "10", "9", ".hidden", "x~", "y.bak", "z.dpkg-old", "w.ucf-dist",
                 "v.rpmnew", "u.swp", "t.orig", "s.rpmsave"):
        tree.file(name)
    (tree.dir / "subdir").mkdir()
    (tree.dir / "link").symlink_to(tree.dir / "a")
    (tree.dir / "dangling").symlink_to(tree.dir / "nowhere")
    paths, skipped = list_interface_files(str(tree.dir))
    assert [Path(p).name for p in paths] == ["10", "9", "A", "a", "b", "link"]
    assert skipped == ["s.rpmsave", "t.orig", "u.swp", "v.rpmnew", "w.ucf-dist", "x~", "y.bak",
                       "z.dpkg-old"]
    with pytest.raises(itf.ConfigError, match="cannot read the interface directory"):
        list_interface_files(str(tree.root / "nope"))


def test_duplicate_virtual_hosts_are_all_refused(tree: Tree) -> None:
    tree.file("a")                                              # eth0:carp0, vhid 42
    tree.file("b", GOOD.replace("eth0:carp0", "eth0"))          # same device, same vhid
    tree.file("c", GOOD.replace("eth0:carp0", "eth1"))          # another link: fine
    tree.file("d", GOOD.replace("=42", "=43"))                  # another vhid: fine
    tree.file("e", GOOD.replace("=42", "=0x10"))                # broken: claims nothing
    tree.file("f", GOOD.replace("=42", "=052"))                 # octal 42: same vhid as a
    tree.file("g", GOOD.replace("=42", "=16"))                  # 16, which e does not claim
    items = load_directory(str(tree.dir), str(tree.defaults))
    assert [(i.name, type(i).__name__) for i in items] == [
        ("a", "BadFile"), ("b", "BadFile"), ("c", "InstanceFile"), ("d", "InstanceFile"),
        ("e", "BadFile"), ("f", "BadFile"), ("g", "InstanceFile")]
    path = {name: str(tree.dir / name) for name in "abf"}
    assert items[0].problem == f"vhid 42 on eth0 is also claimed by {path['b']}, {path['f']}"  # type: ignore[union-attr]
    assert items[1].problem == f"vhid 42 on eth0 is also claimed by {path['a']}, {path['f']}"  # type: ignore[union-attr]
    assert items[5].problem == f"vhid 42 on eth0 is also claimed by {path['a']}, {path['b']}"  # type: ignore[union-attr]


def test_digest_tells_changed_files_apart(tree: Tree) -> None:
    first = tree.good("a")
    assert tree.good("a").digest == first.digest
    reworded = "# reworded\n" + GOOD.replace("=", "='").replace("\n", "'\n")
    assert tree.good("a", reworded).digest == first.digest
    assert tree.good("renamed").digest == first.digest  # the instance, not the file name
    changed = [
        GOOD.replace(SECRET, SECRET + "x"),
        GOOD + "OPTIONS='-z -k 1'\n",
        GOOD + "VIRTUAL_NETMASK=255.255.255.0\n",  # only the scripts' environment differs
        GOOD + "export MORE=1\n",
        GOOD.replace("192.0.2.100", "192.0.2.101"),
    ]
    digests = {tree.good("a", text).digest for text in changed}
    assert len(digests) == len(changed) and first.digest not in digests
    assert SECRET not in first.digest


# --------------------------------------------------------------------------- the password


def test_the_password_is_in_no_problem_line_nor_argv(
    tree: Tree, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = {
        "dot": f"PASSWORD={SECRET}\n. /nonexistent/$PASSWORD\n",        # sh quotes it
        "vhid": GOOD + "INSTANCE_ID=$PASSWORD\n",                      # the init's phrase would
        "addr": GOOD + "VIRTUAL_BROADCAST=$PASSWORD\n",
        "opts": GOOD + 'OPTIONS="-k $PASSWORD"\n',                     # ucarp's message would
        "iface": GOOD + "INTERFACE=$PASSWORD\n" + "UCARP_PIDFILE=$PASSWORD\n",
    }
    for name, text in texts.items():
        problem = tree.bad(name, text)
        assert SECRET not in problem and "***" in problem, problem
    good = tree.good("good")
    assert not any(SECRET in word for word in good.argv)
    assert SECRET not in repr(good) and SECRET not in str(good.script_env)
    assert check_main(str(tree.dir), str(tree.defaults)) == 1
    out, err = capsys.readouterr()
    assert SECRET not in out + err and err.count("\n") == len(texts)


# --------------------------------------------------------------------------- --check


def test_check_main(tree: Tree, capsys: pytest.CaptureFixture[str]) -> None:
    tree.file("a")
    tree.file("b", GOOD.replace("=42", "=43"))
    tree.file("b~")
    assert check_main(str(tree.dir), str(tree.defaults)) == 0
    out, err = capsys.readouterr()
    assert out == f"{tree.dir}: 2 of 2 interface files good\n"
    assert err == f"{tree.dir / 'b~'}: ignored (backup file name)\n"

    tree.file("c", "INTERFACE=eth0\n")
    tree.file("d", GOOD)  # duplicate of a
    assert check_main(str(tree.dir), str(tree.defaults)) == 1
    out, err = capsys.readouterr()
    assert out == f"{tree.dir}: 1 of 4 interface files good\n"
    assert err.splitlines()[1:] == [
        f"{tree.dir / 'a'}: vhid 42 on eth0 is also claimed by {tree.dir / 'd'}",
        f"{tree.dir / 'c'}: INSTANCE_ID is not set; PASSWORD is not set; "
        "VIRTUAL_ADDRESS is not set; SOURCE_ADDRESS is not set",
        f"{tree.dir / 'd'}: vhid 42 on eth0 is also claimed by {tree.dir / 'a'}",
    ]

    # A script that is not executable is a problem for every file using it.
    for name in ("b~", "c", "d"):
        (tree.dir / name).unlink()
    os.chmod(tree.down, 0o600)
    assert check_main(str(tree.dir), str(tree.defaults)) == 1
    out, err = capsys.readouterr()
    assert err.count(f"Script [{tree.down}] is not an executable file") == 2

    empty = tree.root / "empty"
    empty.mkdir()
    assert check_main(str(empty), str(tree.defaults)) == 1
    assert capsys.readouterr().err == f"no interface file in {empty}\n"
    assert check_main(str(tree.root / "missing"), str(tree.defaults)) == 1
    assert "cannot read the interface directory" in capsys.readouterr().err


def _run_command_missing() -> str | None:
    """Why ``pyucarp run`` cannot be tested through the command yet, or None."""
    proc = subprocess.run([sys.executable, "-m", "pyucarp", "run", "--help"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or "--config-dir" not in proc.stdout + proc.stderr:
        return "`pyucarp run` is not available yet (`pyucarp run --help` has no --config-dir)"
    return None


RUN_MISSING = _run_command_missing()


@pytest.mark.skipif(RUN_MISSING is not None, reason=RUN_MISSING or "")
def test_check_through_the_command(tree: Tree) -> None:
    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pyucarp", "run", "--check", "--config-dir", str(tree.dir),
             "--defaults", str(tree.defaults)],
            capture_output=True, text=True, timeout=60, cwd=str(REPO))

    tree.file("a")
    good = check()
    assert good.returncode == 0 and good.stderr == "", good
    tree.file("b", f"PASSWORD={SECRET}\nINSTANCE_ID=999\n")
    bad = check()
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        f"{tree.dir / 'b'}: INTERFACE is not set; VIRTUAL_ADDRESS is not set; "
        "SOURCE_ADDRESS is not set; INSTANCE_ID [999] is not a number from 1 to 255"]
    assert SECRET not in bad.stdout + bad.stderr
    # A list of two families: one line, naming the file and the list.
    (tree.dir / "b").unlink()
    tree.file("mixed", GOOD.replace("VIRTUAL_ADDRESS=192.0.2.100",
                                    "VIRTUAL_ADDRESS='192.0.2.100\n2001:db8::100'"))
    mixed = check()
    assert mixed.returncode == 1
    assert mixed.stderr.splitlines() == [
        f"{tree.dir / 'mixed'}: VIRTUAL_ADDRESS [192.0.2.100 2001:db8::100] mixes IPv4 and "
        "IPv6 addresses"], mixed.stderr


# --------------------------------------------------------------------------- against init.d/ucarp

# A start-stop-daemon that records what the init script would start, then fails: the
# daemon's arguments after "--", its environment, and the pass file's contents.
_RECORDER = """#!/bin/sh
dir={record}
while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
shift
n=$(ls "$dir" | wc -l)
printf '%s\\0' "$@" > "$dir/$n.argv"
env -0 > "$dir/$n.env"
prev=
for arg; do
    [ "$prev" = -o ] && cat "$arg" > "$dir/$n.pass"
    prev=$arg
done
exit 1
"""

# Runs "$@" with $1 over /etc/default and $2 over /usr/local/sbin (first in the init
# script's PATH), in a private mount namespace.
_MOUNTED = ('mount --bind "$1" /etc/default && mount --bind "$2" /usr/local/sbin && '
            'shift 2 && exec "$@"')


def _initd_problem() -> str | None:
    if DASH is None:
        return "dash is not installed"
    if os.geteuid() != 0:
        return "needs root (a private mount namespace)"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not (os.path.isdir("/usr/local/sbin") and os.path.isdir("/etc/default")):
        return "/usr/local/sbin or /etc/default is missing"
    return None


COMPARED_FILES = {
    # The sample's shape: alias label, netmask, broadcast, its own options and base.
    "a": ("UCARP_PIDFILE=/var/run/a.pid\nUCARP_BASE=5\nINTERFACE=eth0:carp0\nINSTANCE_ID=11\n"
          "PASSWORD=change-me\nVIRTUAL_ADDRESS=192.0.2.101\nVIRTUAL_BROADCAST=192.0.2.255\n"
          "VIRTUAL_NETMASK=255.255.255.0\nSOURCE_ADDRESS=192.0.2.1\n"
          'OPTIONS="-z -k 20 -P"\n'),
    # Quoting, expansions, comments; the global OPTIONS.
    "b": ("# b\nINTERFACE=eth0 # the device\nINSTANCE_ID=$((6 * 2))\nPASSWORD='a b # c'\n"
          "VIRTUAL_ADDRESS=\"192.0.2.$(echo 102)\"\nSOURCE_ADDRESS=`echo 192.0.2.1`\n"),
    # Empty OPTIONS, no upscript, an exported variable, an octal vhid, the file's IFS.
    "c": ("INTERFACE=eth1\nINSTANCE_ID=010\nPASSWORD=p\nVIRTUAL_ADDRESS=192.0.2.103\n"
          "SOURCE_ADDRESS=192.0.2.1\nOPTIONS=\nUPSCRIPT=\nexport FROM_C=yes\n"),
    "d": ("INTERFACE=eth2\nINSTANCE_ID=13\nPASSWORD=p\nVIRTUAL_ADDRESS=192.0.2.104\n"
          "SOURCE_ADDRESS=192.0.2.1\nIFS=:\nOPTIONS=-n:-k:3:-x:'a b'\n"),
    # A password of two lines: the pass file holds both, the daemon reads the first.
    "e": ("INTERFACE=eth3\nINSTANCE_ID=14\nPASSWORD=\"$(printf 'ab\\ncd')\"\n"
          "VIRTUAL_ADDRESS=192.0.2.105\nSOURCE_ADDRESS=192.0.2.1\n"),
    # Refused by the init script itself.
    "f": ("INTERFACE=eth0\nINSTANCE_ID=300\nPASSWORD=p\nVIRTUAL_ADDRESS=192.0.2.1\n"
          "SOURCE_ADDRESS=1.2.3\n"),
    "g": "INTERFACE=eth0\nPASSWORD='open\n",
    "h": "INTERFACE=eth0\nexit 3\n",
    "i~": "a backup, skipped by both\n",
    # Service health: every variable; a check with blanks, quotes, a glob and a dollar (one
    # word, unexpanded); interfaces split at any blank whatever the file's IFS, unglobbed.
    "j": ("INTERFACE=eth4\nINSTANCE_ID=15\nPASSWORD=p\nVIRTUAL_ADDRESS=192.0.2.106\n"
          "SOURCE_ADDRESS=192.0.2.1\nIFS=:\nOPTIONS=-z:-k:5\n"
          "TRACK_SCRIPT='" + TRICKY_CHECK.replace("'", "'\\''") + "'\n"
          "TRACK_SCRIPT_4=\"test -d /tmp/*\"\nTRACK_INTERVAL=0.5\nTRACK_TIMEOUT=0.25\n"
          "TRACK_FALL=3\nTRACK_RISE=4\nTRACK_INTERFACE=\"eth1\teth2\n  dummy*\"\n"
          "TRACK_WEIGHT=20\nNOTIFY=/bin/true\n"),
    # "set -u" in a file that sets none of them: nothing is read unset.
    "k": ("set -u\nINTERFACE=eth5\nINSTANCE_ID=16\nPASSWORD=p\nVIRTUAL_ADDRESS=192.0.2.107\n"
          "SOURCE_ADDRESS=192.0.2.1\nTRACK_INTERFACE=eth1\n"),
    # Address lists: split at any blank whatever the file's IFS, one -a each, in order; a
    # prefix length for VIRTUAL_NETMASK; an IPv6 list.
    "l": ("INTERFACE=eth6:carp6\nINSTANCE_ID=17\nPASSWORD=p\nIFS=:\nOPTIONS=-z:-k:2\n"
          "VIRTUAL_ADDRESS=\"192.0.2.108\t198.51.100.8\n  192.0.2.118 \"\n"
          "VIRTUAL_NETMASK=24\nSOURCE_ADDRESS=192.0.2.1\n"),
    "m": ("INTERFACE=eth7\nINSTANCE_ID=18\nPASSWORD=p\n"
          "VIRTUAL_ADDRESS='2001:db8::108 2001:db8::118'\nVIRTUAL_NETMASK=64\n"
          "SOURCE_ADDRESS=2001:db8::1\n"),
    # Refused: two families; blanks only; a dotted mask for IPv6 addresses.
    "n": ("INTERFACE=eth8\nINSTANCE_ID=19\nPASSWORD=p\n"
          "VIRTUAL_ADDRESS='192.0.2.109 2001:db8::109'\nSOURCE_ADDRESS=192.0.2.1\n"),
    "o": ("INTERFACE=eth9\nINSTANCE_ID=20\nPASSWORD=p\nVIRTUAL_ADDRESS=' '\n"
          "SOURCE_ADDRESS=192.0.2.1\n"),
    "p": ("INTERFACE=eth10\nINSTANCE_ID=21\nPASSWORD=pw6\nVIRTUAL_ADDRESS=2001:db8::110\n"
          "VIRTUAL_NETMASK=255.255.255.0\nSOURCE_ADDRESS=2001:db8::1\n"),
}


@pytest.mark.skipif(_initd_problem() is not None, reason=_initd_problem() or "")
def test_same_daemon_arguments_as_the_init_script(tmp_path: Path) -> None:
    assert DASH is not None
    tree = Tree(tmp_path, 'OPTIONS="-z -n"\nIFCONFIG=/nonexistent/ifconfig\n'
                          f"UCARP_STATEDIR={tmp_path}/state\nexport FROM_DEFAULTS=1\n")
    run_dir = tmp_path / "run"
    record = tmp_path / "record"
    record.mkdir()
    default_dir = tmp_path / "etc-default"
    default_dir.mkdir()
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    (sbin / "start-stop-daemon").write_text(_RECORDER.format(record=record))
    (sbin / "start-stop-daemon").chmod(0o755)
    fake_ucarp = tmp_path / "ucarp"
    fake_ucarp.write_text("#!/bin/sh\necho 'pyucarp (recording)'\n")
    fake_ucarp.chmod(0o755)
    tree.defaults.write_text(tree.defaults.read_text() + f"R_INTERFACE={tree.dir}\n"
                             f"UCARP_RUNDIR={run_dir}\nUCARP_EXEC={fake_ucarp}\nSTART_TIMEOUT=0\n")
    (default_dir / "ucarp").write_text(tree.defaults.read_text())
    for name, text in COMPARED_FILES.items():
        tree.file(name, text)

    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNTED, "sh",
         str(default_dir), str(sbin), DASH, str(INIT_SCRIPT), "start"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        cwd="/")
    print(proc.stdout, proc.stderr)
    # What the init script started, by pass file name (-o $UCARP_RUNDIR/NAME.pass).
    started: dict[str, tuple[list[str], dict[str, str], bytes]] = {}
    for argv_file in sorted(record.glob("*.argv")):
        argv = [os.fsdecode(w) for w in argv_file.read_bytes().split(b"\0")[:-1]]
        env = dict(os.fsdecode(kv).split("=", 1)
                   for kv in argv_file.with_suffix(".env").read_bytes().split(b"\0") if kv)
        passfile = argv_file.with_suffix(".pass")
        name = Path(argv[argv.index("-o") + 1]).stem
        started[name] = (argv, env, passfile.read_bytes() if passfile.exists() else b"")
    # What it refused, by name: "ucarp: NAME: not started: interface file PATH: PROBLEM"
    # (or "...: not started: reading interface file PATH ended the shell ...").
    refused = {}
    for line in proc.stderr.splitlines():
        head, sep, rest = line.partition(": not started: ")
        if sep:
            if rest.startswith("interface file "):
                rest = rest.split(": ", 1)[1]
            refused[head.split(": ", 1)[1]] = rest
    assert sorted(started) == ["a", "b", "c", "d", "e", "j", "k", "l", "m"], proc.stderr
    assert sorted(refused) == ["f", "g", "h", "n", "o", "p"], proc.stderr

    ours = {item.name: item for item in load_directory(str(tree.dir), str(tree.defaults))}
    assert sorted(ours) == sorted([*started, *refused])  # i~ skipped by both
    for name, (argv, env, passfile) in started.items():
        item = ours[name]
        assert isinstance(item, InstanceFile), item
        # The init script adds "-B --pidfile=P" after $OPTIONS; ours has neither.
        at = argv.index("-B")
        assert argv[at + 1].startswith("--pidfile=")
        assert tuple(argv[:at] + argv[at + 2:]) == item.argv, name
        for word in ("PWD", "OLDPWD", "SHLVL", "_"):
            env.pop(word, None)
        assert env == dict(item.script_env), name
        assert passfile.split(b"\n", 1)[0] == item.config.password, name
    assert ours["e"].config.password == b"ab"  # type: ignore[union-attr]
    assert ours["c"].config.vhid == 8 and ours["c"].config.upscript is None  # type: ignore[union-attr]
    assert ours["d"].config.xparam == "a b"  # type: ignore[union-attr]
    assert dict(ours["c"].script_env)["FROM_C"] == "yes"  # type: ignore[union-attr]
    assert dict(ours["a"].script_env)["FROM_DEFAULTS"] == "1"  # type: ignore[union-attr]
    j_argv = started["j"][0]
    assert f"--track-script={TRICKY_CHECK}" in j_argv  # one word, as the init script gave it
    assert [w for w in j_argv if w.startswith("--track-interface=")] == [
        "--track-interface=eth1", "--track-interface=eth2", "--track-interface=dummy*"]
    assert ours["j"].config.track_scripts == (TRICKY_CHECK, "test -d /tmp/*")  # type: ignore[union-attr]
    assert ours["k"].config.track_interfaces == ("eth1",)  # type: ignore[union-attr]
    l_argv = started["l"][0]
    assert [l_argv[i + 1] for i, w in enumerate(l_argv) if w == "-a"] == [
        "192.0.2.108", "198.51.100.8", "192.0.2.118"]
    assert [str(a) for a in ours["m"].config.extra_addrs] == ["2001:db8::118"]  # type: ignore[union-attr]
    # Each refusal is one line of the init script's, the same phrase as ours.
    assert refused["n"] == \
        "VIRTUAL_ADDRESS [192.0.2.109 2001:db8::109] mixes IPv4 and IPv6 addresses"
    assert [line for line in proc.stderr.splitlines() if line.startswith("ucarp: n: ")] == [
        f"ucarp: n: not started: interface file {tree.dir / 'n'}: {refused['n']}"]
    assert refused["o"] == "VIRTUAL_ADDRESS is not set"
    for name, problem in refused.items():
        item = ours[name]
        assert isinstance(item, BadFile), item
        # Same phrases; we keep the line number the init script drops.
        exited = "ended the shell (exit in it?)"
        assert (item.problem == problem or item.problem.endswith(": " + problem)
                or (item.problem.endswith(exited) and problem.endswith(exited))), (item, problem)
