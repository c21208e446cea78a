#!/bin/sh
# Install the ucarp init script and its configuration under a root directory (default /).
#
#   init.d/install.sh [--root DIR] [--ucarp-exec PATH]
#
#   DIR/etc/init.d/ucarp            the init script (replaced; a different one is kept as
#                                   DIR/etc/ucarp/ucarp.init.orig)
#   DIR/etc/default/ucarp           its settings, only when absent (else ucarp.dist beside it)
#   DIR/etc/ucarp/vip-up.sh         the up and down scripts, only when absent or unchanged
#   DIR/etc/ucarp/vip-down.sh       (else .dist beside them)
#   DIR/etc/ucarp/ucarp0.sample     a sample interface file, to copy into interface/
#   DIR/etc/ucarp/interface/        one file per virtual address (mode 0700: passwords)
#   DIR/etc/systemd/system/ucarp@.service and DIR/usr/local/lib/pyucarp/ucarp-instance
#                                   the systemd unit template and its helper
#   DIR/etc/systemd/system/pyucarp.service
#                                   the systemd unit running every file in one process
#
# --prefix is accepted as another name for --root. --ucarp-exec sets UCARP_EXEC in a newly
# installed /etc/default/ucarp (default: /usr/local/bin/ucarp, where `pip install` puts
# pyucarp's `ucarp` command), and pyucarp.service runs the `pyucarp` beside it. Enabling at boot is left to you: `update-rc.d ucarp defaults`
# (or `systemctl daemon-reload`, which makes a ucarp.service of the script).
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
root=/
exec_path=

usage() {
    echo "usage: $0 [--root DIR] [--ucarp-exec PATH]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
        --root | --prefix)
            [ $# -ge 2 ] || usage
            root=$2
            shift 2
            ;;
        --root=* | --prefix=*)
            root=${1#*=}
            shift
            ;;
        --ucarp-exec)
            [ $# -ge 2 ] || usage
            exec_path=$2
            shift 2
            ;;
        --ucarp-exec=*)
            exec_path=${1#*=}
            shift
            ;;
        -h | --help) usage ;;
        *) usage ;;
    esac
done
case $root in
    /*) ;;
    *) root=$(pwd)/$root ;;
esac
root=${root%/}
case $exec_path in
    *[!A-Za-z0-9_./+-]*)
        echo "$0: --ucarp-exec: unusual characters in [$exec_path]" >&2
        exit 2
        ;;
esac

say() { printf '%s\n' "$*"; }

# put SRC DEST MODE: install SRC as DEST unless DEST exists with other contents, in which
# case the new version goes to DEST.dist and DEST is left as it is.
put() {
    if [ -e "$2" ] && ! cmp -s "$1" "$2"; then
        install -m "$3" "$1" "$2.dist"
        say "kept $2 (yours differs); the new version is $2.dist"
    else
        install -m "$3" "$1" "$2"
        say "installed $2"
    fi
}

install -d -m 0755 "$root/etc/init.d" "$root/etc/default" "$root/etc/ucarp"
install -d -m 0700 "$root/etc/ucarp/interface"

initd=$root/etc/init.d/ucarp
if [ -e "$initd" ] && ! cmp -s "$src/init.d/ucarp" "$initd"; then
    # Saved outside init.d, where it would be a second script providing "ucarp".
    cp -p "$initd" "$root/etc/ucarp/ucarp.init.orig"
    say "saved the previous $initd as $root/etc/ucarp/ucarp.init.orig"
fi
install -m 0755 "$src/init.d/ucarp" "$initd"
say "installed $initd"

defaults=$root/etc/default/ucarp
if [ -e "$defaults" ] && cmp -s "$src/etc/default/ucarp" "$defaults"; then
    say "kept $defaults (unchanged)"
elif [ -e "$defaults" ]; then
    install -m 0644 "$src/etc/default/ucarp" "$defaults.dist"
    say "kept $defaults; the shipped version is $defaults.dist"
else
    install -m 0644 "$src/etc/default/ucarp" "$defaults"
    if [ -n "$exec_path" ]; then
        sed -i "s|^UCARP_EXEC=.*|UCARP_EXEC=$exec_path|" "$defaults"
    fi
    say "installed $defaults"
fi

put "$src/etc/ucarp/vip-up.sh" "$root/etc/ucarp/vip-up.sh" 0755
put "$src/etc/ucarp/vip-down.sh" "$root/etc/ucarp/vip-down.sh" 0755
install -m 0600 "$src/etc/ucarp/interface/ucarp0" "$root/etc/ucarp/ucarp0.sample"
say "installed $root/etc/ucarp/ucarp0.sample (copy it into $root/etc/ucarp/interface/ and edit it)"

# The systemd alternative to the init script: one unit instance per interface file.
install -d -m 0755 "$root/etc/systemd/system" "$root/usr/local/lib/pyucarp"
install -m 0644 "$src/etc/systemd/ucarp@.service" "$root/etc/systemd/system/ucarp@.service"
install -m 0755 "$src/etc/systemd/ucarp-instance" "$root/usr/local/lib/pyucarp/ucarp-instance"
say "installed $root/etc/systemd/system/ucarp@.service (systemctl start ucarp@ucarp0)"
unit=$root/etc/systemd/system/pyucarp.service
install -m 0644 "$src/etc/systemd/pyucarp.service" "$unit"
if [ -n "$exec_path" ]; then
    sed -i "s|^ExecStart=/usr/local/bin/pyucarp |ExecStart=${exec_path%/*}/pyucarp |" "$unit"
fi
say "installed $unit (systemctl start pyucarp: every interface file in one process)"

# The UCARP_EXEC that will be used, for a warning now rather than at boot.
ucarp_exec=$(sed -n 's/^UCARP_EXEC=//p' "$defaults" | tail -n 1)
if [ ! -x "$ucarp_exec" ]; then
    say "warning: UCARP_EXEC=$ucarp_exec (in $defaults) is not executable: install pyucarp or edit it" >&2
fi
