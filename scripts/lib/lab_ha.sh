# shellcheck shell=bash
# scripts/lib/lab_ha.sh — the two-gateway HA lab (docs/ha.md), sourceable; needs lab.sh.
#
#   lab_ha_up PREFIX [FIREWALL [TOPOLOGY]]
#                                 build it; FIREWALL: statewall (default), linux, none;
#                                 TOPOLOGY: vrrp (default, below) or ecmp (active-active:
#                                 router namespaces spread the flows over both gateways,
#                                 see _lab_ha_wire_ecmp; no keepalived)
#   lab_ha_down PREFIX            stop every daemon, delete the namespaces and the run directory
#   lab_ha_status PREFIX          namespaces, who is master, daemons (exit 1 if incomplete)
#   lab_ha_master PREFIX          prints a, b, none or both (who holds the gateway addresses)
#   lab_ha_start PREFIX a|b keepalived|conntrackd|statewall
#   lab_ha_stop PREFIX a|b keepalived|conntrackd|statewall   SIGTERM, then SIGKILL after 5 s
#   lab_ha_links PREFIX a|b up|down                          all three links of a gateway
#   lab_ha_dir PREFIX             the run directory (configs, pid files, logs)
#
# Topology (documentation addresses only):
#   ${P}cli eth0 198.51.100.2  2001:db8:1::2 ── ${P}lan (bridge br0) ──┬── ${P}gwa lan0 .11 ::11
#                                                                      └── ${P}gwb lan0 .12 ::12
#   ${P}srv eth0 203.0.113.2   2001:db8:2::2 ── ${P}wan (bridge br0) ──┬── ${P}gwa wan0 .11 ::11
#                                                                      └── ${P}gwb wan0 .12 ::12
#   ${P}gwa sync0 192.0.2.1/30 ──────────────────────────────────────── ${P}gwb sync0 192.0.2.2/30
# Gateway addresses (VRRP, keepalived): 198.51.100.1, 2001:db8:1::1 on lan0 and 203.0.113.1,
# 2001:db8:2::1 on wan0 of the master; cli and srv route through them. conntrackd (FTFW,
# DisableExternalCache On) replicates the kernel conntrack table over sync0. The keepalived and
# conntrackd configurations are contrib/keepalived/keepalived.conf and
# contrib/conntrackd/conntrackd.conf with their "B:" lines for gateway B and the paths of the
# run directory; the notify/ready/resync glue is contrib/keepalived/statewall-ha.
# Firewall: `statewall` runs statewall (STATEWALL_BIN, default target/release/statewall;
# LAB_HA_STATEWALL_EXTRA: a TOML file appended to its configuration, without [ha];
# LAB_HA_TAKEOVER_WINDOW: [ha] takeover_window; LAB_HA_ADDRESSES=0: no [ha] addresses, the
# virtual addresses otherwise) in both gateways, with [ha] enable and the rules of
# DIR/statewall.rules (the Linux reference's policy); `linux`
# is the kernel-only reference (conntrack, nf_conntrack_tcp_loose=0, INVALID dropped, new
# connections only from the client segment, to the lab's services); `none` forwards everything.
# Every wait is bounded; a failed lab_ha_up leaves the cleanup to its caller (scripts/lab).

LAB_HA_VIP_LAN_V4=198.51.100.1
LAB_HA_VIP_WAN_V4=203.0.113.1
LAB_HA_VIP_LAN_V6=2001:db8:1::1
LAB_HA_VIP_WAN_V6=2001:db8:2::1
export LAB_HA_VIP_LAN_V4 LAB_HA_VIP_WAN_V4 LAB_HA_VIP_LAN_V6 LAB_HA_VIP_WAN_V6

_lab_ha_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

lab_ha_dir() {
    echo "${LAB_HA_DIR:-/tmp/statewall-ha-${1:?lab_ha_dir PREFIX}}"
}

