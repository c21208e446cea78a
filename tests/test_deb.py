"""The native ``ucarp`` launcher (launcher/ucarp.c) and the Debian package's sources.

The launcher is compiled here against the interpreter running the tests. It must run
pyucarp's ``ucarp`` command as its own process (so /proc/PID/exe is the launcher and the
process is named ucarp), hand over the command line untouched, and start the interpreter
isolated from the environment (no PYTHON* variables, no user site directory, nothing from
the current directory). debian/ must parse and agree with pyproject.toml; when the build
dependencies are installed (``sudo ./run deb`` installs them) the package is built and
linted too. The package in a Debian root: tests/test_deb_chroot.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from pyucarp.lab.netlab import Lab, pid_alive, wait_until

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "launcher"
DEBIAN = REPO / "debian"
CC = shutil.which("cc") or shutil.which("gcc")
PYTHON_CONFIG = Path(sysconfig.get_config_var("BINDIR") or "") / (
    f"python{sysconfig.get_python_version()}-config")

needs_cc = pytest.mark.skipif(
    CC is None or not PYTHON_CONFIG.exists() or shutil.which("make") is None,
    reason=f"needs cc, make and {PYTHON_CONFIG} to build the launcher")

# A stand-in for pyucarp.cli, reporting what the launcher gave the interpreter.
FAKE_CLI = '''
import json, os, sys
def ucarp_main():
    print(json.dumps({
        "argv": sys.argv,
        "executable": sys.executable,
        "isolated": sys.flags.isolated,
        "ignore_environment": sys.flags.ignore_environment,
        "no_user_site": sys.flags.no_user_site,
        "safe_path": getattr(sys.flags, "safe_path", True),
        "path0": sys.path[0],
        "path": sys.path,
        "exe": os.readlink("/proc/self/exe"),
        "comm": open("/proc/self/comm").read().strip(),
        "cmdline": open("/proc/self/cmdline", "rb").read().decode().split("\\0")[:-1],
        "lc_ctype": os.environ.get("LC_CTYPE"),
        "pythonpath": os.environ.get("PYTHONPATH"),
        "modules": sorted(m for m in sys.modules if m.startswith("evil")),
    }))
    return 7
'''

# What an environment may plant to hijack a Python program; none of it may take effect.
EVIL_INIT = "raise SystemExit('EVIL pyucarp imported')\n"


def build_launcher(out: Path, site: Path | None = None) -> Path:
    """Compile launcher/ucarp.c with its Makefile into ``out``; returns the executable."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("ucarp.c", "Makefile"):
        shutil.copy(LAUNCHER / name, out / name)
    args = ["make", "-s", "-C", str(out), f"PYTHON={sys.executable}",
            f"PYTHON_CONFIG={PYTHON_CONFIG}"]
    if site is not None:
        args.append(f"SITE={site}")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    return out / "ucarp"


def hostile_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment and a current directory that would each load an evil pyucarp."""
    evil = tmp_path / "evil"
    for where in (evil / "pythonpath", evil / "cwd",
                  evil / "home" / ".local" / "lib" / f"python{sysconfig.get_python_version()}"
                  / "site-packages"):
        (where / "pyucarp").mkdir(parents=True)
        (where / "pyucarp" / "__init__.py").write_text(EVIL_INIT)
        (where / "evilmod.py").write_text(EVIL_INIT)
    (evil / "startup.py").write_text("import evilmod\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(evil / "home"),
        "PYTHONPATH": str(evil / "pythonpath"),
        "PYTHONSTARTUP": str(evil / "startup.py"),
        "PYTHONINSPECT": "1",  # would leave an interactive prompt after the command
        "PYTHONHOME": str(evil / "nowhere"),  # would break the start-up altogether
        "PYTHONUSERBASE": str(evil / "home" / ".local"),
        "PYTHONWARNINGS": "error",
        "LC_ALL": "C",
    }
    return env, evil / "cwd"


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The launcher as it is built for a pip install: pyucarp from the interpreter's path."""
    if CC is None or not PYTHON_CONFIG.exists() or shutil.which("make") is None:
        pytest.skip(f"needs cc, make and {PYTHON_CONFIG} to build the launcher")
    return build_launcher(tmp_path_factory.mktemp("launcher"))


