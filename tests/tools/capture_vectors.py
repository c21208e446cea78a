"""Regenerate tests/vectors/cucarp.json: wire frames captured from the real C ucarp.

Each configuration runs /usr/sbin/ucarp alone on its own lab host (unplugged from the bridge,
so it hears nobody and becomes MASTER after advbase * 3 + advskew/256 s); its adverts and
gratuitous ARPs are captured on the host's eth0. A second scenario runs two ucarps on one
segment to show how the advert counter behaves once a valid peer advert was accepted.
The "notes" field is computed from the captures, so it always tells what this run saw.

Usage (root, iproute2, ucarp installed):  python3 tests/tools/capture_vectors.py [-o FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import math
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS_DIR.parent))  # this work tree's pyucarp, installed or not

from pyucarp.lab import netlab  # noqa: E402

UCARP = "/usr/sbin/ucarp"
DEFAULT_OUT = TESTS_DIR / "vectors" / "cucarp.json"
ADVERTS_WANTED = 4
ARPS_WANTED = 2


@dataclass(frozen=True)
class Vector:
    """One ucarp configuration to capture."""

    name: str
    vhid: int
    password: bytes
    advbase: int = 1
    advskew: int = 0
    nomcast: bool = False
    group: str | None = None  # None: ucarp's default 224.0.0.18, option not passed


VECTORS = [
    Vector("vhid1-basic", 1, b"secret"),
    Vector("vhid7-skew10", 7, b"s3cret", advskew=10),
    Vector("vhid42-love", 42, b"love", advskew=10),
    Vector("vhid255-pass19", 255, b"abcdefghijklmnopqrs"),  # the 19-byte maximum
    Vector("vhid42-spaces-nonascii", 42, b"p\xe4ss w\xf6rd \xff!"),  # latin-1 bytes, not UTF-8
    Vector("vhid9-skew200", 9, b"skewed", advskew=200),
    Vector("vhid3-advbase2", 3, b"slow", advbase=2),
    Vector("vhid5-nomcast", 5, b"bcast", nomcast=True),
    Vector("vhid11-group", 11, b"grouped", group="239.255.0.18"),
    Vector("vhid12-group-nomcast", 12, b"both", advbase=2, advskew=10, nomcast=True,
           group="239.255.0.18"),
]


def ucarp_argv(
    v: Vector, srcip: str, vip: str, extra: list[str] | None = None
) -> list[str | bytes]:
    """The C ucarp command line for ``v`` (scripts are /bin/true)."""
    argv: list[str | bytes] = [
        UCARP, "-i", "eth0", "-s", srcip, "-v", str(v.vhid), "-p", v.password, "-a", vip,
        "-b", str(v.advbase), "-k", str(v.advskew), "-u", "/bin/true", "-d", "/bin/true",
    ]
    if v.nomcast:
        argv.append("-M")
    if v.group is not None:
        argv.append(f"--mcast={v.group}")  # spelled as ucarp's --help spells it
    return argv + (extra or [])


def shown_argv(argv: list[str | bytes]) -> list[str]:
    """Argv for the JSON file, the password replaced by a placeholder."""
    out = []
    for i, a in enumerate(argv):
        prev = argv[i - 1] if i else ""
        word = a if isinstance(a, str) else a.decode("latin-1")
        out.append("<password>" if prev == "-p" else word)
    return out


# ----------------------------------------------------------------------------- frame decoding


def kind_of(frame: bytes) -> str:
    """"advert", "arp" or "other"."""
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0806:
        return "arp"
    if ethertype == 0x0800 and len(frame) >= 34 and frame[23] == 112:
        return "advert"
    return "other"


def inet_checksum_ok(data: bytes) -> bool:
    """RFC 1071: the one's complement sum over data including its checksum is 0xffff."""
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def decode_advert(frame: bytes) -> dict[str, Any]:
    """The fields of a 70-byte CARP advert frame."""
    ip, carp = frame[14:34], frame[34:70]
    return {
        "eth_dst": frame[0:6].hex(":"), "eth_src": frame[6:12].hex(":"),
        "tos": ip[1], "total_length": int.from_bytes(ip[2:4], "big"),
        "ip_id": int.from_bytes(ip[4:6], "big"), "ip_flags_frag": int.from_bytes(ip[6:8], "big"),
        "ttl": ip[8], "ip_src": str(ipaddress.IPv4Address(ip[12:16])),
        "ip_dst": str(ipaddress.IPv4Address(ip[16:20])), "ip_checksum_ok": inet_checksum_ok(ip),
        "version_type": carp[0], "vhid": carp[1], "advskew": carp[2], "authlen": carp[3],
        "pad": carp[4], "advbase": carp[5], "carp_checksum_ok": inet_checksum_ok(carp),
        "counter": int.from_bytes(carp[8:16], "big"), "hmac": carp[16:36].hex(),
    }