_lab_ha_namespaces() {
    # _lab_ha_namespaces PREFIX [TOPOLOGY] — without TOPOLOGY: every namespace either may have
    local p=$1
    case "${2:-}" in
        vrrp) echo "${p}cli ${p}srv ${p}lan ${p}wan ${p}gwa ${p}gwb" ;;
        ecmp) echo "${p}cli ${p}srv ${p}rl ${p}rr ${p}gwa ${p}gwb" ;;
        *) echo "${p}cli ${p}srv ${p}lan ${p}wan ${p}rl ${p}rr ${p}gwa ${p}gwb" ;;
    esac
}

lab_ha_exists_any() {
    local ns
    for ns in $(_lab_ha_namespaces "$1"); do
        ip netns list | awk '{print $1}' | grep -qxF "$ns" && return 0
    done
    return 1
}

_lab_ha_wait() {
    # _lab_ha_wait SECONDS WHAT COMMAND... — poll every 0.1 s
    local t=$1 what=$2 deadline
    shift 2
    deadline=$(($(date +%s%N) + t * 1000000000))
    until "$@" >/dev/null 2>&1; do
        if (($(date +%s%N) > deadline)); then
            echo "lab ha: timeout (${t}s) waiting for $what" >&2
            return 1
        fi
        sleep 0.1
    done
}

_lab_ha_config() {
    # _lab_ha_config SRC a|b — a contrib file with gateway B's "B:" lines applied for b
    local src=$1 g=$2
    if [[ $g == b ]]; then
        sed -E 's/^([[:space:]]*)[^#]*# B: (.*)$/\1\2/' "$src"
    else
        cat "$src"
    fi
}

_lab_ha_write_configs() {
    local p=$1 g=$2 fw=$3 w sock=""
    w=$(lab_ha_dir "$p")
    [[ $fw == statewall ]] && sock="$w/sw-$g/control.sock"
    _lab_ha_config "$_lab_ha_root/contrib/conntrackd/conntrackd.conf" "$g" |
        sed -e "s|/var/log/conntrackd.log|$w/conntrackd-$g.log|" \
            -e "s|/run/conntrackd-statewall.lock|$w/conntrackd-$g.lock|" \
            -e "s|/run/conntrackd-statewall.ctl|$w/conntrackd-$g.ctl|" >"$w/conntrackd-$g.conf"
    _lab_ha_config "$_lab_ha_root/contrib/keepalived/keepalived.conf" "$g" |
        sed -e "s|/usr/local/sbin/statewall-ha|$w/statewall-ha -e $w/ha-$g.env|" \
            >"$w/keepalived-$g.conf"
    cat >"$w/ha-$g.env" <<EOF
CONNTRACKD_CONF=$w/conntrackd-$g.conf
STATE_DIR=$w/ha-$g
STATEWALL=${STATEWALL_BIN:-$_lab_ha_root/target/release/statewall}
STATEWALL_SOCKET=$sock
RESYNC_QUIET=${LAB_HA_RESYNC_QUIET:-2}
RESYNC_MAX_WAIT=${LAB_HA_RESYNC_MAX_WAIT:-60}
LOG_FILE=$w/ha-$g.log
EOF
    if [[ $fw == statewall ]]; then
        mkdir -p "$w/sw-$g"
        # The Linux reference's policy (_lab_ha_linux_rules): new connections only from the
        # client segment to the lab's services (echo 7000, UDP echo 7001, HTTP 8080; anything
        # else, e.g. 7002, is refused) and pings.
        cat >"$w/statewall.rules" <<'EOF'
policy drop
probes rst
allow in lan0 out wan0 tcp to 203.0.113.0/24 port { 7000, 8080 }
allow in lan0 out wan0 tcp to 2001:db8:2::/64 port { 7000, 8080 }
allow in lan0 out wan0 udp to 203.0.113.0/24 port 7001
allow in lan0 out wan0 udp to 2001:db8:2::/64 port 7001
allow in lan0 out wan0 icmp type echo-request
allow in lan0 out wan0 icmpv6 type echo-request
EOF
        {
            echo "rules = \"$w/statewall.rules\""
            echo "[control]"
            echo "socket = \"$sock\""
            echo "[log]"
            echo "stats_interval = 0"
            echo "[ha]"
            echo "enable = true"
            echo "takeover_window = ${LAB_HA_TAKEOVER_WINDOW:-10}"
            # Stand by the moment keepalived removes a virtual address (LAB_HA_ADDRESSES=0:
            # only on keepalived's BACKUP notification).
            if [[ ${LAB_HA_ADDRESSES:-1} == 1 ]]; then
                echo "addresses = [\"$LAB_HA_VIP_LAN_V4\", \"$LAB_HA_VIP_WAN_V4\", \"$LAB_HA_VIP_LAN_V6\", \"$LAB_HA_VIP_WAN_V6\"]"
            fi
            if [[ -n ${LAB_HA_STATEWALL_EXTRA:-} ]]; then
                cat "$LAB_HA_STATEWALL_EXTRA"
            fi
        } >"$w/statewall-$g.toml"
    fi
}

