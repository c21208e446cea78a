#!/bin/sh
# pyucarp downscript: remove the virtual address when this host stops being MASTER.
# Called as: vip-down.sh INTERFACE VIRTUAL_ADDRESS [XPARAM]
set -u
iface=${1:?interface}
vip=${2:?virtual address}
dev=${iface%%:*}

if [ -n "${IFCONFIG:-}" ] && [ -x "${IFCONFIG}" ] && [ "$dev" != "$iface" ]; then
    # Every start runs the downscript once (INIT -> BACKUP): an alias that is not there is
    # not an error ("ifconfig eth0:carp0 down" would fail with "Cannot assign requested
    # address"). ifconfig itself cannot tell: it shows the base device for any alias.
    if command -v ip > /dev/null 2>&1 &&
        [ -z "$(ip -o -4 address show dev "$dev" label "$iface" 2> /dev/null)" ]; then
        exit 0
    fi
    exec "$IFCONFIG" "$iface" down
fi
# Remove the address whatever its prefix; nothing to do when it is not there.
for cidr in $(ip -o -4 address show dev "$dev" | awk -v v="$vip" '{split($4, a, "/"); if (a[1] == v) print $4}'); do
    ip address del "$cidr" dev "$dev" || exit 1
done
exit 0
