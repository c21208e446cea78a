"""The init script's configuration, read exactly as ``/etc/init.d/ucarp`` reads it.

``/etc/default/ucarp`` and every file of ``/etc/ucarp/interface`` are shell fragments: they
may quote, expand ``$(...)``, comment, even run commands. So they are not parsed here but
sourced, by ``/bin/sh``, in a child that does what the init script does for one file:

1. the init script's own defaults (``OPTIONS="-z"``, ``UPSCRIPT=/etc/ucarp/vip-up.sh``, ...),
   then the defaults file when it is readable;
2. the interface file's variables cleared (``UCARP_PIDFILE UCARP_BASE INTERFACE INSTANCE_ID
   PASSWORD VIRTUAL_ADDRESS VIRTUAL_BROADCAST VIRTUAL_NETMASK SOURCE_ADDRESS``, the health
   variables ``TRACK_SCRIPT``, ``TRACK_SCRIPT_2`` .. ``TRACK_SCRIPT_9``, ``TRACK_INTERVAL``,
   ``TRACK_TIMEOUT``, ``TRACK_FALL``, ``TRACK_RISE``, ``TRACK_INTERFACE``, ``TRACK_WEIGHT``,
   ``NOTIFY``: nothing comes from the caller or from the defaults file), then the interface
   file sourced, with ``action``, ``file`` and ``name`` set as the script sets them;
3. ``UCARP_BASE`` defaulting to 1, ``UCARP_PIDFILE`` to ``$UCARP_RUNDIR/<name>.pid``,
   ``IFCONFIG VIRTUAL_NETMASK VIRTUAL_BROADCAST`` exported, ``$OPTIONS`` split into words by
   the shell (``set -- $OPTIONS``, with the file's IFS and globbing, from ``/``), and the
   health variables turned into long options by the init script's own shell code (each
   ``TRACK_SCRIPT*`` one ``--track-script=COMMAND`` word, blanks and quotes included;
   ``TRACK_INTERFACE`` split at blanks into one ``--track-interface=`` each).

The child prints the values NUL-separated and its exported environment with ``env -0``;
Python only splits that output. A variable set in an interface file therefore overrides
the defaults file's for that file only (``OPTIONS`` replaces the global one, and so would
``UPSCRIPT``), exactly as with the init script.

Each good file gives the arguments the init script hands its daemon —
``$OPTIONS -b UCARP_BASE -i INTERFACE -v INSTANCE_ID -o PASSFILE -a ADDRESS [-a ADDRESS ...]
-s SOURCE_ADDRESS [--statedir=UCARP_STATEDIR] [-u UPSCRIPT] [-d DOWNSCRIPT] [--track-script=..
--track-interval=.. --track-timeout=.. --track-fall=.. --track-rise=.. --track-interface=..
--track-weight=.. --notify=..]``, less the ``-B``
and ``--pidfile=`` it adds to run each file as a process of its own — checked first with the
init script's own checks (same phrases), then by ucarp's command line
(:func:`pyucarp.config.options.parse_args`, same checks and messages as ``ucarp``), then
the scripts (``Script [...] is not an executable file``, as ``ucarp`` says at start).
``VIRTUAL_ADDRESS`` may list several addresses of one family, split at blanks (space, tab,
newline: never at the file's ``IFS``, never globbed), one ``-a`` each in the order given.

The password: ``PASSFILE`` in the arguments is the file the init script would use
(``$UCARP_RUNDIR/<name>.pass``); none is written here. The password reaches the parser
through a pipe (``-o /dev/fd/N``) as the init script's file would (first line, at most
4096 bytes read), lives only in :attr:`InstanceFile.config`, and is masked from every
problem line. It is never in any process's arguments.

Two files claiming one virtual host — the same vhid on the same device (``eth0`` and
``eth0:carp0`` are one link) — cannot both run, and which one is meant is anybody's guess:
every file of such a group is a :class:`BadFile` naming the others. (Keeping the first in
name order would let a new file named ``a`` silently take over the vhid of a running ``z``;
this way a reload keeps what runs, and neither file starts until one is fixed.)
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys

from pyucarp.config.options import HelpRequested, parse_args
from pyucarp.config.settings import Config
from pyucarp.errors import ConfigError
from pyucarp.records import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

# The builtin BLAKE2 keeps OpenSSL (hashlib) out of the daemon, as the codec does for SHA-1.
try:
    _blake2b: Any = importlib.import_module("_blake2").blake2b
except ImportError:  # pragma: no cover - CPython builds without the builtin module
    _blake2b = importlib.import_module("hashlib").blake2b

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "DEFAULT_DEFAULTS",
    "SOURCE_TIMEOUT",
    "BadFile",
    "Defaults",
    "InstanceFile",
    "address_list",
    "check_main",
    "list_interface_files",
    "load_directory",
    "load_file",
    "load_files",
    "read_defaults",
    "script_problems",
]

DEFAULT_CONFIG_DIR = "/etc/ucarp/interface"
DEFAULT_DEFAULTS = "/etc/default/ucarp"
SOURCE_TIMEOUT = 5.0  # seconds one file may take to source before its shell is killed
SH = "/bin/sh"

# The init script's PATH and locale, set before it reads anything.
_INITD_PATH = "/usr/local/sbin:/usr/local/bin:/sbin:/usr/sbin:/bin:/usr/bin"

# The init script's defaults, in its order; the defaults file may change each of them.
_INITD_DEFAULTS = (
    ("run_ucarp", "1"),
    ("R_INTERFACE", "/etc/ucarp/interface"),
    ("UCARP_EXEC", "/usr/local/bin/ucarp"),
    ("IFCONFIG", "/sbin/ifconfig"),
    ("OPTIONS", "-z"),
    ("UPSCRIPT", "/etc/ucarp/vip-up.sh"),
    ("DOWNSCRIPT", "/etc/ucarp/vip-down.sh"),
    ("UCARP_RUNDIR", "/run/ucarp"),
    ("UCARP_STATEDIR", ""),
    ("STOP_SCHEDULE", "TERM/10/KILL/5"),
    ("START_TIMEOUT", "5"),
    ("UCARP_ONE_PROCESS", "no"),
    ("PYUCARP_EXEC", ""),
    ("UCARP_RUN_PIDFILE", "/run/pyucarp/run.pid"),
)

# Service health (docs/health.md): TRACK_SCRIPT is one check command, TRACK_SCRIPT_2 to
# TRACK_SCRIPT_9 more of them; TRACK_INTERFACE is a blank-separated list.
TRACK_SCRIPT_VARS = ("TRACK_SCRIPT", *(f"TRACK_SCRIPT_{n}" for n in range(2, 10)))
TRACK_VARS = (
    *TRACK_SCRIPT_VARS, "TRACK_INTERVAL", "TRACK_TIMEOUT", "TRACK_FALL", "TRACK_RISE",
    "TRACK_INTERFACE", "TRACK_WEIGHT", "NOTIFY",
)

# What one interface file sets; cleared before it is read.
FILE_VARS = (
    "UCARP_PIDFILE", "UCARP_BASE", "INTERFACE", "INSTANCE_ID", "PASSWORD", "VIRTUAL_ADDRESS",
    "VIRTUAL_BROADCAST", "VIRTUAL_NETMASK", "SOURCE_ADDRESS", *TRACK_VARS,
)

# Everything printed after a file is read, each as "is it set" then its value.
_PRINTED = (
    *FILE_VARS, "OPTIONS", "UPSCRIPT", "DOWNSCRIPT", "IFCONFIG", "UCARP_RUNDIR",
    "UCARP_STATEDIR",
)

# Exported names that are the shell's own, not the configuration's.
_SHELL_OWN_ENV = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})

# Backups and package leftovers: skipped with a note, as the init script (and run-parts) do.
_BACKUP_NAME = re.compile(r".*(~|\.bak|\.orig|\.swp|\.dpkg-.*|\.ucf-.*|\.rpmnew|\.rpmsave)", re.S)

# dash: "sh: 3: /etc/ucarp/interface/x: Syntax error: ..."; bash: "/path: line 3: ...".
_DASH_MESSAGE = re.compile(r"[^:]*: (\d+): (.*)", re.S)
_BASH_MESSAGE = re.compile(r"(.*?): line (\d+): (.*)", re.S)


def _sh_prelude() -> str:
    lines = [
        f"PATH={_INITD_PATH}",
        "LC_ALL=C",
        "export PATH LC_ALL",
        "NAME=ucarp",
        'DEFAULTS=$1',
        *(f"{name}={_sh_quote(value)}" for name, value in _INITD_DEFAULTS),
        f'FILE_VARS="{" ".join(FILE_VARS)}"',
    ]
    return "\n".join(lines) + "\n"


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# The health options of one file, appended to "$@" exactly as init.d/ucarp's do_start and
# etc/systemd/ucarp-instance append them (keep the three in step): each TRACK_SCRIPT* that
# is not empty as one --track-script=COMMAND, whatever blanks or quotes it holds; then
# interval, timeout, fall, rise; each blank-separated word of TRACK_INTERFACE (whatever
# the file's IFS, never globbed); weight; notify.
_SH_TRACK_OPTIONS = r"""
for _track_n in '' _2 _3 _4 _5 _6 _7 _8 _9; do
    eval "_track_cmd=\${TRACK_SCRIPT$_track_n-}"
    case $_track_cmd in '') ;; *) set -- "$@" --track-script="$_track_cmd" ;; esac