def expected_hmac(password: bytes, vhid: int, vip: str, counter: bytes) -> str:
    """HMAC-SHA1(password, 0x02 0x01 vhid VIP counter): what docs/compat.md §2 says ucarp signs."""
    msg = bytes([2, 1, vhid]) + ipaddress.IPv4Address(vip).packed + counter
    return hmac.new(password, msg, hashlib.sha1).hexdigest()


def decode_arp(frame: bytes) -> dict[str, Any]:
    """The fields of an Ethernet/IPv4 ARP frame."""
    arp = frame[14:42]
    return {
        "eth_dst": frame[0:6].hex(":"), "eth_src": frame[6:12].hex(":"),
        "op": int.from_bytes(arp[6:8], "big"), "sender_mac": arp[8:14].hex(":"),
        "sender_ip": str(ipaddress.IPv4Address(arp[14:18])), "target_mac": arp[18:24].hex(":"),
        "target_ip": str(ipaddress.IPv4Address(arp[24:28])),
    }


def frame_entries(
    records: list[netlab.CapturedFrame], t0: float, names: dict[str, str]
) -> list[dict[str, Any]]:
    """JSON entries for captured frames: time since t0, kind, sender host, hex."""
    out = []
    for r in records:
        kind = kind_of(r.data)
        if kind == "other":
            continue
        if kind == "advert":
            sender = names.get(str(ipaddress.IPv4Address(r.data[26:30])), "?")
        else:
            sender = names.get(r.data[6:12].hex(":"), "?")
        out.append({"t": round(r.t - t0, 3), "kind": kind, "from": sender, "hex": r.data.hex()})
    return out


# ----------------------------------------------------------------------------- scenarios


def capture_single(lab: netlab.Lab, index: int, v: Vector, results: list[dict[str, Any]]) -> None:
    """Run ucarp for ``v`` alone on a fresh host until enough frames are seen."""
    host = lab.add_host(f"c{index}", f"192.0.2.{10 + index}/24")
    host.unplug()  # alone on its wire: carrier stays up, nobody hears it
    vip = f"192.0.2.{100 + index}"
    argv = ucarp_argv(v, host.ip, vip)
    interval = v.advbase + v.advskew / 256
    timeout = 3 * v.advbase + v.advskew / 256 + (ADVERTS_WANTED + 2) * interval + 3

    def enough(frames: list[tuple[float, bytes]]) -> bool:
        kinds = [kind_of(f) for _, f in frames]
        return kinds.count("advert") >= ADVERTS_WANTED and kinds.count("arp") >= ARPS_WANTED

    with host.capture(kinds=("carp", "arp"), max_seconds=timeout + 5) as cap:
        t0 = time.monotonic()
        proc = host.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cap.wait_for(enough, timeout)
        proc.terminate()
    frames = frame_entries(cap.records(), t0, {host.ip: host.name, host.mac(): host.name})
    kept: list[dict[str, Any]] = []  # capture order: same-millisecond frames stay in wire order
    for f in frames:
        limit = ADVERTS_WANTED if f["kind"] == "advert" else ARPS_WANTED
        if sum(1 for k in kept if k["kind"] == f["kind"]) < limit:
            kept.append(f)
    results[index] = {
        "name": v.name,
        "config": {
            "vhid": v.vhid,
            "password_hex": v.password.hex(),
            "password_text": v.password.decode("ascii") if v.password.isascii() else None,
            "vip": vip, "srcip": host.ip, "advbase": v.advbase, "advskew": v.advskew,
            "nomcast": v.nomcast, "group": v.group or "224.0.0.18",
            "group_option_given": v.group is not None,
        },
        "argv": shown_argv(argv),
        "mac": host.mac(),
        "frames": kept,
    }


