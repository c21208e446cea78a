#!/bin/sh
# pyucarp upscript: configure the virtual address when this host becomes MASTER.
# Called as: vip-up.sh INTERFACE VIRTUAL_ADDRESS [XPARAM], once per address of the virtual
# host (VIRTUAL_ADDRESS may list several in an interface file: one call each, in order).
# INTERFACE may be an alias label (eth0:carp0). VIRTUAL_NETMASK, VIRTUAL_BROADCAST and
# IFCONFIG come from the environment (the init wrapper exports them from
# /etc/default/ucarp and /etc/ucarp/interface/*).
#
# VIRTUAL_NETMASK is a dotted IPv4 mask (255.255.255.0) or a prefix length (24, 64);
# without it the address is a host address: /32 over IPv4, /128 over IPv6.
# An IPv6 address is added without duplicate address detection (nodad), so it is usable at
# once: CARP already sees to it that one host holds it. VIRTUAL_BROADCAST is IPv4's only.
# ifconfig aliases have no IPv6: an IPv6 address goes on the alias's device with ip.
set -u
iface=${1:?interface}
vip=${2:?virtual address}
dev=${iface%%:*}
mask=${VIRTUAL_NETMASK:-}
bcast=${VIRTUAL_BROADCAST:-}

bad_mask() {
    echo "vip-up.sh: bad netmask [$mask] for $vip" >&2
    exit 1
}

# A prefix length: decimal, no leading zero (ip would read 024 as octal), 1 to $1.
prefix_length() {
    case $mask in '' | 0* | *[!0-9]*) bad_mask ;; esac
    [ ${#mask} -le 3 ] && [ "$mask" -le "$1" ] || bad_mask
    prefix=$mask
}

case $vip in
    *:*)
        prefix=128
        case $mask in '') ;; *) prefix_length 128 ;; esac
        # "replace": a second run (a restart, the address removed behind our back) is
        # harmless; nodad: not "tentative" for a second after a takeover.
        exec ip -6 address replace "$vip/$prefix" dev "$dev" nodad
        ;;
esac

prefix=32
case $mask in
    '') ;;
    *.*.*.*.* | *..* | .* | *.) bad_mask ;;
    *.*.*.*)
        prefix=0
        rest=
        for octet in $(echo "$mask" | tr . ' '); do
            case $rest$octet in
                255) prefix=$((prefix + 8)) ;;
                254) prefix=$((prefix + 7)) rest=0 ;; 252) prefix=$((prefix + 6)) rest=0 ;;
                248) prefix=$((prefix + 5)) rest=0 ;; 240) prefix=$((prefix + 4)) rest=0 ;;
                224) prefix=$((prefix + 3)) rest=0 ;; 192) prefix=$((prefix + 2)) rest=0 ;;
                128) prefix=$((prefix + 1)) rest=0 ;; 0 | 00) rest=0 ;;
                *) bad_mask ;;  # not a mask, or ones after a zero bit
            esac
        done
        [ "$prefix" -gt 0 ] || bad_mask
        ;;
    *) prefix_length 32 ;;
esac

# Whether the alias label carries an IPv4 address other than this one (the other addresses
# of a VIRTUAL_ADDRESS list): ifconfig would replace it, an alias holds one address.
# Read from awk's output, not its exit status: under a detached daemon our stdout may be
# closed, and awk then fails at exit.
label_is_shared() {
    command -v ip > /dev/null 2>&1 || return 1
    others=$(ip -o -4 address show dev "$dev" label "$iface" 2> /dev/null |
        awk -v v="$vip" '{ split($4, a, "/"); if (a[1] != v) print a[1] }')
    [ -n "$others" ]
}

if [ -n "${IFCONFIG:-}" ] && [ -x "${IFCONFIG}" ] && [ "$dev" != "$iface" ] && ! label_is_shared; then
    # The classic way: an alias interface, as the original init script did.
    netmask=
    bits=$prefix
    for _n in 1 2 3 4; do
        if [ "$bits" -ge 8 ]; then
            octet=255
            bits=$((bits - 8))
        else
            octet=$((256 - (1 << (8 - bits))))
            bits=0
        fi
        netmask=$netmask${netmask:+.}$octet
    done
    exec "$IFCONFIG" "$iface" "$vip" netmask "$netmask" ${bcast:+broadcast "$bcast"} up
fi

label=
[ "$dev" != "$iface" ] && label="label $iface"
# "replace" makes a second run (VIP removed behind our back, or a restart) harmless.
exec ip address replace "$vip/$prefix" ${bcast:+broadcast "$bcast"} dev "$dev" $label
