"""``python3 -m pyucarp.lab.demo``: watch two pyucarp nodes share one address, live, in a lab.

A throw-away lab (:mod:`pyucarp.lab.netlab`) joins four network namespaces with a switch: the
nodes ``alpha`` (advskew 0, ``-P``) and ``beta`` (advskew 20) share the virtual address
192.0.2.100, and a ``client`` pings that address every 10 ms; the daemons are started and
their logs read with :mod:`pyucarp.lab.daemons`. The story is told on the terminal as a
timeline -- seconds since the start, who is MASTER, what the client sees -- in four steps
and a summary:

1. election: both start BACKUP, the one that waits less (lower advskew) becomes MASTER;
2. alpha's host vanishes: beta takes over after the master-down time, 3 + 20/256 s;
3. alpha comes back: being preferred and run with ``-P``, it takes the address back;
4. graceful stop (SIGTERM with ``-z``): alpha's leave advert hands over in milliseconds.

Everything is torn down at the end, also on Ctrl-C, SIGTERM or any failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from pyucarp.core.machine import leave_takeover_delay
from pyucarp.lab.daemons import Daemon, start_pyucarp, vip_scripts
from pyucarp.lab.netlab import Host, Lab, LabError, PingWatch, largest_gap, stop_process

VIP = "192.0.2.100"
VHID = 7
PASSWORD = "demo"
ADVBASE = 1
DEADRATIO = 3
PING_INTERVAL = 0.01
SILENCE_NOTICE = 0.25  # a silence this long is announced while it lasts
GAP_NOTICE = 0.04  # a shorter gap is only worth a line once it is over
WIDTH = 78

# the log lines worth explaining, in plain words
_MEANINGS = {
    "Putting MASTER down - preemption": "takes over at once: the MASTER it hears is less preferred",
    "Preferred master advertised: going back to BACKUP state":
        "steps back: it heard a preferred MASTER",
    "Non-preferred master advertising: reasserting control of VIP with another gratuitous arp":
        "heard a less preferred MASTER: re-announces the address",
    "Putting MASTER DOWN (going to time out)": "takes over: the MASTER it hears is leaving",
}

_LOG_RE = re.compile(r"^(?:(\S+): )?\[(DEBUG|INFO|NOTICE|WARNING|ERROR)\] (.*)$")


def master_down_time(advskew: int) -> float:
    """How long a backup waits without adverts before it takes over (advbase 1, deadratio 3)."""
    return ADVBASE * DEADRATIO + advskew / 256


@dataclass(frozen=True)
class Pace:
    """How long the story pauses: for reading, and to let each step settle."""

    read: float
    settle: float


NORMAL = Pace(read=1.5, settle=2.0)
QUICK = Pace(read=0.0, settle=0.6)


class Style:
    """ANSI colours when writing to a terminal, plain text otherwise."""

    _CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(self._CODES[s] for s in styles)
        return f"\033[{codes}m{text}\033[0m"

    def state(self, state: str) -> str:
        """A CARP state name, coloured by what it means."""
        return self(state, "bold", "green") if state == "MASTER" else self(state, "yellow")


@dataclass
class StepResult:
    """One row of the summary table."""

    title: str
    outcome: str
    outage: str
    expected: str
    ok: bool


@dataclass
class Node:
    """One pyucarp daemon of the story."""

    name: str
    host: Host
    advskew: int
    preempt: bool
    daemon: Daemon | None = None
    state: str = "-"
    master_since: float | None = None  # monotonic time of the last change to MASTER
    exit_told: bool = False  # its end has been shown on the timeline
    history: list[tuple[float, str]] = field(default_factory=list)

    def options(self, up: Path, down: Path) -> list[str]:
        """ucarp's command line for this node."""
        opts = ["--interface=eth0", f"--srcip={self.host.ip}", f"--vhid={VHID}",
                f"--pass={PASSWORD}", f"--addr={VIP}", f"--advbase={ADVBASE}",
                f"--advskew={self.advskew}", f"--upscript={up}", f"--downscript={down}",
                "--shutdown", "--facility=none"]
        return opts + (["--preempt"] if self.preempt else [])


class Stopped(Exception):
    """SIGTERM or SIGHUP asked the demo to end."""