def capture_pair(lab: netlab.Lab) -> dict[str, Any]:
    """Two ucarps, one vhid: A alone becomes master; B (better, -P) joins and preempts; B dies."""
    a = lab.add_host("pa", "192.0.2.21/24")
    b = lab.add_host("pb", "192.0.2.22/24")
    vip = "192.0.2.150"
    va = Vector("pair-a", 50, b"pairpass", advskew=100)
    vb = Vector("pair-b", 50, b"pairpass", advskew=0)
    names = {a.ip: "pa", b.ip: "pb", a.mac(): "pa", b.mac(): "pb"}
    events: dict[str, float] = {}

    def adverts_from(frames: list[tuple[float, bytes]], ip: str) -> int:
        src = ipaddress.IPv4Address(ip).packed
        return sum(1 for _, f in frames if kind_of(f) == "advert" and f[26:30] == src)

    with lab.capture_bridge(kinds=("carp", "arp"), max_seconds=60) as cap:
        t0 = time.monotonic()
        pa = a.popen(ucarp_argv(va, a.ip, vip), stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        cap.wait_for(lambda fr: adverts_from(fr, a.ip) >= 3, 10)
        events["b_started"] = time.monotonic() - t0
        pb = b.popen(ucarp_argv(vb, b.ip, vip, ["-P"]), stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        cap.wait_for(lambda fr: adverts_from(fr, b.ip) >= 5, 15)
        events["b_killed"] = time.monotonic() - t0
        pb.kill()
        pb.wait(5)
        seen = adverts_from(cap.frames(), a.ip)
        cap.wait_for(lambda fr: adverts_from(fr, a.ip) >= seen + 4, 10)
        pa.terminate()
    return {
        "name": "pair-preempt-then-failover",
        "description": (
            "pa (advskew 100) starts alone and becomes MASTER; pb (advskew 0, -P) starts at "
            "b_started, accepts pa's adverts and preempts; pb is SIGKILLed at b_killed and pa "
            "takes over again. Captured on the bridge; 'from' names the sender."
        ),
        "config": {
            "vhid": 50, "password_hex": b"pairpass".hex(), "password_text": "pairpass", "vip": vip,
            "advbase": 1, "pa": {"srcip": a.ip, "advskew": 100, "mac": a.mac()},
            "pb": {"srcip": b.ip, "advskew": 0, "preempt": True, "mac": b.mac()},
        },
        "events": {k: round(t, 3) for k, t in events.items()},
        "frames": frame_entries(cap.records(), t0, names),
    }


# ----------------------------------------------------------------------------- analysis


def counters(frames: list[dict[str, Any]], sender: str | None = None) -> list[int]:
    """Advert counters in capture order, optionally from one sender only."""
    return [
        decode_advert(bytes.fromhex(f["hex"]))["counter"]
        for f in frames
        if f["kind"] == "advert" and (sender is None or f["from"] == sender)
    ]


def plus_one_steps(values: list[int]) -> tuple[int, int]:
    """(number of consecutive pairs, how many of them were exactly +1)."""
    pairs = list(zip(values, values[1:], strict=False))
    return len(pairs), sum(1 for x, y in pairs if y == (x + 1) % 2**64)


def analyse(vectors: list[dict[str, Any]], pair: dict[str, Any]) -> list[str]:
    """Facts seen in this capture, as sentences for the "notes" field."""
    notes = []
    pairs_total = plus_total = 0
    hmac_ok = checks_ok = arp_shape_ok = True
    ip_ids: list[int] = []
    lengths = set()
    for vec in vectors:
        cfg = vec["config"]
        for f in vec["frames"]:
            data = bytes.fromhex(f["hex"])
            lengths.add((f["kind"], len(data)))
            if f["kind"] == "advert":
                d = decode_advert(data)
                ip_ids.append(d["ip_id"])
                want = expected_hmac(bytes.fromhex(cfg["password_hex"]), cfg["vhid"], cfg["vip"],
                                     data[42:50])
                hmac_ok &= want == d["hmac"]
                checks_ok &= d["ip_checksum_ok"] and d["carp_checksum_ok"]
            else:
                d = decode_arp(data)
                arp_shape_ok &= (d["op"] == 1 and d["eth_src"] == d["sender_mac"] == d["target_mac"]
                                 == vec["mac"] and d["eth_dst"] == "ff:ff:ff:ff:ff:ff"
                                 and d["sender_ip"] == d["target_ip"] == cfg["vip"])
        n, k = plus_one_steps(counters(vec["frames"]))
        pairs_total += n
        plus_total += k
    notes.append(
        f"Alone (no peer ever heard): {plus_total} of {pairs_total} consecutive advert pairs had "
        "counter+1; "
        + ("the counter is a fresh random 64-bit value in every advert." if plus_total == 0
           else "so counters are NOT always random while alone.")
    )
    notes.append(
        f"HMAC-SHA1(password, 02 01 vhid VIP counter) matches every captured advert: {hmac_ok}."
    )
    notes.append(f"IP header and CARP checksums valid in every advert: {checks_ok}.")
    notes.append(
        f"IP IDs seen in adverts (random per packet?): {len(set(ip_ids))} distinct of "
        f"{len(ip_ids)}."
    )
    notes.append(f"Frame lengths seen (kind, bytes): {sorted(lengths)}.")
    dests = []
    for vec in vectors:
        first = next(f for f in vec["frames"] if f["kind"] == "advert")
        d = decode_advert(bytes.fromhex(first["hex"]))
        dests.append(f"{vec['name']}: {d['eth_src']} -> {d['eth_dst']}, IP dst {d['ip_dst']}")
    notes.append("Advert addresses (Ethernet src -> dst, IP dst): " + "; ".join(dests) + ".")
    notes.append(
        "Gratuitous ARPs are requests (op 1), Ethernet source = sender MAC = target MAC = the "
        "interface MAC, destination broadcast, sender IP = target IP = VIP: "
        f"{arp_shape_ok}."
    )
    times = []
    for vec in vectors:
        cfg = vec["config"]
        kinds = [f["kind"] for f in vec["frames"]]
        ads = [f["t"] for f in vec["frames"] if f["kind"] == "advert"]
        if not ads or kinds.count("arp") < 2:
            continue
        second_arp = [i for i, k in enumerate(kinds) if k == "arp"][1]
        interval = cfg["advbase"] + cfg["advskew"] / 256
        timer = 3 * cfg["advbase"] + cfg["advskew"] / 256
        # ucarp's BACKUP loop sleeps in poll() for a whole interval and checks the
        # master-down timer only when poll returns: on a silent wire the timer fires at
        # the first multiple of the interval past it
        quantized = math.ceil(timer / interval - 1e-9) * interval
        times.append(
            f"{vec['name']}: first advert {ads[0]:.2f}s (timer 3*advbase+advskew/256 = "
            f"{timer:.2f}, first multiple of the interval past it = {quantized:.2f}), "
            f"frames in order {''.join('A' if k == 'arp' else 'v' for k in kinds)} "
            f"(A = ARP, v = advert), second ARP after advert #{kinds[:second_arp].count('advert')}"
        )
    notes.append("Timing after start, alone: " + "; ".join(times) + ".")
    frames = pair["frames"]
    b_adv = counters(frames, "pb")
    a_adv = counters(frames, "pa")
    a_before = [f for f in frames if f["kind"] == "advert" and f["from"] == "pa"
                and f["t"] < pair["events"]["b_started"]]
    a_after = [f for f in frames if f["kind"] == "advert" and f["from"] == "pa"
               and f["t"] > pair["events"]["b_killed"]]
    n_b, k_b = plus_one_steps(b_adv)
    n_a0, k_a0 = plus_one_steps(counters(a_before))
    n_a1, k_a1 = plus_one_steps(counters(a_after))
    # does pb's first advert continue pa's last counter before it?
    first_b = next(
        (i for i, f in enumerate(frames) if f["kind"] == "advert" and f["from"] == "pb"), None
    )
    link = "n/a"
    if first_b is not None:
        prev_a = [f for f in frames[:first_b] if f["kind"] == "advert" and f["from"] == "pa"]
        if prev_a:
            pa_last = counters(prev_a)[-1]
            link = f"{(counters([frames[first_b]])[0] - pa_last) % 2**64:#x}"
    cross = "n/a"
    if a_after and b_adv:
        last_b = [f for f in frames if f["kind"] == "advert" and f["from"] == "pb"][-1]
        cross = f"{(counters([a_after[0]])[0] - counters([last_b])[0]) % 2**64:#x}"
    trace = []
    seen_counters: dict[int, str] = {}
    for f in frames:
        if f["kind"] != "advert":
            continue
        value = counters([f])[0]
        origin = seen_counters.get((value - 1) % 2**64)
        trace.append(f"{f['t']:.2f} {f['from']} " + (f"= {origin} + 1" if origin else "random"))
        seen_counters.setdefault(value, f"{f['from']}@{f['t']:.2f}")
    notes.append(
        "Pair counter trace (time sender relation; 'random' = not 1 + any earlier counter on "
        "the wire): " + "; ".join(trace) + "."
    )
    notes.append(
        f"Pair: pa alone before pb started: {k_a0}/{n_a0} +1 steps. pb (after accepting pa's "
        f"adverts): {k_b}/{n_b} +1 steps; pb's first counter minus pa's last counter before it = "
        f"{link}. pa after pb died: {k_a1}/{n_a1} +1 steps; its first counter minus pb's last = "
        f"{cross}. ({len(a_adv)} pa adverts, {len(b_adv)} pb adverts captured.)"
    )
    return notes


def ucarp_version() -> str:
    """The installed Debian package version of ucarp, or the --help banner."""
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "ucarp"], capture_output=True,
                          text=True)
    if proc.returncode == 0 and proc.stdout:
        return f"ucarp {proc.stdout.strip()}"
    banner = subprocess.run([UCARP, "--help"], capture_output=True, text=True).stdout
    return next((line for line in banner.splitlines() if line.strip()), "ucarp ?")


