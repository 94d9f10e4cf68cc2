# shellcheck shell=bash
# scripts/lib/lab.sh — the 3-namespace statewall lab (DESIGN.md §6), sourceable.
#
#   . scripts/lib/lab.sh
#   lab_up PREFIX                 # create ${PREFIX}cli ${PREFIX}gw ${PREFIX}srv
#   in_ns "${PREFIX}cli" curl ... # run a command inside a namespace
#   wait_port NS ADDR PORT TIMEOUT_S [tcp|udp]  # wait until something in NS listens
#   lab_cli_drop_kernel_rst PREFIX PORT...        # cli kernel: drop own RSTs from these ports
#   lab_down PREFIX               # kill processes in the namespaces, delete them (idempotent)
#   lab_status PREFIX
#   lab_new_prefix                # prints a fresh unique prefix like sw12345a-
#
# Topology:
#   ${P}cli eth0 198.51.100.2/24 2001:db8:1::2/64  <->  ${P}gw g0 198.51.100.1/24 2001:db8:1::1/64
#   ${P}gw  g1   203.0.113.1/24  2001:db8:2::1/64  <->  ${P}srv eth0 203.0.113.2/24 2001:db8:2::2/64
# cli and srv route everything (v4 and v6) via the gw; the gw forwards. DAD is off so v6
# addresses work at once. Offloads (GSO/TSO/GRO/checksum) stay at the veth defaults unless
# LAB_OFFLOAD=off, which turns tso/gso/gro/tx/rx checksum offload off on all four ends.
# The veth pairs are created directly inside the namespaces, so no interface name ever
# exists in the root namespace and parallel labs never collide.

LAB_CLI_V4=198.51.100.2
LAB_GW0_V4=198.51.100.1
LAB_GW1_V4=203.0.113.1
LAB_SRV_V4=203.0.113.2
LAB_CLI_V6=2001:db8:1::2
LAB_GW0_V6=2001:db8:1::1
LAB_GW1_V6=2001:db8:2::1
LAB_SRV_V6=2001:db8:2::2
export LAB_CLI_V4 LAB_GW0_V4 LAB_GW1_V4 LAB_SRV_V4 LAB_CLI_V6 LAB_GW0_V6 LAB_GW1_V6 LAB_SRV_V6

lab_new_prefix() {
    # pid + 2 random hex digits: unique per run, short enough for any name limit.
    printf 'sw%d%02x-\n' "$$" "$((RANDOM % 256))"
}

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

_lab_sysctl() {
    # _lab_sysctl NS key=value...
    local ns=$1
    shift
    ip netns exec "$ns" sysctl -q -w "$@" >/dev/null
}

_lab_pre_ns() {
    # namespace-wide settings that must precede interface creation
    local ns=$1
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    _lab_sysctl "$ns" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
        net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0 \
        net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
        net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
}

_lab_offload_off() {
    local ns=$1 dev=$2
    ip netns exec "$ns" ethtool -K "$dev" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
}

lab_exists_any() {
    # true if any of the three namespaces of PREFIX exists
    local p=$1 ns
    for ns in "${p}cli" "${p}gw" "${p}srv"; do
        if ip netns list | awk '{print $1}' | grep -qxF "$ns"; then
            return 0
        fi
    done
    return 1
}

_lab_wait_carrier() {
    # wait (max ~2 s) until NS/DEV has carrier; re-toggle the link once if it does not
    local ns=$1 dev=$2 i
    for i in $(seq 1 40); do
        if [[ "$(ip netns exec "$ns" cat "/sys/class/net/$dev/carrier" 2>/dev/null)" == 1 &&
            "$(ip netns exec "$ns" cat "/sys/class/net/$dev/operstate" 2>/dev/null)" == up ]]; then
            return 0
        fi
        if [[ $i == 20 ]]; then
            ip -n "$ns" link set dev "$dev" down
            ip -n "$ns" link set dev "$dev" up
        fi
        sleep 0.05
    done
    echo "lab: $ns/$dev has no carrier" >&2
    return 1
}