_lab_ha_spawn() {
    # _lab_ha_spawn PREFIX NAME NS COMMAND... — background daemon, pid in DIR/NAME.pid
    local p=$1 name=$2 ns=$3 w
    shift 3
    w=$(lab_ha_dir "$p")
    ip netns exec "$ns" "$@" </dev/null >>"$w/$name.out" 2>&1 &
    echo $! >"$w/$name.pid"
}

_lab_ha_pid_alive() {
    local f=$1 pid
    [[ -f $f ]] || return 1
    pid=$(cat "$f")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

lab_ha_start() {
    local p=${1:?} g=${2:?} what=${3:?} w ns
    w=$(lab_ha_dir "$p")
    ns="${p}gw$g"
    case "$what" in
        conntrackd)
            rm -f "$w/conntrackd-$g.ctl"
            _lab_ha_spawn "$p" "conntrackd-$g" "$ns" conntrackd -C "$w/conntrackd-$g.conf"
            _lab_ha_wait 10 "conntrackd in $ns" test -S "$w/conntrackd-$g.ctl"
            ;;
        keepalived)
            ip netns exec "$ns" keepalived -t -f "$w/keepalived-$g.conf" >"$w/keepalived-$g.check" 2>&1 || {
                cat "$w/keepalived-$g.check" >&2
                return 1
            }
            _lab_ha_spawn "$p" "keepalived-$g" "$ns" keepalived -n -l -D -P -G \
                -f "$w/keepalived-$g.conf" -p "$w/keepalived-$g.main.pid" \
                -r "$w/keepalived-$g.vrrp.pid" -c "$w/keepalived-$g.checkers.pid"
            _lab_ha_wait 10 "keepalived in $ns" test -s "$w/keepalived-$g.vrrp.pid"
            ;;
        statewall)
            local bin=${STATEWALL_BIN:-$_lab_ha_root/target/release/statewall} log
            [[ -x $bin ]] || {
                echo "lab ha: $bin missing (cargo build --release, or STATEWALL_BIN)" >&2
                return 1
            }
            log="$w/statewall-$g.out"
            : >"$log"
            # STATEWALL_BIN names the binary for this script; statewall would read it as the
            # setting `bin` (STATEWALL_SECTION__KEY overrides) and refuse it.
            _lab_ha_spawn "$p" "statewall-$g" "$ns" env -u STATEWALL_BIN "$bin" run \
                --config "$w/statewall-$g.toml"
            _lab_ha_wait 10 "statewall in $ns" grep -q "statewall running" "$log" || {
                cat "$log" >&2
                return 1
            }
            ;;
        *)
            echo "lab ha: unknown daemon '$what'" >&2
            return 2
            ;;
    esac
}