def main() -> int:
    """Capture everything in one lab and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    problem = netlab.environment_problem(probe=True)
    if problem is not None:
        print(f"cannot capture: {problem}", file=sys.stderr)
        return 1
    with netlab.Lab() as lab:
        results: list[dict[str, Any]] = [{} for _ in VECTORS]
        errors: list[BaseException] = []

        def run(i: int, v: Vector) -> None:
            try:
                capture_single(lab, i, v, results)
            except BaseException as exc:  # reported below; the lab still cleans up
                errors.append(exc)

        # hosts are created one after another (ip calls are quick), captures run in parallel
        threads = [threading.Thread(target=run, args=(i, v)) for i, v in enumerate(VECTORS)]
        for t in threads:
            t.start()
            time.sleep(0.3)
        for t in threads:
            t.join(120)
        if errors:
            raise errors[0]
        pair = capture_pair(lab)
    doc = {
        "about": ("Frames captured from the real C ucarp in network namespaces by "
                  "tests/tools/capture_vectors.py. Times 't' are seconds since ucarp was started. "
                  "Frames are hex, Ethernet header included."),
        "ucarp": ucarp_version(),
        "notes": analyse(results, pair),
        "vectors": results,
        "pair": pair,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    for note in doc["notes"]:
        print("-", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