done
case ${TRACK_INTERVAL-} in '') ;; *) set -- "$@" --track-interval="$TRACK_INTERVAL" ;; esac
case ${TRACK_TIMEOUT-} in '') ;; *) set -- "$@" --track-timeout="$TRACK_TIMEOUT" ;; esac
case ${TRACK_FALL-} in '') ;; *) set -- "$@" --track-fall="$TRACK_FALL" ;; esac
case ${TRACK_RISE-} in '') ;; *) set -- "$@" --track-rise="$TRACK_RISE" ;; esac
_track_ifs=${IFS-} _track_ifs_set=${IFS+1}
IFS=' <TAB>
'
case $- in *f*) _track_glob= ;; *) _track_glob=1 ;; esac
set -f
for _track_if in ${TRACK_INTERFACE-}; do set -- "$@" --track-interface="$_track_if"; done
case $_track_glob in 1) set +f ;; esac
case $_track_ifs_set in 1) IFS=$_track_ifs ;; *) unset IFS ;; esac
case ${TRACK_WEIGHT-} in '') ;; *) set -- "$@" --track-weight="$TRACK_WEIGHT" ;; esac
case ${NOTIFY-} in '') ;; *) set -- "$@" --notify="$NOTIFY" ;; esac
""".replace("<TAB>", "\t")

# $1: the defaults file, $2: the interface file ('' to read the defaults only).
# Markers on stdout tell how far it got; a NUL on stderr separates the defaults file's
# messages from the interface file's. After a failed read, the EXIT trap prints what
# PASSWORD held, so that it can be masked from the message shown.
_SH_PROGRAM = _sh_prelude() + r"""
_pyucarp_file=$2
set --
[ -r "$DEFAULTS" ] && . "$DEFAULTS" < /dev/null > /dev/null
printf 'defaults\0'
printf '\0' >&2
if [ -z "$_pyucarp_file" ]; then
    printf '%s\0' "$R_INTERFACE" "$run_ucarp"
    exit 0
