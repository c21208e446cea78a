"""The CARP state machine against the C ucarp's captures (``tests/vectors/cucarp.json``):
a lone ucarp's cadence and ARPs, and a pair's counters and decisions replayed frame by frame.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from machine_helpers import changes, master_rig, of
from pyucarp.core.codec import Advert, AdvertCodec, CarpFrame, parse_frame
from pyucarp.core.machine import (
    CarpMachine,
    Params,
    Reason,
    SendAdvert,
    SendGratuitousArp,
    State,
    interval,
)

VECTORS_FILE = Path(__file__).resolve().parent / "vectors" / "cucarp.json"


def _pair_capture() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(VECTORS_FILE.read_text())
    except (OSError, ValueError):
        return None
    pair: dict[str, Any] | None = data.get("pair")
    return pair


def _captured_configs() -> list[dict[str, Any]]:
    try:
        data: dict[str, Any] = json.loads(VECTORS_FILE.read_text())
    except (OSError, ValueError):
        return []
    configs: list[dict[str, Any]] = data.get("vectors", [])
    return configs


def _arp_positions(events: list[tuple[float, str]]) -> list[int]:
    """For each ARP, the number of the advert sent at the same moment (1-based, 5 ms)."""
    adverts = [t for t, kind in events if kind == "advert"]
    out = []
    for t, kind in events:
        if kind == "arp":
            near = [i for i, ta in enumerate(adverts, 1) if abs(ta - t) <= 0.005]
            out.append(near[0] if near else 0)
    return out


@pytest.mark.parametrize("cfg", _captured_configs(), ids=lambda c: str(c.get("name")))
def test_cucarp_capture_cadence_and_arps_match_the_machine(cfg: dict[str, Any]) -> None:
    """A lone C ucarp becoming master: its advert interval and the adverts its two gratuitous
    ARPs go out with are what our machine produces for the same configuration."""
    c = cfg["config"]
    captured = [(float(f["t"]), str(f["kind"])) for f in cfg["frames"]]
    r, t0 = master_rig(advbase=c["advbase"], advskew=c["advskew"])
    ours: list[tuple[float, str]] = [(t0, "advert"), (t0, "arp")]
    n_adverts = sum(1 for _, k in captured if k == "advert")
    for _ in range(n_adverts - 1):
        t = r.m.next_wakeup()
        assert t is not None
        for a in r.m.handle_timer(t):
            if isinstance(a, SendAdvert):
                ours.append((t, "advert"))
            elif isinstance(a, SendGratuitousArp):
                ours.append((t, "arp"))
    assert _arp_positions(ours) == _arp_positions(captured) == [1, 3]
    step = interval(c["advbase"], c["advskew"])
    times = [t for t, k in captured if k == "advert"]
    assert all(abs((b - a) - step) <= 0.005 for a, b in zip(times, times[1:], strict=False)), times


def test_cucarp_pair_counters_and_decisions_replayed() -> None:
    """Two C ucarps (pa skew 100; pb skew 0 with -P joins, preempts, dies): fed the same
    adverts, our machine makes the same decisions and sends byte-identical adverts."""
    pair = _pair_capture()
    if pair is None:
        pytest.skip(f"no pair capture in {VECTORS_FILE.name}")
    c = pair["config"]
    kw: dict[str, Any] = dict(vhid=c["vhid"], password=bytes.fromhex(c["password_hex"]),
                              vip=IPv4Address(c["vip"]), group=IPv4Address("224.0.0.18"))
    ips = {who: IPv4Address(c[who]["srcip"]) for who in ("pa", "pb")}
    codecs = {who: AdvertCodec(srcip=ips[who], **kw) for who in ips}
    listener = AdvertCodec(srcip=IPv4Address("192.0.2.254"), **kw)
    adverts: list[tuple[float, str, bytes, CarpFrame, Advert]] = []
    for fr in pair["frames"]:
        if fr["kind"] != "advert":
            continue
        frame = bytes.fromhex(fr["hex"])
        parsed, decoded = parse_frame(frame), listener.decode(frame)
        assert isinstance(parsed, CarpFrame) and isinstance(decoded, Advert)
        adverts.append((fr["t"], fr["from"], frame, parsed, decoded))

    def same_frame(
        who: str, sent: SendAdvert, captured: tuple[float, str, bytes, CarpFrame, Advert]
    ) -> None:
        _, frm, frame, parsed, _ = captured
        assert frm == who
        encoded = codecs[who].encode(advbase=sent.advbase, advskew=sent.advskew,
                                     counter=sent.counter, ip_id=parsed.ip_id)
        assert encoded == frame

    def params(who: str) -> Params:
        return Params(advbase=c["advbase"], advskew=c[who]["advskew"],
                      preempt=bool(c[who].get("preempt", False)), srcip=ips[who])

    # pb starts, hears pa's next advert and preempts: its first advert is pa's counter + 1.
    pb = CarpMachine(params("pb"), lambda: 0)
    pb.start(pair["events"]["b_started"])
    i_pb = next(i for i, a in enumerate(adverts) if a[1] == "pb")
    heard = adverts[i_pb - 1]
    assert heard[1] == "pa" and heard[0] > pair["events"]["b_started"]
    acts = pb.advert_received(heard[0], heard[4])
    assert changes(acts)[0].reason is Reason.PREEMPTION
    same_frame("pb", of(acts, SendAdvert)[0], adverts[i_pb])

    # pa, master, hears pb and steps down with one more advert carrying pb's counter + 1.
    pa = CarpMachine(params("pa"), lambda: 0)
    pa.start(0.0)
    pa.handle_timer(3 + c["pa"]["advskew"] / 256)
    assert pa.state is State.MASTER
    acts = pa.advert_received(adverts[i_pb][0], adverts[i_pb][4])
    assert changes(acts)[0].reason is Reason.PREFERRED_MASTER
    one_more = of(acts, SendAdvert)[0]
    same_frame("pa", one_more, next(
        a for a in adverts[i_pb:] if a[1] == "pa" and a[3].counter == one_more.counter
    ))

    # pa hears pb's remaining adverts; pb dies; pa's takeover advert is the last counter + 1.
    pb_adverts = [a for a in adverts if a[1] == "pb"]
    for a in pb_adverts[1:]:
        pa.advert_received(a[0], a[4])
    wake = pa.next_wakeup()
    assert wake is not None
    assert wake == pb_adverts[-1][0] + 3 + c["pa"]["advskew"] / 256
    acts = pa.handle_timer(wake)
    takeover = next(a for a in adverts if a[1] == "pa" and a[0] > pair["events"]["b_killed"])
    same_frame("pa", of(acts, SendAdvert)[0], takeover)