lab_up() {
    # Call it in plain command context (not under `if`/`||`) so errexit stays in force,
    # with a cleanup (lab_down PREFIX) registered beforehand, e.g. via netns-guard.sh.
    local p=${1:?lab_up PREFIX}
    local cli="${p}cli" gw="${p}gw" srv="${p}srv"
    if lab_exists_any "$p"; then
        echo "lab: namespaces with prefix $p already exist (other prefix, or lab down first)" >&2
        return 1
    fi
    _lab_pre_ns "$cli"
    _lab_pre_ns "$gw"
    _lab_pre_ns "$srv"

    # veth pairs created straight inside their namespaces (no root-namespace names).
    ip link add name eth0 netns "$cli" type veth peer name g0 netns "$gw"
    ip link add name g1 netns "$gw" type veth peer name eth0 netns "$srv"

    ip -n "$cli" addr add "$LAB_CLI_V4/24" dev eth0
    ip -n "$cli" addr add "$LAB_CLI_V6/64" dev eth0 nodad
    ip -n "$gw" addr add "$LAB_GW0_V4/24" dev g0
    ip -n "$gw" addr add "$LAB_GW0_V6/64" dev g0 nodad
    ip -n "$gw" addr add "$LAB_GW1_V4/24" dev g1
    ip -n "$gw" addr add "$LAB_GW1_V6/64" dev g1 nodad
    ip -n "$srv" addr add "$LAB_SRV_V4/24" dev eth0
    ip -n "$srv" addr add "$LAB_SRV_V6/64" dev eth0 nodad

    # gw ends first: with the opposite order this kernel has been seen to leave the
    # second end in operstate DOWN/NO-CARRIER, which breaks IPv6 on it.
    ip -n "$gw" link set dev g0 up
    ip -n "$gw" link set dev g1 up
    ip -n "$cli" link set dev eth0 up
    ip -n "$srv" link set dev eth0 up
    _lab_wait_carrier "$gw" g0
    _lab_wait_carrier "$gw" g1
    _lab_wait_carrier "$cli" eth0
    _lab_wait_carrier "$srv" eth0

    ip -n "$cli" route add default via "$LAB_GW0_V4"
    ip -n "$cli" -6 route add default via "$LAB_GW0_V6"
    ip -n "$srv" route add default via "$LAB_GW1_V4"
    ip -n "$srv" -6 route add default via "$LAB_GW1_V6"

    _lab_sysctl "$gw" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

    if [[ "${LAB_OFFLOAD:-on}" == off ]]; then
        _lab_offload_off "$cli" eth0
        _lab_offload_off "$gw" g0
        _lab_offload_off "$gw" g1
        _lab_offload_off "$srv" eth0
    fi
}

lab_kill_ns_pids() {
    # SIGTERM then SIGKILL every process still running inside namespace $1.
    local ns=$1 pids i
    ip netns list | awk '{print $1}' | grep -qxF "$ns" || return 0
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
        [[ -z "${pids// /}" ]] && return 0
        if [[ $i -lt 8 ]]; then
            # shellcheck disable=SC2086  # word splitting of the pid list is intended
            kill -TERM $pids 2>/dev/null || true
        else
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
        fi
        sleep 0.1
    done
}

lab_down() {
    local p=${1:?lab_down PREFIX} ns
    for ns in "${p}cli" "${p}gw" "${p}srv"; do
        lab_kill_ns_pids "$ns"
        if ip netns list | awk '{print $1}' | grep -qxF "$ns"; then
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    return 0
}

lab_status() {
    local p=${1:?lab_status PREFIX} ns rc=0
    for ns in "${p}cli" "${p}gw" "${p}srv"; do
        if ip netns list | awk '{print $1}' | grep -qxF "$ns"; then
            echo "== $ns (pids: $(ip netns pids "$ns" | tr '\n' ' '))"
            ip -n "$ns" -br addr show | grep -v '^lo ' || true
        else
            echo "== $ns: absent"
            rc=1
        fi
    done
    return "$rc"
}

wait_port() {
    # wait_port NS ADDR PORT TIMEOUT_S [tcp|udp] — until a socket in NS is bound to ADDR:PORT
    # (or a wildcard address) in LISTEN (tcp) / bound (udp). Sends no packet.
    local ns=$1 addr=$2 port=$3 timeout=$4 proto=${5:-tcp} flag deadline local_addr
    [[ $proto == udp ]] && flag=-Hlun || flag=-Hltn
    deadline=$((SECONDS + timeout))
    while ((SECONDS <= deadline)); do
        while read -r local_addr; do
            case "$local_addr" in
                "$addr:$port" | "[$addr]:$port" | "0.0.0.0:$port" | "*:$port" | "[::]:$port")
                    return 0
                    ;;
            esac
        done < <(ip netns exec "$ns" ss "$flag" 2>/dev/null | awk '{print $4}')
        sleep 0.05
    done
    echo "wait_port: nothing listening on $addr:$port/$proto in $ns after ${timeout}s" >&2
    return 1
}

lab_cli_drop_kernel_rst() {
    # lab_cli_drop_kernel_rst PREFIX PORT... — in cli, drop outgoing TCP RSTs whose source
    # port is one of PORTs (v4 and v6), so scapy can drive crafted flows from those ports
    # without the cli kernel resetting them. Idempotent per port.
    local p=${1:?lab_cli_drop_kernel_rst PREFIX PORT...} port ipt
    shift
    for port in "$@"; do
        for ipt in iptables ip6tables; do
            if ! ip netns exec "${p}cli" "$ipt" -C OUTPUT -p tcp --sport "$port" \
                --tcp-flags RST RST -j DROP 2>/dev/null; then
                ip netns exec "${p}cli" "$ipt" -A OUTPUT -p tcp --sport "$port" \
                    --tcp-flags RST RST -j DROP
            fi
        done
    done
}