class Story:
    """The lab, the two nodes, the client, and the timeline printed on the terminal."""

    def __init__(self, lab: Lab, pace: Pace, style: Style, out: IO[str], workdir: Path) -> None:
        self.lab = lab
        self.pace = pace
        self.s = style
        self.out = out
        self.t0 = time.monotonic()
        self._wall_offset = time.time() - self.t0  # log lines are stamped by the wall clock
        self.workdir = workdir
        self.up, self.down = vip_scripts(workdir)
        self.results: list[StepResult] = []
        self.nodes: dict[str, Node] = {}
        self.client: Host | None = None
        self.prober: PingWatch | None = None
        self._ping_start = 0.0
        self._seen = 0  # replies already looked at
        self._last_reply: float | None = None
        self._silence_told = 0  # whole seconds of the current silence already announced

    # ------------------------------------------------------------------ printing

    def say(self, text: str = "", *styles: str) -> None:
        """Print a line of narration."""
        print(self.s(text, *styles) if text else "", file=self.out, flush=True)

    def explain(self, text: str) -> None:
        """Print a plain-words paragraph, wrapped and indented."""
        for line in textwrap.wrap(" ".join(text.split()), WIDTH - 4):
            self.say(f"    {line}")

    def event(self, when: float, who: str, text: str, *styles: str) -> None:
        """One timeline line: seconds since the start, who is MASTER now, who, what."""
        masters = [n.name for n in self.nodes.values() if n.state == "MASTER"]
        now = "-" if not masters else "+".join(masters)
        status = self.s(f"{now:<11}", "bold", "green") if masters else f"{now:<11}"
        print(f"  {when - self.t0:7.3f}  {status}  {self.s(f'{who:<7}', 'bold')} "
              f"{self.s(text, *styles)}", file=self.out, flush=True)

    def heading(self, number: int, title: str) -> None:
        """A step's title bar."""
        self.say()
        bar = f"== {number}. {title} "
        self.say(bar + "=" * max(0, WIDTH - len(bar)), "bold", "cyan")

    def pause(self) -> None:
        """Give a human time to read the explanation (keeps watching meanwhile)."""
        self.watch(self.pace.read)

    def begin(self, number: int, title: str, text: str) -> None:
        """A step's title bar and explanation, and the time to read them."""
        self.heading(number, title)
        self.explain(text)
        self.pause()

    # ------------------------------------------------------------------ the lab

    def build(self) -> None:
        """Create the switch, the two nodes and the client."""
        alpha = Node("alpha", self.lab.add_host("alpha", "192.0.2.1/24"), 0, True)
        beta = Node("beta", self.lab.add_host("beta", "192.0.2.2/24"), 20, False)
        self.nodes = {"alpha": alpha, "beta": beta}
        self.client = self.lab.add_host("client", "192.0.2.10/24")

    def start_node(self, node: Node) -> None:
        """Start the node's pyucarp daemon (this very copy of pyucarp, installed or not)."""
        node.daemon = start_pyucarp(node.host, self.workdir, node.options(self.up, self.down),
                                    name=node.name, python_flags=["-u"], cwd="/")

    def start_client(self, seconds: float) -> None:
        """Start pinging the VIP every 10 ms."""
        assert self.client is not None
        self.prober = self.client.start_ping_watch(VIP, PING_INTERVAL, seconds)
        self._last_reply = None
        self._ping_start = time.monotonic()

    def replies(self) -> list[float]:
        """Times of the client's echo replies so far."""
        return [] if self.prober is None else self.prober.replies()

    def vip_holders(self) -> list[str]:
        """Which nodes carry the VIP on their eth0 right now."""
        return [n.name for n in self.nodes.values() if n.host.has_address(VIP)]

    # ------------------------------------------------------------------ watching

    def watch(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        """Report what happens for up to ``seconds``; stop early once ``until()`` holds."""
        deadline = time.monotonic() + seconds
        while True:
            self._pump()
            if until is not None and until():
                return True
            if time.monotonic() >= deadline:
                return until is None
            time.sleep(0.01)

    def _pump(self) -> None:
        """Print what arrived: daemon log lines and changes in the client's replies."""
        arrived: list[tuple[float, Node, str]] = []
        for node in self.nodes.values():
            if node.daemon is None:
                continue
            now = time.monotonic()
            for line in node.daemon.follow():
                match = _LOG_RE.search(line)
                if match:
                    arrived.append((self._logged_at(match.group(1), now), node, match.group(3)))
                elif line.strip():
                    arrived.append((now, node, line.strip()))
        for when, node, message in sorted(arrived, key=lambda item: item[0]):
            self._log_line(when, node, message)
        for node in self.nodes.values():
            proc = node.daemon.proc if node.daemon is not None else None
            if proc is not None and proc.poll() is not None and not node.exit_told:
                node.exit_told = True
                node.state = "stopped"
                self.event(time.monotonic(), node.name,
                           f"daemon exited, status {proc.returncode}", "dim")
        self._watch_client()

    def _logged_at(self, stamp: str | None, read_at: float) -> float:
        """The monotonic time of a log line's own wall-clock stamp (``read_at`` without one)."""
        try:
            wall = dt.datetime.fromisoformat(stamp or "").timestamp()
        except ValueError:
            return read_at
        return min(read_at, wall - self._wall_offset)

    def _log_line(self, when: float, node: Node, message: str) -> None:
        state = re.match(r"Switching to state: (\w+)", message)
        if state:
            old, node.state = node.state, state.group(1)
            node.history.append((when, node.state))
            if node.state == "MASTER":
                node.master_since = when
            if old in ("-", "gone", "stopped"):
                self.event(when, node.name, f"daemon starts as {self.s.state(node.state)}")
            else:
                self.event(when, node.name, f"{old} -> {self.s.state(node.state)}")
        elif message.startswith("Spawning ["):
            script = Path(message[len("Spawning ["):].split()[0]).name
            what = f"adds {VIP} to" if "up" in script else f"removes {VIP} from"
            self.event(when, node.name, f"runs {script}: {what} its eth0", "dim")
        elif message.startswith("Local advertised") or "no script" in message:
            return
        else:
            meaning = _MEANINGS.get(message)
            self.event(when, node.name, meaning or f'log: "{message}"', "dim")

    def _watch_client(self) -> None:
        if self.prober is None:
            return
        now = time.monotonic()
        replies = self.prober.replies()
        new, self._seen = replies[self._seen:], len(replies)
        for t in new:
            if self._last_reply is None:
                self.event(t, "client", f"first reply from {VIP} after "
                           f"{t - self._ping_start:.3f} s", "green")
            elif t - self._last_reply > GAP_NOTICE:
                self.event(t, "client", f"replies again after {t - self._last_reply:.3f} s "
                           "without any", "green")
            self._last_reply = t
            self._silence_told = 0
        since = self._last_reply if self._last_reply is not None else self._ping_start
        silent = now - since
        if silent >= SILENCE_NOTICE and self._silence_told == 0:
            self._silence_told = 1
            text = ("no reply: nobody holds the address yet" if self._last_reply is None
                    else f"no reply from {VIP} since {since - self.t0:.3f}s")
            self.event(now, "client", text, "red")
        elif silent >= self._silence_told and self._silence_told >= 1:
            self.event(now, "client", f"... still silent ({self._silence_told} s)", "red")
            self._silence_told += 1

    def settled(self, master: str) -> Callable[[], bool]:
        """A predicate: ``master`` is the only MASTER and the client gets replies again."""
        def check() -> bool:
            states = {n.name: n.state for n in self.nodes.values()}
            others_backup = all(s != "MASTER" for k, s in states.items() if k != master)
            last = self._last_reply
            since = self.nodes[master].master_since
            # a reply counts only once it came after the change of MASTER
            return (states[master] == "MASTER" and others_backup and last is not None
                    and since is not None and last > since and time.monotonic() - last < 0.1)
        return check

    def outage(self, start: float, end: float) -> float:
        """The longest silence the client saw between ``start`` and ``end``."""
        return largest_gap(self.replies(), start, end)

    def settle(self, start: float) -> float:
        """End a hand-off that began at ``start``: let it settle, tell who holds the address
        now, and return the longest silence the client saw until this call."""
        end = time.monotonic()
        self.watch(self.pace.settle)
        gap = self.outage(start, end)
        self.summary_state()
        return gap

    def summary_state(self) -> None:
        """One line: who is MASTER and who carries the VIP, read from the lab itself."""
        holders = self.vip_holders()
        self.say(f"    now: {' + '.join(holders) if holders else 'nobody'} carries {VIP} "
                 "on its eth0", "dim")

    # ------------------------------------------------------------------ the steps

    def intro(self) -> None:
        """What the demo is about, and the lab's drawing."""
        s = self.s
        self.say(s("pyucarp demo: two machines, one address that never goes away", "bold"))
        self.say()
        self.explain("""
            CARP lets several machines share one IP address (the 'virtual IP'). One of them, the
            MASTER, answers for it and tells the others so by multicasting a short advertisement
            every second. The others are BACKUPs: they listen, and when the advertisements stop
            they take over. Each node has an 'advskew': the lower it is, the more that node is
            preferred.""")
        self.say()
        drawing = f"""\
                      client 192.0.2.10   pings {VIP} every 10 ms
                              |
        ====================== switch ======================
                  |                               |
          alpha 192.0.2.1                   beta 192.0.2.2
          advskew 0, --preempt              advskew 20
          (preferred)"""
        for line in drawing.splitlines():
            self.say(line)
        self.say()
        self.say("    Each step below is a timeline:", "dim")
        self.say(f"  {'seconds':>7}  {'MASTER':<11}  {'who':<7} what happened", "dim")

    def step_election(self) -> None:
        """1. Both start BACKUP; the lower advskew waits less and becomes MASTER."""
        self.heading(1, "Election")
        self.explain(f"""
            Both daemons start at the same moment, as BACKUP, and listen. A BACKUP that hears no
            MASTER for 3 x 1 s + advskew/256 s takes over: alpha waits {master_down_time(0):.3f}
            s, beta {master_down_time(20):.3f} s. So alpha becomes MASTER first, and beta,
            hearing it, stays BACKUP.""")
        start = time.monotonic()
        self.start_client(120)
        for node in self.nodes.values():
            self.start_node(node)
        ok = self.watch(master_down_time(0) + 5, self.settled("alpha"))
        alpha = self.nodes["alpha"]
        # counted from alpha's start as BACKUP: the master-down timer starts there
        began = alpha.history[0][0] if alpha.history else start
        took = (alpha.master_since - began) if ok and alpha.master_since else None
        self.watch(self.pace.settle)
        self.summary_state()
        self.results.append(StepResult(
            "1 election", "alpha MASTER" if ok else "alpha never became MASTER",
            f"MASTER after {took:.2f} s" if took is not None else "-",
            f"alpha after {master_down_time(0):.3f} s", ok))

    def step_vanish(self) -> None:
        """2. alpha is pulled off the switch and dies: beta waits the master-down time."""
        bound = master_down_time(20)
        self.begin(2, "The master's host vanishes", f"""
            alpha's machine dies: we pull it off the switch and kill its daemon, so no goodbye is
            sent. beta simply stops hearing advertisements. After 3 x 1 s + 20/256 s =
            {bound:.3f} s of silence it takes over; until then the client's pings go unanswered.
            We pull the plug just after one of alpha's advertisements, so beta has to wait the
            whole time.""")
        alpha = self.nodes["alpha"]
        # alpha advertises once a second from the moment it became MASTER
        since = alpha.master_since or time.monotonic()
        k = math.ceil((time.monotonic() - since) / ADVBASE)
        self.watch(max(0.0, since + k * ADVBASE + 0.01 - time.monotonic()))
        cut = time.monotonic()
        alpha.host.unplug()
        if alpha.daemon is not None:
            stop_process(alpha.daemon.proc, grace=None)
        alpha.host.del_address(VIP, missing_ok=True)  # the machine is off: nothing answers
        alpha.state = "gone"
        alpha.exit_told = True
        self.event(cut, "alpha", "unplugged from the switch and stopped dead", "red")
        ok = self.watch(bound + 5, self.settled("beta"))
        gap = self.settle(cut - 0.1)
        self.say(f"    The client waited {gap:.3f} s. CARP's bound: {bound:.3f} s after the "
                 "last advertisement,", "bold")
        self.say("    plus the few milliseconds the up script takes to add the address.", "bold")
        self.results.append(StepResult(
            "2 alpha's host vanishes", "beta took over" if ok else "beta did NOT take over",
            f"{gap:.3f} s", f"about {bound:.3f} s", ok))

    def step_return(self) -> None:
        """3. alpha boots again, hears beta, and preempts it (-P, lower advskew)."""
        self.begin(3, "alpha comes back", """
            alpha's machine is back on the switch (it rebooted, so it no longer holds the
            address) and its daemon starts again, as BACKUP. The first advertisement it hears is
            beta's, with advskew 20. alpha is preferred (advskew 0) and runs with --preempt, so
            it does not wait: it becomes MASTER at once. beta hears a preferred MASTER and steps
            back to BACKUP.""")
        alpha = self.nodes["alpha"]
        start = time.monotonic()
        alpha.host.plug()
        alpha.state = "-"
        alpha.master_since = None
        alpha.exit_told = False
        self.event(start, "alpha", "plugged in again, daemon restarted")
        self.start_node(alpha)
        ok = self.watch(ADVBASE + 20 / 256 + 5, self.settled("alpha"))
        gap = self.settle(start)
        self.say(f"    Hand-off back to alpha: the client's longest wait was {gap:.3f} s.", "bold")
        self.results.append(StepResult(
            "3 alpha returns (-P)", "alpha MASTER again" if ok else "alpha did NOT preempt",
            f"{gap:.3f} s", "a short hand-off", ok))

    def step_graceful(self) -> None:
        """4. SIGTERM alpha (-z): its leave advert lets beta take over at once."""
        skew = leave_takeover_delay(20)
        self.begin(4, "Graceful hand-off", f"""
            Now alpha is stopped on purpose, for maintenance: SIGTERM, and because it runs with
            --shutdown (-z) it hands over cleanly. Its last advertisement says 'I am leaving'
            (advbase 255, advskew 255), so beta need not wait 3 seconds: it takes over after just
            an eighth of its own advskew/256 = {skew:.3f} s.""")
        alpha = self.nodes["alpha"]
        start = time.monotonic()
        if alpha.daemon is not None:
            alpha.daemon.send_signal(signal.SIGTERM)
        self.event(start, "alpha", "SIGTERM: leave advert, down script, exit")
        ok = self.watch(5, self.settled("beta"))
        gap = self.settle(start)
        self.say(f"    The client waited only {gap:.3f} s.", "bold")
        self.results.append(StepResult(
            "4 graceful stop (-z)", "beta took over" if ok else "beta did NOT take over",
            f"{gap:.3f} s", f"about {skew:.3f} s", ok))

    def summary(self) -> None:
        """5. The table of what was measured."""
        self.heading(5, "Summary")
        header = ("step", "result", "measured", "CARP expects")
        rows = [(r.title, r.outcome, r.outage, r.expected) for r in self.results]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
        fmt = "    " + "  ".join(f"{{:<{w}}}" for w in widths)
        self.say(fmt.format(*header).rstrip(), "bold")
        self.say(fmt.format(*("-" * w for w in widths)))
        for r, row in zip(self.results, rows, strict=True):
            self.say(fmt.format(*row).rstrip(), *(() if r.ok else ("red",)))
        self.say()
        self.explain("""
            A dead master costs the client about 3 seconds: the time CARP needs to be sure it is
            gone. A planned stop costs almost nothing, because pyucarp says goodbye.""")


def _tell(text: str) -> None:
    """Print to stdout, shrugging off a reader that has gone away."""
    try:
        print(text, flush=True)
    except OSError:
        pass


def _on_stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The demo's options."""
    parser = argparse.ArgumentParser(
        prog="python3 -m pyucarp.lab.demo",
        description="Watch two pyucarp nodes share an address in a namespace lab (needs root).")
    parser.add_argument("--quick", action="store_true", help="shorter pauses (about 20 s)")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the whole story; 0 when every step went as CARP says it should."""
    args = parse_args(argv)
    color = (not args.no_color and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
             and "NO_COLOR" not in os.environ)
    style = Style(color)
    if os.geteuid() != 0:
        print("pyucarp demo: needs root (it builds network namespaces)", file=sys.stderr)
        return 1
    if shutil.which("ip") is None:
        print("pyucarp demo: iproute2's 'ip' command is missing", file=sys.stderr)
        return 1
    old = {sig: signal.signal(sig, _on_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    lab = Lab(prefix="pydemo")
    status = 1
    story: Story | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="pyucarp-demo-") as workdir:
            try:
                lab.__enter__()
                story = Story(lab, QUICK if args.quick else NORMAL, style, sys.stdout,
                              Path(workdir))
                story.intro()
                story.build()
                story.step_election()
                story.step_vanish()
                story.step_return()
                story.step_graceful()
                story.summary()
                status = 0 if all(r.ok for r in story.results) else 1
            finally:
                for sig in old:  # a second SIGTERM must not cut the teardown short
                    signal.signal(sig, signal.SIG_IGN)
                # the lab goes first: printing may fail (a closed pipe) and must not stop it
                left = lab.close(raise_on_leftover=False)
                _tell(style("\n    tearing the lab down ...", "dim"))
                if left:
                    print(f"pyucarp demo: could not delete namespaces {left}", file=sys.stderr)
                    status = 1
                else:
                    _tell(style("    done: every process stopped, every namespace deleted.",
                                "dim"))
    except KeyboardInterrupt:
        print("\npyucarp demo: interrupted; the lab is gone.", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"\npyucarp demo: stopped by {stop}; the lab is gone.", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # the reader went away (``| head``): nothing more to say, and no noise at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (LabError, OSError, subprocess.SubprocessError) as exc:
        print(f"pyucarp demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return status


if __name__ == "__main__":
    sys.exit(main())
