"""pyucarp.core.instance: the per-instance pipeline, stepped by hand, and the core's purity."""

from __future__ import annotations

import ast
import random
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pyucarp.core.codec import ADVERT_LEN, ARP_LEN, Dropped, DropReason, parse_frame
from pyucarp.core.instance import CarpInstance, Frame
from pyucarp.core.machine import Log, Params, RunScript, State, StateChanged

CORE = Path(__file__).resolve().parent.parent / "pyucarp" / "core"
# Typed records for every layer (pyucarp.records): pure too, so the core may use them.
RECORDS = CORE.parent / "records.py"
FORBIDDEN = {"socket", "select", "selectors", "subprocess", "os", "time", "threading",
             "signal", "asyncio", "io", "pathlib", "shutil", "tempfile", "syslog"}

VIP = IPv4Address("192.0.2.100")
GROUP = IPv4Address("224.0.0.18")
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def _imports(tree: ast.AST) -> set[str]:
    """Every module a file imports, statically or through importlib/__import__ literals."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value.split(".")[0])
    return found


def test_the_core_imports_no_io_module() -> None:
    files = sorted(CORE.glob("*.py"))
    assert {f.name for f in files} >= {"codec.py", "machine.py", "replay.py", "instance.py"}
    for path in [*files, RECORDS]:
        imported = _imports(ast.parse(path.read_text(), str(path)))
        assert not imported & FORBIDDEN, f"{path.name} imports {sorted(imported & FORBIDDEN)}"
    # Within pyucarp, the core uses the core only (no shell module sneaks I/O in).
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("pyucarp"):
                assert module.startswith("pyucarp.core") or module == "pyucarp.records", \
                    f"{path.name}: {module}"


def test_the_purity_check_sees_an_io_import() -> None:
    tree = ast.parse("import os\nfrom time import monotonic\nimportlib.import_module('socket')")
    assert _imports(tree) >= {"os", "time", "socket"}


def _instance(srcip: str, *, advskew: int = 0, mac: bytes = MAC_A, seed: int = 1,
              password: bytes = b"secret", preempt: bool = False) -> CarpInstance:
    rng = random.Random(seed)
    return CarpInstance(
        vhid=7, password=password, vip=VIP, group=GROUP, nomcast=False,
        params=Params(advskew=advskew, srcip=IPv4Address(srcip), preempt=preempt),
        mac=mac, random_bits=rng.getrandbits,
    )


def _settle(inst: CarpInstance, *, scripts_ok: bool = True) -> tuple[list[Frame], list[object]]:
    """Play the shell: transmit (successfully), run every script at once, until quiet."""
    frames: list[Frame] = []
    events: list[object] = []
    for _ in range(20):
        out, evs = inst.frames_to_send(), inst.events()
        if not out and not evs:
            return frames, events
        for frame in out:
            frames.append(frame)
            if frame.advert:
                inst.advert_sent(True)
        for event in evs:
            events.append(event)
            if isinstance(event, RunScript):
                inst.script_finished(event.kind, scripts_ok)
    raise AssertionError("the instance did not settle")


def test_a_lone_instance_becomes_master_after_the_master_down_time() -> None:
    a = _instance("192.0.2.1", advskew=10)
    a.start(0.0)
    frames, events = _settle(a)
    assert frames == []
    assert [e for e in events if isinstance(e, RunScript)] == [RunScript("down")]
    due = a.get_timer()
    assert due == pytest.approx(3 + 10 / 256)
    a.handle_timer(due - 1e-6)
    assert _settle(a) == ([], [])  # nothing before its time
    a.handle_timer(due)
    frames, events = _settle(a)
    assert a.state is State.MASTER
    kinds = [(len(f.data), f.advert) for f in frames]
    # The advert first, then the gratuitous ARP (at our MAC), then the upscript.
    assert kinds[:2] == [(ADVERT_LEN, True), (ARP_LEN, False)]
    assert frames[1].data[6:12] == MAC_A and frames[1].data[22:28] == MAC_A
    changes = [(e.old, e.new) for e in events if isinstance(e, StateChanged)]
    assert changes == [(State.BACKUP, State.MASTER)]
    assert RunScript("up") in events
    advert = parse_frame(frames[0].data)
    assert not isinstance(advert, Dropped)
    assert (advert.vhid, advert.advskew, advert.src) == (7, 10, IPv4Address("192.0.2.1"))
    assert a.counters.adverts_sent == 1


def test_frames_cross_between_two_instances_and_a_replay_is_dropped() -> None:
    a, b = _instance("192.0.2.1"), _instance("192.0.2.2", advskew=50, mac=MAC_B, seed=2)
    a.start(0.0)
    b.start(0.0)
    _settle(a)
    _settle(b)
    a.handle_timer(3.0)
    frames, _ = _settle(a)
    advert = next(f.data for f in frames if f.advert)
    b.receive_frame(advert, 3.001)
    assert _settle(b) == ([], [])
    assert b.counters.adverts_received == 1
    assert b.get_timer() == pytest.approx(3.001 + 3 + 50 / 256)
    # The same frame again is a replay: counted, reported, and the timer is not re-armed.
    b.receive_frame(advert, 3.5)
    frames, events = _settle(b)
    assert frames == [] and len(events) == 1
    assert isinstance(events[0], Dropped) and events[0].reason is DropReason.REPLAY
    assert b.counters.dropped == {"replay": 1} and b.counters.adverts_received == 1
    assert b.get_timer() == pytest.approx(3.001 + 3 + 50 / 256)


def test_a_frame_with_another_password_is_dropped_and_counted() -> None:
    a = _instance("192.0.2.1")
    b = _instance("192.0.2.2", advskew=50, password=b"other", seed=3)
    for inst in (a, b):
        inst.start(0.0)
        _settle(inst)
    a.handle_timer(3.0)
    advert = next(f.data for f in _settle(a)[0] if f.advert)
    b.receive_frame(advert, 3.0)
    _frames, events = _settle(b)
    assert [e.reason for e in events if isinstance(e, Dropped)] == [DropReason.BAD_DIGEST]
    assert b.counters.dropped["bad_digest"] == 1
    # Its own advert coming back is silently ignored, not counted.
    a.receive_frame(advert, 3.1)
    assert _settle(a) == ([], []) and not a.counters.dropped


def test_graceful_shutdown_sends_the_leave_advert_after_the_downscript() -> None:
    a = _instance("192.0.2.1")
    a.start(0.0)
    _settle(a)
    a.handle_timer(3.0)
    _settle(a)
    a.shutdown(4.0)
    assert a.frames_to_send() == []  # nothing before the downscript has run
    events = a.events()
    assert RunScript("down") in events
    a.script_finished("down", True)
    frames = a.frames_to_send()
    assert len(frames) == 1 and frames[0].advert
    leave = parse_frame(frames[0].data)
    assert not isinstance(leave, Dropped) and (leave.advbase, leave.advskew) == (255, 255)


def test_three_send_failures_suppress_to_advskew_240() -> None:
    a = _instance("192.0.2.1", advskew=5)
    a.start(0.0)
    _settle(a)
    a.handle_timer(3.0 + 5 / 256)
    now = 3.0 + 5 / 256
    skews: list[int] = []
    logs: list[str] = []
    for _ in range(6):
        for frame in a.frames_to_send():
            if frame.advert:
                fields = parse_frame(frame.data)
                assert not isinstance(fields, Dropped)
                skews.append(fields.advskew)
                a.advert_sent(False)
        for event in a.events():
            if isinstance(event, RunScript):
                a.script_finished(event.kind, True)
            elif isinstance(event, Log):
                logs.append(event.message)
        now = a.get_timer() or now
        a.handle_timer(now)
    assert skews[:3] == [5, 5, 5] and 240 in skews[3:]
    assert a.counters.send_errors == len(skews) and a.counters.adverts_sent == 0
    assert "Advertisements keep failing: advertising advskew 240" in logs