# --------------------------------------------------------------------------- the launcher


@needs_cc
def test_launcher_runs_ucarp_help_like_the_console_script(launcher: Path, tmp_path: Path) -> None:
    env, cwd = hostile_env(tmp_path)
    got = subprocess.run([str(launcher), "--help"], capture_output=True, text=True, env=env,
                         cwd=cwd, stdin=subprocess.DEVNULL, timeout=30)
    want = subprocess.run(
        [sys.executable, "-c", "import sys; from pyucarp.cli import ucarp_main; "
         "sys.exit(ucarp_main(['--help']))"],
        capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    assert "EVIL" not in got.stdout + got.stderr
    assert got.stdout == want.stdout and got.stdout.startswith("pyucarp ")


@needs_cc
def test_launcher_exit_status_and_errors_are_ucarps(launcher: Path) -> None:
    got = subprocess.run([str(launcher), "-v", "0"], capture_output=True, text=True,
                         timeout=30)
    assert got.returncode == 1
    assert "vhid must be between 1 and 255" in got.stderr
    assert "Traceback" not in got.stderr


@needs_cc
def test_launcher_is_the_process_and_isolates_the_interpreter(tmp_path: Path) -> None:
    """Built with SITE naming a stand-in pyucarp: what does the interpreter see?"""
    site = tmp_path / "site"
    (site / "pyucarp").mkdir(parents=True)
    (site / "pyucarp" / "__init__.py").write_text("")
    (site / "pyucarp" / "cli.py").write_text(FAKE_CLI)
    exe = build_launcher(tmp_path / "build", site=site)
    env, cwd = hostile_env(tmp_path)
    args = ["-i", "eth0", "a b", "--pass=zz", "-c", "-I"]
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 7, proc.stderr  # ucarp_main()'s return value
    assert "EVIL" not in proc.stdout + proc.stderr and ">>>" not in proc.stdout + proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    # The process is the launcher: what start-stop-daemon --exec, pidof and ps -C look at.
    assert seen["exe"] == str(exe)
    assert seen["comm"] == "ucarp"
    # The command line is untouched, in the kernel and in sys.argv (no -c, no -I added).
    assert seen["cmdline"] == [str(exe), *args]
    assert seen["argv"] == [str(exe), *args]
    # Isolated as `python -I`, with the interpreter the library belongs to.
    assert seen["isolated"] == 1 and seen["ignore_environment"] == 1
    assert seen["no_user_site"] == 1 and seen["safe_path"]
    assert seen["path0"] == str(site)
    assert str(cwd) not in seen["path"] and not any("evil" in p for p in seen["path"])
    assert seen["modules"] == []
    assert Path(seen["executable"]).name == f"python{sysconfig.get_python_version()}"
    assert os.access(seen["executable"], os.X_OK)
    # The environment itself is passed on as it came (the scripts inherit it).
    assert seen["pythonpath"] == env["PYTHONPATH"]
    assert seen["lc_ctype"] is None  # the C locale is not coerced to C.UTF-8


@needs_cc
@pytest.mark.netns
def test_launched_daemon_is_found_by_its_executable(lab: Lab, launcher: Path,
                                                      tmp_path: Path) -> None:
    """A real daemon: /proc/PID/exe is the launcher, its name is ucarp, -p is scrubbed,
    and SIGTERM with -z ends it with status 0."""
    host = lab.add_host("a", "192.0.2.1/24")
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        proc = host.popen([str(launcher), "-i", "eth0", "-s", host.ip, "-v", "5",
                           "-p", "s3cret", "-a", "192.0.2.105", "-z", "-f", "none",
                           f"--statedir={tmp_path / 'state'}"],
                          stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: b"Switching to state" in log.read_bytes(), 10), log.read_text()
        assert os.readlink(f"/proc/{proc.pid}/exe") == str(launcher)
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "ucarp"
        pidof = subprocess.run(["pidof", "-x", str(launcher)], capture_output=True, text=True)
        assert str(proc.pid) in pidof.stdout.split()
        assert wait_until(
            lambda: b"s3cret" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes(), 5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if pid_alive(proc.pid):
            proc.kill()


# --------------------------------------------------------------------------- debian/


def _control() -> list[dict[str, str]]:
    """debian/control's paragraphs (deb822: continuation lines folded)."""
    paragraphs: list[dict[str, str]] = []
    for block in re.split(r"\n\s*\n", (DEBIAN / "control").read_text().strip()):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t"):
                fields[key] += "\n" + line.strip()
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        paragraphs.append(fields)
    return paragraphs


def _names(field: str) -> list[str]:
    return [re.split(r"[\s(\[<]", item.strip())[0] for item in field.split(",") if item.strip()]


def test_debian_control_replaces_ucarp_with_debian_dependencies() -> None:
    source, binary = _control()
    assert source["Source"] == "pyucarp"
    build = _names(source["Build-Depends"])
    for name in ("debhelper-compat", "dh-python", "pybuild-plugin-pyproject", "python3-all",
                 "python3-setuptools", "python3-dev"):
        assert name in build
    assert "debhelper-compat (= 13)" in source["Build-Depends"]
    assert binary["Package"] == "pyucarp" and binary["Architecture"] == "any"
    for field in ("Provides", "Conflicts", "Replaces"):
        assert _names(binary[field]) == ["ucarp"], field
    depends = _names(binary["Depends"])
    for name in ("python3-netifaces", "python3-daemon", "${python3:Depends}",
                 "${shlibs:Depends}"):
        assert name in depends
    assert not any("scapy" in name for name in depends)
    assert "python3-scapy" in _names(binary.get("Recommends", "") + "," +
                                     binary.get("Suggests", ""))


@pytest.mark.skipif(shutil.which("dpkg-parsechangelog") is None, reason="needs dpkg-dev")
def test_debian_changelog_matches_pyproject_and_source_format() -> None:
    version = subprocess.run(["dpkg-parsechangelog", "-l", str(DEBIAN / "changelog"),
                              "-S", "Version"], capture_output=True, text=True, check=True,
                             timeout=30).stdout.strip()
    project = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert project is not None and version == project.group(1)
    fmt = subprocess.run(["dpkg-source", "--print-format", str(REPO)], capture_output=True,
                         text=True, timeout=30)
    assert fmt.returncode == 0 and fmt.stdout.strip() == "3.0 (native)", fmt.stderr


def test_maintainer_scripts_and_hooks_are_posix_sh() -> None:
    scripts = [DEBIAN / f"pyucarp.{kind}" for kind in ("preinst", "postinst", "prerm", "postrm")]
    scripts += sorted((DEBIAN / "ifupdown").iterdir()) + [DEBIAN / "place-files"]
    shell = shutil.which("dash") or "/bin/sh"
    for script in scripts:
        assert script.read_text().startswith("#!/bin/sh"), script
        # debhelper installs the maintainer scripts executable; the others run from here.
        assert os.access(script, os.X_OK) or script.name.startswith("pyucarp."), script
        proc = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


def test_man_pages_render_without_warnings() -> None:
    if shutil.which("groff") is None:
        pytest.skip("needs groff")
    for page in ("ucarp.8", "pyucarp.8"):
        proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                               str(REPO / "docs" / "man" / page)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0 and proc.stderr == "", f"{page}: {proc.stderr}"


def test_man_pages_cover_every_option_and_command() -> None:
    """Each long option of `ucarp --help` is in ucarp(8), each subcommand in pyucarp(8)."""
    from pyucarp.cli import _SUBCOMMANDS
    from pyucarp.config import options

    def text(page: str) -> str:
        return (REPO / "docs" / "man" / page).read_text().replace("\\-", "-")

    ucarp_8 = text("ucarp.8")
    missing = [name for name in sorted(set(re.findall(r"--([a-z][a-z-]+)", options.USAGE)))
               if f"--{name}" not in ucarp_8]
    assert missing == [], f"ucarp.8 does not describe: {missing}"
    pyucarp_8 = text("pyucarp.8")
    assert [c for c in _SUBCOMMANDS if f".B {c}\n" not in pyucarp_8] == []


# --------------------------------------------------------------------------- the build


def _build_problem() -> str | None:
    for tool in ("dpkg-buildpackage", "dpkg-checkbuilddeps", "lintian"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (sudo ./run deb installs the build tools)"
    deps = subprocess.run(["dpkg-checkbuilddeps"], cwd=REPO, capture_output=True, text=True)
    if deps.returncode != 0:
        return f"build dependencies missing (sudo ./run deb installs them): {deps.stderr.strip()}"
    return None


@pytest.mark.timeout(400)
def test_package_builds_and_is_lintian_clean(tmp_path: Path) -> None:
    problem = _build_problem()
    if problem is not None:
        pytest.skip(problem)
    t0 = time.monotonic()
    proc = subprocess.run([str(DEBIAN / "build-deb"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    deb = Path(proc.stdout.strip().splitlines()[-1])
    built_in = time.monotonic() - t0

    def info(*args: str) -> str:
        return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout

    listing = info("-c", str(deb))
    for path in ("./usr/sbin/ucarp", "./usr/sbin/pyucarp", "./etc/init.d/ucarp",
                 "./etc/default/ucarp", "./etc/ucarp/vip-up.sh", "./etc/ucarp/vip-down.sh",
                 "./etc/network/if-up.d/ucarp", "./etc/network/if-down.d/ucarp",
                 "./lib/systemd/system/ucarp@.service", "./lib/systemd/system/pyucarp.service",
                 "./usr/libexec/pyucarp/ucarp-instance", "./usr/share/man/man8/ucarp.8.gz",
                 "./usr/share/man/man8/pyucarp.8.gz",
                 "./usr/lib/python3/dist-packages/pyucarp/cli.py"):
        assert f" {path}\n" in listing, path
    assert "./usr/bin/ucarp" not in listing  # the console script is not shipped
    conffiles = info("-I", str(deb), "conffiles").split()
    assert {"/etc/init.d/ucarp", "/etc/default/ucarp",
            "/etc/network/if-up.d/ucarp"} <= set(conffiles)
    fields = info("-f", str(deb))
    assert re.search(r"^Depends:.*\blibpython3\.\d+\b", fields, re.M), fields
    assert re.search(r"^Depends:.*\bpython3-netifaces\b", fields, re.M), fields
    assert not re.search(r"^Depends:.*scapy", fields, re.M), fields
    extract = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(extract)], check=True, timeout=30)
    assert (extract / "usr/sbin/ucarp").read_bytes()[:4] == b"\x7fELF"
    for path in ("etc/init.d/ucarp", "etc/default/ucarp"):
        assert re.search(r"^UCARP_EXEC=/usr/sbin/ucarp$", (extract / path).read_text(), re.M)
    changes = next(deb.parent.glob("pyucarp_*.changes"))
    lint = subprocess.run(["lintian", "-I", "-E", "--pedantic", str(changes)],
                          capture_output=True, text=True, timeout=200)
    # Errors, warnings, info and pedantic tags fail; experimental ones (X:) are shown by
    # ./run deb but may come and go with lintian's versions.
    tags = [line for line in (lint.stdout + lint.stderr).splitlines()
            if re.match(r"^[EWIP]: ", line)]
    assert lint.returncode == 0 and tags == [], lint.stdout + lint.stderr
    print(f"package built in {built_in:.1f} s")