lab_ha_stop() {
    local p=${1:?} g=${2:?} what=${3:?} w f pid
    w=$(lab_ha_dir "$p")
    f="$w/$what-$g.pid"
    _lab_ha_pid_alive "$f" || return 0
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    # keepalived's VRRP child exits with its parent; make sure.
    if [[ $what == keepalived ]] && _lab_ha_pid_alive "$w/keepalived-$g.vrrp.pid"; then
        kill -KILL "$(cat "$w/keepalived-$g.vrrp.pid")" 2>/dev/null || true
    fi
    rm -f "$f"
}

lab_ha_links() {
    local p=${1:?} g=${2:?} state=${3:?} dev
    for dev in lan0 wan0 sync0; do
        ip -n "${p}gw$g" link set dev "$dev" "$state"
    done
    if [[ $state == up ]]; then
        for dev in lan0 wan0 sync0; do
            _lab_wait_carrier "${p}gw$g" "$dev"
        done
    fi
}

_lab_ha_has_vips() {
    local ns=$1
    ip -n "$ns" -4 addr show dev lan0 2>/dev/null | grep -qw "$LAB_HA_VIP_LAN_V4" &&
        ip -n "$ns" -4 addr show dev wan0 2>/dev/null | grep -qw "$LAB_HA_VIP_WAN_V4"
}

lab_ha_master() {
    local p=${1:?} a=0 b=0
    _lab_ha_has_vips "${p}gwa" && a=1
    _lab_ha_has_vips "${p}gwb" && b=1
    case "$a$b" in
        10) echo a ;;
        01) echo b ;;
        11) echo both ;;
        *) echo none ;;
    esac
}

_lab_ha_master_is() {
    [[ $(lab_ha_master "$1") == "$2" ]]
}

_lab_ha_linux_rules() {
    local ns=$1 ipt
    for ipt in iptables ip6tables; do
        ip netns exec "$ns" "$ipt" -P FORWARD DROP
        ip netns exec "$ns" "$ipt" -A FORWARD -m conntrack --ctstate INVALID -j DROP
        ip netns exec "$ns" "$ipt" -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        ip netns exec "$ns" "$ipt" -A FORWARD -i lan0 -o wan0 -p tcp -m multiport --dports 7000,8080 \
            -m conntrack --ctstate NEW -j ACCEPT
        ip netns exec "$ns" "$ipt" -A FORWARD -i lan0 -o wan0 -p udp --dport 7001 \
            -m conntrack --ctstate NEW -j ACCEPT
    done
    ip netns exec "$ns" iptables -A FORWARD -i lan0 -o wan0 -p icmp --icmp-type echo-request \
        -m conntrack --ctstate NEW -j ACCEPT
    ip netns exec "$ns" ip6tables -A FORWARD -i lan0 -o wan0 -p icmpv6 --icmpv6-type echo-request \
        -m conntrack --ctstate NEW -j ACCEPT
}

_lab_ha_link() {
    # _lab_ha_link NS_A DEV_A NS_B DEV_B — a veth pair created inside the namespaces
    ip link add name "$2" netns "$1" type veth peer name "$4" netns "$3"
}

