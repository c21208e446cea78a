"""Hostile and broken CARP traffic, a fast raw sender, and a small daemon runner for tests.

Three parts, all usable without pytest:

* Frame builders: CARP advertisements byte for byte as ucarp sends them (reference §2),
  written here independently of :mod:`pyucarp.core.codec` so the tests do not grade the codec
  with its own encoder, plus every way of breaking one (checksums, TTL, version, vhid,
  truncation, random bytes, replays). :func:`hostile_mix` assembles a seeded flood.
* A flood sender: this file run as ``python3 hostile.py flood IFACE FILE RATE MAXSEC`` inside
  a namespace sends the frames of FILE from one ``AF_PACKET`` socket in a tight, paced loop
  and prints one JSON line with what it did. :func:`flood` drives it from the test.
* :class:`Instance`: one pyucarp (or C ucarp) daemon in a lab host's namespace with its
  console captured to a file, its JSON state file, its CPU time from ``/proc``.

The sender part imports only the standard library: it runs inside namespaces via
``ip netns exec`` with ``python3 -I``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CONTROL_SIGNAL",
    "CUCARP",
    "FloodResult",
    "HostileMix",
    "Instance",
    "VictimView",
    "advert",
    "bpf_passes",
    "bpf_run",
    "break_checksum",
    "carp_digest",
    "flood",
    "hostile_mix",
    "inet_checksum",
    "pyucarp_argv",
    "pyucarp_env",
    "read_frames",
    "truncations",
    "write_frames",
]

REPO = Path(__file__).resolve().parent.parent
CUCARP = "/usr/sbin/ucarp"
CONTROL_SIGNAL = signal.SIGRTMIN + 1  # pyucarp's "re-read the maintenance flag" signal
GROUP = "224.0.0.18"
GROUP_MAC = bytes.fromhex("01005e000012")
MAX_FLOOD_FRAMES = 200_000
MAX_FLOOD_SECONDS = 60.0
_HERE = Path(__file__).resolve()

# --------------------------------------------------------------------------- frames


def inet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement checksum (odd length padded with a zero byte)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


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


# --------------------------------------------------------------------------- flood sender


def write_frames(path: Path, frames: Iterable[bytes]) -> None:
    """Store frames for the sender: a 2-byte big-endian length before each."""
    with open(path, "wb") as out:
        for frame in frames:
            out.write(len(frame).to_bytes(2, "big") + frame)


def read_frames(path: Path) -> list[bytes]:
    """The frames :func:`write_frames` stored."""
    data = path.read_bytes()
    frames, i = [], 0
    while i + 2 <= len(data):
        n = int.from_bytes(data[i:i + 2], "big")
        frames.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return frames


@dataclass(frozen=True)
class FloodResult:
    """What the sender did: frames sent, refused sends by errno name, seconds spent."""

    sent: int
    errors: dict[str, int]
    elapsed: float

    @property
    def attempted(self) -> int:
        """Frames handed to the socket, refused ones included."""
        return self.sent + sum(self.errors.values())


def flood(netns: str, iface: str, frames: Sequence[bytes], rate: float,
          max_seconds: float = 30.0) -> FloodResult:
    """Send ``frames`` from ``iface`` inside ``netns`` at about ``rate`` frames/s.

    Bounded: at most :data:`MAX_FLOOD_FRAMES` frames and ``max_seconds`` seconds.
    """
    if len(frames) > MAX_FLOOD_FRAMES or not 0 < max_seconds <= MAX_FLOOD_SECONDS:
        raise ValueError("a flood is bounded to 200000 frames and 60 s")
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        path = Path(tmp) / "frames.bin"
        write_frames(path, frames)
        proc = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-I", str(_HERE), "flood", iface,
             str(path), repr(float(rate)), repr(float(max_seconds))],
            capture_output=True, text=True, timeout=max_seconds + 15,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"flood sender failed: {proc.stderr.strip()}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return FloodResult(int(result["sent"]), dict(result["errors"]), float(result["elapsed"]))


def _helper_flood(iface: str, path: str, rate: float, max_seconds: float) -> None:
    import errno
    import socket

    frames = read_frames(Path(path))[:MAX_FLOOD_FRAMES]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((iface, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    send = sock.send
    errors: dict[str, int] = {}
    sent = 0
    batch = 64  # frames between two looks at the clock: a tight loop, gently paced
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
            send(frame)
            sent += 1
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            errors[name] = errors.get(name, 0) + 1
    print(json.dumps({"sent": sent, "errors": errors,
                      "elapsed": round(time.monotonic() - start, 6)}), flush=True)


# --------------------------------------------------------------------------- daemons


def pyucarp_argv() -> list[str]:
    """The argv prefix that runs this work tree's pyucarp."""
    return [sys.executable, "-m", "pyucarp"]


