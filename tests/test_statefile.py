"""pyucarp.shell.statefile: the state file's schema, its checks, and where the files live."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pyucarp.config.settings import Config
from pyucarp.shell import statefile
from pyucarp.shell.statefile import InstanceStatus, MasterRecord, ScriptRecord, StateFile


def _status(**changes: object) -> InstanceStatus:
    base = InstanceStatus(
        pid=1234, name="eth0-7", interface="eth0", vhid=7, vip="192.0.2.100",
        srcip="192.0.2.1", advbase=1, advskew=20, state="MASTER", since=1700000000.5,
        updated=1700000100.25, transitions=2,
        master=MasterRecord("192.0.2.1", 1, 20), maintenance=False, link_up=True,
        adverts_sent=100, adverts_received=3, send_errors=0, dropped={"bad_digest": 2},
        replay_window=3,
        last_script=ScriptRecord("up", ("/etc/vip-up.sh", "eth0", "192.0.2.100"), 0, None,
                                 0.012, False, None),
    )
    return base._replace(**changes)


def test_a_status_survives_the_file(tmp_path: Path) -> None:
    sf = StateFile(str(tmp_path / "eth0-7.json"))
    for status in (_status(), _status(master=None, last_script=None, dropped={})):
        sf.write(status)
        assert sf.read() == status
        doc = json.loads(Path(sf.path).read_text())
        assert doc["last_script"] is None or doc["last_script"]["argv"] == list(
            status.last_script.argv if status.last_script else ()
        )


def test_the_file_is_what_json_writes(tmp_path: Path) -> None:
    # The daemon writes without the json package; the text is json's to the byte.
    sf = StateFile(str(tmp_path / "eth0-7.json"))
    odd = ScriptRecord("down", ("/etc/vip-dówn.sh", 'a"b\\c\n', "\x00"), None, 9, 30.0, True,
                       "killed")
    for status in (_status(), _status(master=None, last_script=odd, dropped={}, since=0.1 + 0.2)):
        sf.write(status)
        assert Path(sf.path).read_text() == json.dumps(status.to_json(), indent=1,
                                                       sort_keys=True) + "\n"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("pid", "1234", "'pid'"),
        ("vhid", True, "'vhid'"),
        ("maintenance", 0, "'maintenance'"),
        ("since", "yesterday", "'since'"),
        ("master", [1], "'master'"),
        ("dropped", {"x": "many"}, "'dropped'"),
        ("last_script", {"kind": "up"}, "missing"),
    ],
)
def test_a_wrong_field_is_named(field: str, value: object, words: str) -> None:
    doc = _status().to_json()
    doc[field] = value
    with pytest.raises(ValueError, match=words):
        InstanceStatus.from_json(doc)


def test_a_missing_field_is_named() -> None:
    doc = _status().to_json()
    del doc["state"]
    with pytest.raises(ValueError, match="'state' is missing"):
        InstanceStatus.from_json(doc)


def test_script_failure_is_read_from_the_record() -> None:
    ok = _status().last_script
    assert ok is not None and not ok.failed
    assert ok._replace(returncode=1).failed
    assert ok._replace(returncode=None, timed_out=True).failed
    assert ok._replace(returncode=None, error="No such file or directory").failed


def test_each_network_namespace_gets_its_own_state_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inodes = {"/proc/1/ns/net": 4026531840, "/proc/self/ns/net": 4026531840}

    def fake_stat(path: str, *args: object, **kw: object) -> os.stat_result:
        if path not in inodes:
            raise FileNotFoundError(path)
        return os.stat_result((0, inodes[path], 0, 0, 0, 0, 0, 0, 0, 0))

    monkeypatch.setattr(statefile.os, "stat", fake_stat)
    assert statefile.default_statedir() == "/run/pyucarp"
    inodes["/proc/self/ns/net"] = 4026532999
    assert statefile.default_statedir() == "/run/pyucarp/netns-4026532999"
    del inodes["/proc/1/ns/net"]  # pid 1 hidden: the initial namespace's fixed inode decides
    assert statefile.default_statedir() == "/run/pyucarp/netns-4026532999"
    inodes["/proc/self/ns/net"] = 0xEFFFFFF9
    assert statefile.default_statedir() == "/run/pyucarp"
    del inodes["/proc/self/ns/net"]  # no /proc at all: the host's directory
    assert statefile.default_statedir() == "/run/pyucarp"


def test_since_is_the_wall_time_of_the_change_not_of_each_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's ``now`` lags ``time.time()`` by a varying amount; ``since`` is worked out
    once per state change, so rewrites (the 5 s heartbeat) do not move it."""
    from pyucarp.config.options import parse_args
    from pyucarp.shell import runtime
    from pyucarp.shell.logs import InstanceLog, UcarpLog

    config = parse_args(["-i", "eth0", "-s", "192.0.2.1", "-v", "7", "-p", "pw",
                         "-a", "192.0.2.100"], default_interface=lambda: "eth0")
    assert isinstance(config, Config)
    rt = runtime.InstanceRuntime(
        config, InstanceLog(UcarpLog(facility="none", console=False, syslog_enabled=False)),
        mac=b"\x02\x00\x00\x00\x00\x01", transmit=lambda frame: None,
        random_bits=lambda bits: 0, statefile=StateFile(str(tmp_path / "eth0-7.json")))
    machine = rt.core.machine
    machine.since = 90.0
    walls = iter([1000.0, 1005.3, 1010.05, 1020.0])
    monkeypatch.setattr(time, "time", lambda: next(walls))
    first = rt.snapshot(100.0).since
    assert first == 990.0
    assert rt.snapshot(105.0).since == first  # the loop was 0.3 s late this time
    assert rt.snapshot(110.0).since == first
    machine.since = 115.0  # a new state change
    assert rt.snapshot(119.0).since == 1016.0