_lab_ha_wire_vrrp() {
    # Client and server segments as bridges; both gateways on both, keepalived moves the
    # gateway addresses.
    local p=$1 g ns sw dev n=11
    for sw in lan wan; do
        ip -n "${p}$sw" link add br0 type bridge stp_state 0 mcast_snooping 0
        _lab_sysctl "${p}$sw" net.bridge.bridge-nf-call-iptables=0 \
            net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 2>/dev/null || true
    done
    _lab_ha_link "${p}cli" eth0 "${p}lan" cli
    _lab_ha_link "${p}srv" eth0 "${p}wan" srv
    for g in a b; do
        _lab_ha_link "${p}gw$g" lan0 "${p}lan" "gw$g"
        _lab_ha_link "${p}gw$g" wan0 "${p}wan" "gw$g"
    done
    _lab_ha_link "${p}gwa" sync0 "${p}gwb" sync0
    ip -n "${p}cli" addr add "$LAB_CLI_V4/24" dev eth0
    ip -n "${p}cli" addr add "$LAB_CLI_V6/64" dev eth0 nodad
    ip -n "${p}srv" addr add "$LAB_SRV_V4/24" dev eth0
    ip -n "${p}srv" addr add "$LAB_SRV_V6/64" dev eth0 nodad
    for g in a b; do
        ns="${p}gw$g"
        ip -n "$ns" addr add "198.51.100.$n/24" dev lan0
        ip -n "$ns" addr add "2001:db8:1::$n/64" dev lan0 nodad
        ip -n "$ns" addr add "203.0.113.$n/24" dev wan0
        ip -n "$ns" addr add "2001:db8:2::$n/64" dev wan0 nodad
        n=$((n + 1))
    done
    ip -n "${p}gwa" addr add 192.0.2.1/30 dev sync0
    ip -n "${p}gwb" addr add 192.0.2.2/30 dev sync0
    # Gateway and switch ends first (see lab.sh), then the hosts.
    for g in a b; do
        for dev in lan0 wan0 sync0; do ip -n "${p}gw$g" link set dev "$dev" up; done
    done
    for sw in lan wan; do
        ip -n "${p}$sw" link set br0 up
    done
    for dev in cli gwa gwb; do ip -n "${p}lan" link set dev "$dev" master br0 up; done
    for dev in srv gwa gwb; do ip -n "${p}wan" link set dev "$dev" master br0 up; done
    ip -n "${p}cli" link set dev eth0 up
    ip -n "${p}srv" link set dev eth0 up
    for g in a b; do
        for dev in lan0 wan0 sync0; do _lab_wait_carrier "${p}gw$g" "$dev"; done
    done
    _lab_wait_carrier "${p}cli" eth0
    _lab_wait_carrier "${p}srv" eth0
    ip -n "${p}cli" route add default via "$LAB_HA_VIP_LAN_V4"
    ip -n "${p}cli" -6 route add default via "$LAB_HA_VIP_LAN_V6"
    ip -n "${p}srv" route add default via "$LAB_HA_VIP_WAN_V4"
    ip -n "${p}srv" -6 route add default via "$LAB_HA_VIP_WAN_V6"
}

