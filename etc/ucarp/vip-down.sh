#!/bin/sh
# pyucarp downscript: remove the virtual address when this host stops being MASTER.
# Called as: vip-down.sh INTERFACE VIRTUAL_ADDRESS [XPARAM], once per address.
# The address goes whatever its prefix length (IPv4 or IPv6); nothing to do when it is not
# there. An alias label's own address goes with ifconfig when IFCONFIG is set (IPv4 only:
# ifconfig aliases have no IPv6).
set -u
iface=${1:?interface}
vip=${2:?virtual address}
dev=${iface%%:*}

case $vip in
    *:*) family=6 host=128 ;;
    *) family=4 host=32 ;;
esac

if [ "$family" = 4 ] && [ -n "${IFCONFIG:-}" ] && [ -x "${IFCONFIG}" ] && [ "$dev" != "$iface" ]; then
    if ! command -v ip > /dev/null 2>&1; then
        exec "$IFCONFIG" "$iface" down
    fi
    # Every start runs the downscript once (INIT -> BACKUP): an alias that is not there is
    # not an error ("ifconfig eth0:carp0 down" would fail with "Cannot assign requested
    # address"). ifconfig itself cannot tell: it shows the base device for any alias.
    labelled=$(ip -o -4 address show dev "$dev" label "$iface" 2> /dev/null |
        awk '{ split($4, a, "/"); print a[1] }')
    [ -n "$labelled" ] || exit 0
    if [ "$labelled" = "$vip" ]; then
        exec "$IFCONFIG" "$iface" down
    fi
    # The alias carries other addresses too (a VIRTUAL_ADDRESS list): "ifconfig down" would
    # remove whichever comes first, so this one goes by ip below.
fi

# "to ADDRESS/32" (/128) matches the address itself, however it is written and whatever
# its prefix length on the interface.
cidrs=$(ip -o "-$family" address show dev "$dev" to "$vip/$host" 2> /dev/null | awk '{ print $4 }')
for cidr in $cidrs; do
    ip "-$family" address del "$cidr" dev "$dev" || exit 1
done
exit 0
