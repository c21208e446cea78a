#!/bin/sh
# pyucarp upscript: configure the virtual address when this host becomes MASTER.
# Called as: vip-up.sh INTERFACE VIRTUAL_ADDRESS [XPARAM]
# INTERFACE may be an alias label (eth0:carp0). VIRTUAL_NETMASK, VIRTUAL_BROADCAST and
# IFCONFIG come from the environment (the init wrapper exports them from
# /etc/default/ucarp and /etc/ucarp/interface/*); without a netmask the address is a /32.
set -u
iface=${1:?interface}
vip=${2:?virtual address}
dev=${iface%%:*}
mask=${VIRTUAL_NETMASK:-255.255.255.255}
bcast=${VIRTUAL_BROADCAST:-}

if [ -n "${IFCONFIG:-}" ] && [ -x "${IFCONFIG}" ] && [ "$dev" != "$iface" ]; then
    # The classic way: an alias interface, as the original init script did.
    exec "$IFCONFIG" "$iface" "$vip" netmask "$mask" ${bcast:+broadcast "$bcast"} up
fi

prefix=0
for octet in $(echo "$mask" | tr . ' '); do
    case $octet in
        255) prefix=$((prefix + 8)) ;; 254) prefix=$((prefix + 7)) ;;
        252) prefix=$((prefix + 6)) ;; 248) prefix=$((prefix + 5)) ;;
        240) prefix=$((prefix + 4)) ;; 224) prefix=$((prefix + 3)) ;;
        192) prefix=$((prefix + 2)) ;; 128) prefix=$((prefix + 1)) ;;
        0) ;;
        *) echo "vip-up.sh: bad netmask [$mask]" >&2; exit 1 ;;
    esac
done
label=
[ "$dev" != "$iface" ] && label="label $iface"
# "replace" makes a second run (VIP removed behind our back, or a restart) harmless.
exec ip address replace "$vip/$prefix" ${bcast:+broadcast "$bcast"} dev "$dev" $label