_lab_ha_wire_ecmp() {
    # Active-active: router namespaces rl (client side) and rr (server side) spread the flows
    # over both gateways with ECMP: a custom hash of addresses, protocol and ports (policy 3;
    # policy 1 reuses the sender's socket hash, which veth carries along, and is not
    # symmetric), the same seed on both routers; the kernel's flow hash orders the endpoints,
    # so both directions of a flow cross the same gateway. On
    # point-to-point links, so a gateway's links going down take its next hops out
    # (ignore_routes_with_linkdown). IPv4 only.
    #   cli 198.51.100.2 -- rl 198.51.100.1 ; rl 192.0.2.5/.9 -- gwa .6 / gwb .10 (lan0)
    #   gwa .13 / gwb .17 (wan0) -- rr 192.0.2.14/.18 ; rr 203.0.113.1 -- srv 203.0.113.2
    local p=$1 r dev
    _lab_ha_link "${p}cli" eth0 "${p}rl" eth0
    _lab_ha_link "${p}srv" eth0 "${p}rr" eth0
    _lab_ha_link "${p}rl" ga "${p}gwa" lan0
    _lab_ha_link "${p}rl" gb "${p}gwb" lan0
    _lab_ha_link "${p}rr" ga "${p}gwa" wan0
    _lab_ha_link "${p}rr" gb "${p}gwb" wan0
    _lab_ha_link "${p}gwa" sync0 "${p}gwb" sync0
    ip -n "${p}cli" addr add "$LAB_CLI_V4/24" dev eth0
    ip -n "${p}srv" addr add "$LAB_SRV_V4/24" dev eth0
    ip -n "${p}rl" addr add 198.51.100.1/24 dev eth0
    ip -n "${p}rr" addr add 203.0.113.1/24 dev eth0
    ip -n "${p}rl" addr add 192.0.2.5/30 dev ga
    ip -n "${p}rl" addr add 192.0.2.9/30 dev gb
    ip -n "${p}rr" addr add 192.0.2.14/30 dev ga
    ip -n "${p}rr" addr add 192.0.2.18/30 dev gb
    ip -n "${p}gwa" addr add 192.0.2.6/30 dev lan0
    ip -n "${p}gwb" addr add 192.0.2.10/30 dev lan0
    ip -n "${p}gwa" addr add 192.0.2.13/30 dev wan0
    ip -n "${p}gwb" addr add 192.0.2.17/30 dev wan0
    ip -n "${p}gwa" addr add 192.0.2.1/30 dev sync0
    ip -n "${p}gwb" addr add 192.0.2.2/30 dev sync0
    for r in rl rr; do
        _lab_sysctl "${p}$r" net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=3 \
            net.ipv4.fib_multipath_hash_fields=0x0037 \
            net.ipv4.fib_multipath_hash_seed=5717 net.ipv4.conf.all.ignore_routes_with_linkdown=1 \
            net.ipv4.conf.default.ignore_routes_with_linkdown=1 net.ipv4.conf.all.rp_filter=0
    done
    for dev in lan0 wan0 sync0; do
        ip -n "${p}gwa" link set dev "$dev" up
        ip -n "${p}gwb" link set dev "$dev" up
    done
    for r in rl rr; do
        for dev in eth0 ga gb; do ip -n "${p}$r" link set dev "$dev" up; done
    done
    ip -n "${p}cli" link set dev eth0 up
    ip -n "${p}srv" link set dev eth0 up
    for dev in lan0 wan0 sync0; do
        _lab_wait_carrier "${p}gwa" "$dev"
        _lab_wait_carrier "${p}gwb" "$dev"
    done
    for r in rl rr; do
        for dev in eth0 ga gb; do _lab_wait_carrier "${p}$r" "$dev"; done
    done
    _lab_wait_carrier "${p}cli" eth0
    _lab_wait_carrier "${p}srv" eth0
    ip -n "${p}cli" route add default via 198.51.100.1
    ip -n "${p}srv" route add default via 203.0.113.1
    ip -n "${p}rl" route add 203.0.113.0/24 nexthop via 192.0.2.6 dev ga nexthop via 192.0.2.10 dev gb
    ip -n "${p}rr" route add 198.51.100.0/24 nexthop via 192.0.2.13 dev ga nexthop via 192.0.2.17 dev gb
    ip -n "${p}gwa" route add 198.51.100.0/24 via 192.0.2.5
    ip -n "${p}gwa" route add 203.0.113.0/24 via 192.0.2.14
    ip -n "${p}gwb" route add 198.51.100.0/24 via 192.0.2.9
    ip -n "${p}gwb" route add 203.0.113.0/24 via 192.0.2.18
}