def pyucarp_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a pyucarp process: this work tree first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if extra:
        env.update(extra)
    return env


_STATE_RE = re.compile(r"Switching to state: (INIT|BACKUP|MASTER)")


def _proc_cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


class Instance:
    """One daemon started in a lab host's namespace; console (stdout+stderr) in a file.

    ``host`` is a :class:`netlab.Host` (anything with ``popen`` and ``netns``). ``impl``
    is "py" or "c". pyucarp instances get ``--statedir`` in ``workdir`` unless ``args``
    already names one.
    """

    def __init__(self, host: Any, workdir: Path, args: Sequence[str], *, impl: str = "py",
                 name: str = "node", env: dict[str, str] | None = None,
                 wrapper: Sequence[str] = ()) -> None:
        self.host = host
        self.impl = impl
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.statedir = self.dir / "state"
        self.statedir.mkdir(exist_ok=True)
        self.console = self.dir / "console.log"
        self.args = list(args)
        if impl == "py":
            if not any(a.startswith("--statedir") for a in self.args):
                self.args.append(f"--statedir={self.statedir}")
            argv = [*wrapper, *pyucarp_argv(), *self.args]
            full_env = pyucarp_env(env)
        else:
            stdbuf = shutil.which("stdbuf")
            argv = [*wrapper, *([stdbuf, "-oL"] if stdbuf else []), CUCARP, *self.args]
            full_env = dict(os.environ)
            full_env.update(env or {})
        self.argv = argv
        with open(self.console, "wb") as out:
            self.proc: subprocess.Popen[bytes] = host.popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=full_env)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        """The daemon's pid (``ip netns exec`` and ``stdbuf`` exec in place)."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the daemon still runs."""
        return self.proc.poll() is None

    # ---------------------------------------------------------------- console

    def text(self) -> str:
        """The console output so far."""
        return self.console.read_bytes().decode("utf-8", "replace")

    def lines(self) -> list[str]:
        """The console output as lines."""
        return self.text().splitlines()

    def count(self, pattern: str) -> int:
        """How many console lines match the regular expression ``pattern``."""
        rx = re.compile(pattern)
        return sum(1 for line in self.lines() if rx.search(line))

    def wait_log(self, pattern: str, timeout: float, count: int = 1) -> bool:
        """Wait until ``count`` console lines match ``pattern``."""
        return wait_for(lambda: self.count(pattern) >= count, timeout)

    def logged_states(self) -> list[str]:
        """Every "Switching to state" in the console, in order."""
        return [m.group(1) for m in map(_STATE_RE.search, self.lines()) if m]

    def logged_state(self) -> str | None:
        """The last state the console announced."""
        states = self.logged_states()
        return states[-1] if states else None

    def wait_logged_state(self, state: str, timeout: float) -> bool:
        """Wait until the last announced state is ``state``."""
        return wait_for(lambda: self.logged_state() == state, timeout)

    # ---------------------------------------------------------------- state file

    def state_path(self, vhid: int, iface: str = "eth0") -> Path:
        """Where pyucarp writes this instance's JSON state file."""
        return self.statedir / f"{iface}-{vhid}.json"

    def state(self, vhid: int, refresh: bool = False) -> dict[str, Any] | None:
        """The state file's content (None when absent); ``refresh`` makes the daemon
        rewrite it first (pyucarp re-reads its maintenance flag on CONTROL_SIGNAL and
        writes the file when anything changed)."""
        if refresh and self.alive():
            before = self._mtime(vhid)
            os.kill(self.pid, CONTROL_SIGNAL)
            wait_for(lambda: self._mtime(vhid) != before, 0.5)
        try:
            data: dict[str, Any] = json.loads(self.state_path(vhid).read_text())
        except (OSError, ValueError):
            return None
        return data

    def _mtime(self, vhid: int) -> float:
        try:
            return self.state_path(vhid).stat().st_mtime
        except OSError:
            return 0.0

    def wait_state(self, vhid: int, state: str, timeout: float) -> bool:
        """Wait until the state file says ``state``."""
        return wait_for(lambda: (self.state(vhid) or {}).get("state") == state, timeout)

    # ---------------------------------------------------------------- process

    def cpu_seconds(self) -> float:
        """User + system CPU time the daemon has used so far (from /proc/PID/stat)."""
        return _proc_cpu_seconds(self.pid)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Send ``signum`` to the daemon's pid, wait, SIGKILL it if needed; its return code."""
        if self.alive():
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the daemon (its pid only) and reap it."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``pred`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if len(argv) == 5 and argv[0] == "flood":
        _helper_flood(argv[1], argv[2], float(argv[3]), float(argv[4]))
        return 0
    print("usage: hostile.py flood IFACE FILE RATE MAXSEC", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