fi
action=start
file=$_pyucarp_file
name=${file##*/}
# shellcheck disable=SC2086
unset $FILE_VARS
trap 'printf "password\0%s\0" "${PASSWORD-}"' EXIT
. "$file" < /dev/null > /dev/null
trap - EXIT
: "${UCARP_BASE:=1}"
: "${UCARP_PIDFILE:=$UCARP_RUNDIR/$name.pid}"
export IFCONFIG VIRTUAL_NETMASK VIRTUAL_BROADCAST
command printf 'file\0'
""" + "".join(f'command printf \'%s\\0\' "${{{v}+1}}" "${{{v}-}}"\n' for v in _PRINTED) + r"""
# shellcheck disable=SC2086 # split (and globbed) as the init script's "set -- $OPTIONS"
set -- $OPTIONS
command printf '%s\0' "$#"
[ "$#" -eq 0 ] || command printf '%s\0' "$@"
set --
""" + _SH_TRACK_OPTIONS + r"""
command printf '%s\0' "$#"
[ "$#" -eq 0 ] || command printf '%s\0' "$@"
command printf '%s\0' "$UCARP_RUNDIR/$name.pass"
command printf 'env\0'
exec env -0
"""

# A per-process secret for the digests: equal within one process (a reload compares them),
# useless to anyone who finds one in a log and wants to try password guesses against it.
_DIGEST_KEY = os.urandom(32)


class InstanceFile(NamedTuple):
    """One interface file that can run: its instance's arguments and Config.

    ``argv`` are the arguments the init script would give this file's daemon, without the
    ``-B`` and ``--pidfile=`` it adds to run the file as a process of its own; its ``-o``
    names the init script's pass file, which is not written (``config`` has the password).
    ``script_env`` is what the init script's daemon would have in its environment, and so
    its up and down scripts: ``PATH`` and ``LC_ALL`` as the init script sets them,
    ``IFCONFIG``, ``VIRTUAL_NETMASK`` and ``VIRTUAL_BROADCAST`` when set, and whatever the
    defaults file or the interface file exports — never ``PASSWORD``. Run the scripts with
    the daemon's environment updated by it.
    ``digest`` changes exactly when ``config`` or ``script_env`` does (the password
    included); it is comparable only within one process.
    """

    name: str
    path: str
    argv: tuple[str, ...]
    config: Config  # holds the password: left out of repr()
    digest: str
    script_env: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[str, int]:
        """The virtual host it claims: (device, vhid)."""
        return (self.config.device, self.config.vhid)

    def __repr__(self) -> str:
        return (f"InstanceFile(name={self.name!r}, path={self.path!r}, argv={self.argv!r}, "
                f"digest={self.digest!r}, script_env={self.script_env!r})")


class BadFile(NamedTuple):
    """An interface file that cannot run, and why (one line, never the password)."""

    name: str
    path: str
    problem: str


class Defaults(NamedTuple):
    """What the defaults file says about the whole set of files."""

    interface_dir: str  # R_INTERFACE
    run_ucarp: str  # "1" unless the defaults file turns starting off


class _Sourced(NamedTuple):
    """A file as the shell left it: variable -> value (unset ones absent), words, env."""

    values: dict[str, str]
    options: tuple[str, ...]
    passfile: str
    env: dict[str, str]
    track: tuple[str, ...] = ()  # the health options its TRACK_* and NOTIFY make


class _SourceFailed(Exception):
    def __init__(self, problem: str, password: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.password = password


# --------------------------------------------------------------------------- the directory


def list_interface_files(config_dir: str) -> tuple[list[str], list[str]]:
    """(paths to read, backup names skipped), as the init script iterates ``config_dir``.

    Sorted by name as bytes (the script's glob under ``LC_ALL=C``); hidden names are left
    out, so is anything that is not a regular file (a symlink to one counts). Raises
    ConfigError when the directory cannot be listed.
    """
    try:
        names = os.listdir(config_dir)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the interface directory {config_dir}: {exc.strerror}"
        ) from None
    paths: list[str] = []
    skipped: list[str] = []
    for entry in sorted(names, key=os.fsencode):
        if entry.startswith("."):
            continue
        path = os.path.join(config_dir, entry)
        if not os.path.isfile(path):
            continue
        if _BACKUP_NAME.fullmatch(entry):
            skipped.append(entry)
            continue
        paths.append(path)
    return paths, skipped


def load_directory(
    config_dir: str, defaults: str, *, timeout: float = SOURCE_TIMEOUT
) -> list[InstanceFile | BadFile]:
    """Every interface file of ``config_dir``, in the init script's order, read with
    ``defaults`` (a missing defaults file means the init script's defaults).

    Raises ConfigError only when ``config_dir`` cannot be listed; each file's own trouble is
    a :class:`BadFile` in the list.
    """
    paths, _skipped = list_interface_files(config_dir)
    return load_files(paths, defaults, timeout=timeout)


def load_files(
    paths: Iterable[str], defaults: str, *, timeout: float = SOURCE_TIMEOUT
) -> list[InstanceFile | BadFile]:
    """:func:`load_file` for each path in order, then the duplicate check.

    Files claiming the same (device, vhid) all become :class:`BadFile`, each naming the
    others; a broken file claims nothing.
    """
    loaded = [load_file(path, defaults, timeout=timeout) for path in paths]
    claims: dict[tuple[str, int], list[InstanceFile]] = {}
    for item in loaded:
        if isinstance(item, InstanceFile):
            claims.setdefault(item.key, []).append(item)
    result: list[InstanceFile | BadFile] = []
    for item in loaded:
        if isinstance(item, InstanceFile) and len(claims[item.key]) > 1:
            device, vhid = item.key
            others = ", ".join(o.path for o in claims[item.key] if o is not item)
            problem = f"vhid {vhid} on {device} is also claimed by {others}"
            item = BadFile(item.name, item.path, problem)
        result.append(item)
    return result


# --------------------------------------------------------------------------- one file


def load_file(
    path: str, defaults: str, *, timeout: float = SOURCE_TIMEOUT
) -> InstanceFile | BadFile:
    """One interface file read with ``defaults``: an InstanceFile, or a BadFile saying why."""
    name = os.path.basename(path)
    if not os.path.exists(path):
        return BadFile(name, path, "the file is gone")
    if not os.access(path, os.R_OK) or os.path.isdir(path):
        return BadFile(name, path, "cannot read the file")
    try:
        sourced = _source(path, defaults, timeout)
    except _SourceFailed as exc:
        return BadFile(name, path, _mask(exc.problem, exc.password))
    password = sourced.values.get("PASSWORD", "")
    try:
        argv, passfile_index = _daemon_argv(sourced)
        problem = _initd_problem(sourced.values)
        if problem:
            raise ConfigError(problem)
        config = _parse(argv, passfile_index, password)
        scripts = script_problems(config)
        if scripts:
            raise ConfigError("; ".join(scripts))
    except ConfigError as exc:
        return BadFile(name, path, _mask(str(exc), password))
    env = tuple(sorted(
        (k, v) for k, v in sourced.env.items() if k not in _SHELL_OWN_ENV and k != "PASSWORD"
    ))
    return InstanceFile(name=name, path=path, argv=tuple(argv), config=config,
                        digest=_digest(config, env), script_env=env)


def script_problems(config: Config) -> list[str]:
    """What ``ucarp`` would refuse at start about the up, down and notify scripts."""
    problems = []
    for script in (config.upscript, config.downscript, config.notify):
        if script and not (os.path.isfile(script) and os.access(script, os.X_OK)):
            problems.append(f"Script [{script}] is not an executable file")
    return problems


def read_defaults(defaults: str, *, timeout: float = SOURCE_TIMEOUT) -> Defaults:
    """``R_INTERFACE`` and ``run_ucarp`` after reading ``defaults`` as the init script does.

    Raises ConfigError (one line) when the defaults file does not read.
    """
    try:
        fields, _err = _run_sh(defaults, "", timeout)
    except _SourceFailed as exc:
        raise ConfigError(exc.problem) from None
    if len(fields) < 3 or fields[0] != b"defaults":
        raise ConfigError(f"defaults file {defaults}: reading it ended the shell (exit in it?)")
    return Defaults(interface_dir=os.fsdecode(fields[1]), run_ucarp=os.fsdecode(fields[2]))


# --------------------------------------------------------------------------- the shell child


def _run_sh(defaults: str, path: str, timeout: float) -> tuple[list[bytes], bytes]:
    """Run the reading program: (NUL-separated stdout fields, stderr); _SourceFailed on
    a timeout or when the defaults file does not read."""
    # Absolute paths: the shell runs from /, as the init script does under service(8).
    args = [os.path.abspath(defaults), os.path.abspath(path) if path else ""]
    proc = subprocess.Popen(
        [SH, "-c", _SH_PROGRAM, "sh", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PATH": _INITD_PATH, "LC_ALL": "C"}, cwd="/", start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = _kill_group(proc)
        late = f"reading it took longer than {timeout:g} s (killed)"
        if path and out.startswith(b"defaults\0"):
            raise _SourceFailed(late) from None
        raise _SourceFailed(f"defaults file {defaults}: {late}") from None
    finally:
        if proc.poll() is None:  # pragma: no cover - only on an unexpected exception
            _kill_group(proc)
    fields = out.split(b"\0")
    if fields[0] != b"defaults":
        message = _sh_message(err.split(b"\0", 1)[0], args[0])
        raise _SourceFailed(f"defaults file {defaults}: {message}")
    return fields, err


def _kill_group(proc: subprocess.Popen[bytes]) -> bytes:
    """Kill the shell and everything it started; what it had printed."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        out, _err = proc.communicate(timeout=2)
    except subprocess.TimeoutExpired:  # pragma: no cover - a grandchild outside the group
        proc.kill()
        proc.wait()
        return b""
    return out


def _source(path: str, defaults: str, timeout: float) -> _Sourced:
    fields, err = _run_sh(defaults, path, timeout)
    if len(fields) < 2 or fields[1] != b"file":
        password = None
        if len(fields) >= 3 and fields[1] == b"password":
            password = os.fsdecode(fields[2])
        file_err = err.split(b"\0", 1)[1] if b"\0" in err else b""
        raise _SourceFailed(_sh_message(file_err, os.path.abspath(path)), password)
    try:
        return _fields_to_sourced(fields)
    except (IndexError, ValueError):
        # The file closed or redirected the shell's output, or redefined what prints it.
        raise _SourceFailed(
            "the shell's report on it is unreadable (does it redirect stdout?)"
        ) from None


def _fields_to_sourced(fields: list[bytes]) -> _Sourced:
    pos = 2
    values: dict[str, str] = {}
    for var in _PRINTED:
        is_set, value = fields[pos], fields[pos + 1]
        pos += 2
        if is_set:
            values[var] = os.fsdecode(value)
    words: list[tuple[str, ...]] = []
    for _list in ("options", "track"):
        count = int(fields[pos])
        words.append(tuple(os.fsdecode(w) for w in fields[pos + 1: pos + 1 + count]))
        pos += 1 + count
    options, track = words
    passfile = os.fsdecode(fields[pos])
    if fields[pos + 1] != b"env":
        raise ValueError("no environment")
    env: dict[str, str] = {}
    for item in fields[pos + 2:]:
        if b"=" in item:
            key, _, value = item.partition(b"=")
            env[os.fsdecode(key)] = os.fsdecode(value)
    return _Sourced(values, options, passfile, env, track)


def _sh_message(err: bytes, path: str) -> str:
    """The shell's last message about ``path``, as ``line N: message``."""
    lines = [line for line in os.fsdecode(err).splitlines() if line.strip()]
    if not lines:
        return "reading it ended the shell (exit in it?)"
    last = lines[-1].strip()
    match = _DASH_MESSAGE.fullmatch(last)
    if match:
        number, text = match.groups()
        return f"line {number}: {_drop_prefix(text, path)}"
    match = _BASH_MESSAGE.fullmatch(last)
    if match:
        _where, number, text = match.groups()
        return f"line {number}: {text}"
    return _drop_prefix(last, path)


def _drop_prefix(text: str, path: str) -> str:
    return text[len(path) + 2:] if text.startswith(path + ": ") else text


# --------------------------------------------------------------------------- the arguments


def address_list(value: str) -> list[str]:
    """The addresses of a ``VIRTUAL_ADDRESS`` value, in order: its words as the init script
    splits them (at spaces, tabs and newlines only)."""
    return [word for word in _BLANKS.split(value) if word]


_BLANKS = re.compile("[ \t\n]+")


def _daemon_argv(sourced: _Sourced) -> tuple[list[str], int]:
    """The init script's ``set -- ...`` for this file (less -B and --pidfile), and where
    the pass file's name is in it."""
    v = sourced.values
    argv = [
        *sourced.options,
        "-b", v.get("UCARP_BASE", ""), "-i", v.get("INTERFACE", ""),
        "-v", v.get("INSTANCE_ID", ""), "-o", sourced.passfile,
    ]
    # One -a per address (the first is the HMAC's over IPv4); none when the list is empty,
    # which _initd_problem reports first.
    for address in address_list(v.get("VIRTUAL_ADDRESS", "")):
        argv += ["-a", address]
    argv += ["-s", v.get("SOURCE_ADDRESS", "")]
    passfile_index = len(sourced.options) + 7
    if v.get("UCARP_STATEDIR"):
        argv.append(f"--statedir={v['UCARP_STATEDIR']}")
    if v.get("UPSCRIPT"):
        argv += ["-u", v["UPSCRIPT"]]
    if v.get("DOWNSCRIPT"):
        argv += ["-d", v["DOWNSCRIPT"]]
    argv += sourced.track
    return argv, passfile_index


def _parse(argv: Sequence[str], passfile_index: int, password: str) -> Config:
    """parse_args over ``argv`` with the password handed over through a pipe, as the init
    script's pass file would hand it (``printf '%s\\n' "$PASSWORD"``, first line read)."""
    data = os.fsencode(password).split(b"\n", 1)[0][:4096] + b"\n"
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)  # at most 4097 bytes: fits any pipe
        os.close(write_end)
        write_end = -1
        fd_path = f"/dev/fd/{read_end}"
        args = list(argv)
        passfile = args[passfile_index]
        args[passfile_index] = fd_path
        try:
            parsed = parse_args(args, default_interface=lambda: None)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(fd_path, passfile)) from None
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if isinstance(parsed, HelpRequested):
        raise ConfigError("OPTIONS ask for the help text (-h): nothing to run")
    return parsed


def _is_uint(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 9


def _looks_ipv6(text: str) -> bool:
    """The init script's is_ipv6: hex digits and colons (a scope after %); the command
    line's own check then reads it exactly."""
    address, _, scope = text.partition("%")
    return ":" in address and all(c in "0123456789abcdefABCDEF:." for c in address) and (
        "%" not in text or scope.isalnum())


def _is_ipv4(text: str) -> bool:
    """The init script's is_ipv4: four decimal octets, no leading zero, at most 255."""
    parts = text.split(".")
    return len(parts) == 4 and all(
        _is_uint(p) and len(p) <= 3 and not (len(p) > 1 and p[0] == "0") and int(p) <= 255
        for p in parts
    )


def _is_netmask(text: str) -> bool:
    """The init script's is_netmask: a dotted IPv4 mask, ones then zeros, not 0.0.0.0."""
    if not _is_ipv4(text) or text == "0.0.0.0":
        return False
    bits = "".join(f"{int(octet):08b}" for octet in text.split("."))
    return "01" not in bits


def _netmask_problem(mask: str, family: int | None) -> str:
    """What the init script says about VIRTUAL_NETMASK for addresses of ``family``."""
    if not mask:
        return ""
    if "." in mask:
        if not _is_netmask(mask):
            return f"VIRTUAL_NETMASK [{mask}] is neither an IPv4 netmask nor a prefix length"
        if family == 6:
            return (f"VIRTUAL_NETMASK [{mask}] is an IPv4 netmask: give IPv6 addresses a "
                    "prefix length")
        return ""
    if not (mask.isascii() and mask.isdigit()):
        return f"VIRTUAL_NETMASK [{mask}] is neither an IPv4 netmask nor a prefix length"
    longest = 32 if family == 4 else 128
    if mask.startswith("0") or len(mask) > 3 or int(mask) > longest:
        return f"VIRTUAL_NETMASK [{mask}] is not a prefix length from 1 to {longest}"
    return ""


def _initd_problem(v: dict[str, str]) -> str:
    """The init script's check_config: its phrases, joined with "; " ('' when fine)."""
    problems = []
    addresses = address_list(v.get("VIRTUAL_ADDRESS", ""))
    for var in ("INTERFACE", "INSTANCE_ID", "PASSWORD", "VIRTUAL_ADDRESS", "SOURCE_ADDRESS"):
        if not (addresses if var == "VIRTUAL_ADDRESS" else v.get(var)):
            problems.append(f"{var} is not set")
    vhid = v.get("INSTANCE_ID", "")
    if vhid and not (_is_uint(vhid) and 1 <= int(vhid) <= 255):
        problems.append(f"INSTANCE_ID [{vhid}] is not a number from 1 to 255")
    base = v.get("UCARP_BASE", "")
    if not (_is_uint(base) and int(base) <= 255):
        problems.append(f"UCARP_BASE [{base}] is not a number from 0 to 255")
    # Every address of the list, all of one family (the daemon's instance is of one).
    families: list[int] = []
    for address in addresses:
        family = 4 if _is_ipv4(address) else 6 if _looks_ipv6(address) else 0
        if not family:
            problems.append(f"VIRTUAL_ADDRESS [{address}] is not an IPv4 or IPv6 address")
        elif family not in families:
            families.append(family)
    if len(families) > 1:
        problems.append(f"VIRTUAL_ADDRESS [{' '.join(addresses)}] mixes IPv4 and IPv6 "
                        "addresses")
    source = v.get("SOURCE_ADDRESS", "")
    if source and not (_is_ipv4(source) or _looks_ipv6(source)):
        problems.append(f"SOURCE_ADDRESS [{source}] is not an IPv4 or IPv6 address")
    mask = _netmask_problem(v.get("VIRTUAL_NETMASK", ""),
                            families[0] if len(families) == 1 else None)
    if mask:
        problems.append(mask)
    broadcast = v.get("VIRTUAL_BROADCAST", "")
    if broadcast and not _is_ipv4(broadcast):
        problems.append(f"VIRTUAL_BROADCAST [{broadcast}] is not an IPv4 address")
    interface = v.get("INTERFACE", "")
    if any(c in " \t\n\v\f\r" for c in interface):
        problems.append(f"INTERFACE [{interface}] contains blanks")
    pidfile = v.get("UCARP_PIDFILE", "")
    if not pidfile.startswith("/"):
        problems.append(f"UCARP_PIDFILE [{pidfile}] is not an absolute path")
    return "; ".join(problems)


def _mask(text: str, password: str | None) -> str:
    """``text`` with the password (when known and not empty) replaced by ``***``."""
    text = " ".join(text.split("\n"))
    if password:
        text = text.replace(password, "***")
        first_line = password.split("\n", 1)[0]
        if first_line:
            text = text.replace(first_line, "***")
    return text


def _digest(config: Config, env: tuple[tuple[str, str], ...]) -> str:
    parts: list[object] = []
    for name, value in zip(config._fields, config, strict=True):
        parts.append([name, value.hex() if isinstance(value, bytes) else repr(value)])
    parts.append(["script_env", [list(pair) for pair in env]])
    blob = json.dumps(parts, ensure_ascii=True, separators=(",", ":")).encode()
    digest: str = _blake2b(blob, key=_DIGEST_KEY, digest_size=16).hexdigest()
    return digest


# --------------------------------------------------------------------------- --check


def check_main(config_dir: str = DEFAULT_CONFIG_DIR, defaults: str = DEFAULT_DEFAULTS) -> int:
    """``pyucarp run --check``: one line on stderr per file that cannot run, naming it.

    Backup names skipped are noted on stderr too. A summary goes to stdout. Exit status 0
    when every file is good, 1 when one is not, or there is none, or ``config_dir`` cannot
    be read.
    """
    try:
        paths, skipped = list_interface_files(config_dir)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for entry in skipped:
        print(f"{os.path.join(config_dir, entry)}: ignored (backup file name)", file=sys.stderr)
    if not paths:
        print(f"no interface file in {config_dir}", file=sys.stderr)
        return 1
    results = load_files(paths, defaults)
    bad = [r for r in results if isinstance(r, BadFile)]
    for item in bad:
        print(f"{item.path}: {item.problem}", file=sys.stderr)
    good = len(results) - len(bad)
    print(f"{config_dir}: {good} of {len(results)} interface "
          f"file{'s' if len(results) != 1 else ''} good")
    return 1 if bad else 0