lab_ha_up() {
    # lab_ha_up PREFIX [FIREWALL [TOPOLOGY]] — TOPOLOGY: vrrp (default) or ecmp
    local p=${1:?lab_ha_up PREFIX [FIREWALL [TOPOLOGY]]} fw=${2:-statewall} topo=${3:-vrrp} w g ns
    case "$fw" in statewall | linux | none) ;; *)
        echo "lab ha: firewall must be statewall, linux or none" >&2
        return 2
        ;;
    esac
    case "$topo" in vrrp | ecmp) ;; *)
        echo "lab ha: topology must be vrrp or ecmp" >&2
        return 2
        ;;
    esac
    if lab_ha_exists_any "$p"; then
        echo "lab ha: namespaces with prefix $p already exist" >&2
        return 1
    fi
    w=$(lab_ha_dir "$p")
    rm -rf "$w"
    mkdir -m 0700 "$w"
    echo "$fw" >"$w/firewall"
    echo "$topo" >"$w/topology"
    for ns in $(_lab_ha_namespaces "$p" "$topo"); do
        _lab_pre_ns "$ns"
    done
    "_lab_ha_wire_$topo" "$p"
    for g in a b; do
        _lab_sysctl "${p}gw$g" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
            net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    done

    install -m 0700 "$_lab_ha_root/contrib/keepalived/statewall-ha" "$w/statewall-ha"
    for g in a b; do
        ns="${p}gw$g"
        _lab_ha_write_configs "$p" "$g" "$fw"
        # The kernel tracks forwarded traffic once a conntrack user exists in the namespace
        # (the firewall rules below, or statewall's); mid-stream pickup stays off.
        case "$fw" in
            linux) _lab_ha_linux_rules "$ns" ;;
            statewall) lab_ha_start "$p" "$g" statewall ;;
            none) ;;
        esac
        _lab_sysctl "$ns" net.netfilter.nf_conntrack_tcp_loose=0 2>/dev/null || true
        lab_ha_start "$p" "$g" conntrackd
    done
    if [[ $topo == ecmp ]]; then
        # Both gateways are active: each takes over at once.
        if [[ $fw == statewall ]]; then
            for g in a b; do
                "${STATEWALL_BIN:-$_lab_ha_root/target/release/statewall}" takeover \
                    --socket "$w/sw-$g/control.sock" >>"$w/ha-$g.log" 2>&1
            done
        fi
        return 0
    fi
    for g in a b; do
        lab_ha_start "$p" "$g" keepalived
    done
    _lab_ha_wait 40 "gateway a to be master" _lab_ha_master_is "$p" a
    _lab_ha_wait 20 "gateway b to be synced" "$w/statewall-ha" -e "$w/ha-b.env" ready
}

lab_ha_down() {
    local p=${1:?lab_ha_down PREFIX} w ns
    w=$(lab_ha_dir "$p")
    # Every daemon at once (SIGTERM, 5 s, SIGKILL), then whatever else runs in the namespaces.
    local pids=() pid f
    for f in "$w"/*.pid; do
        [[ -f $f ]] && pid=$(cat "$f") && [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    done
    for _ in $(seq 50); do
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && break
            pid=
        done
        [[ -z ${pid:-} ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for ns in $(_lab_ha_namespaces "$p"); do
        lab_kill_ns_pids "$ns"
        if ip netns list | awk '{print $1}' | grep -qxF "$ns"; then
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    if [[ -d $w && ${LAB_KEEP:-0} != 1 ]]; then
        rm -rf "$w"
    fi
    return 0
}

lab_ha_status() {
    local p=${1:?lab_ha_status PREFIX} w ns rc=0 g what
    w=$(lab_ha_dir "$p")
    for ns in $(_lab_ha_namespaces "$p" "$(cat "$w/topology" 2>/dev/null)"); do
        if ip netns list | awk '{print $1}' | grep -qxF "$ns"; then
            echo "== $ns"
            ip -n "$ns" -br addr show | grep -v '^lo ' || true
        else
            echo "== $ns: absent"
            rc=1
        fi
    done
    echo "master: $(lab_ha_master "$p")"
    for g in a b; do
        for what in keepalived conntrackd statewall; do
            if _lab_ha_pid_alive "$w/$what-$g.pid"; then
                echo "gw$g $what: running (pid $(cat "$w/$what-$g.pid"))"
            else
                echo "gw$g $what: not running"
            fi
        done
    done
    echo "run directory: $w"
    return "$rc"
}
