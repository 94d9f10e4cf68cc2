# shellcheck shell=bash
# scripts/lib/bench.sh — what the lab benchmarks share (scripts/bench-lab, scripts/bench-ha),
# sourceable; needs lab.sh (in_ns).
#
#   bench_nginx DIR NS PORT [v6]   start an nginx in NS answering "ok" on PORT (and on [::]:PORT
#                                  with v6); its files under DIR/nginx
#   bench_iperf_gbps JSON          Gbit/s received of an `iperf3 -J` TCP run (nan if none)
#   bench_iperf_kpps JSON          thousand packets/s received of an `iperf3 -u -J` run
#   bench_wrk_cps OUT              requests/s of a wrk run (nan if none)

bench_nginx() {
    local dir=$1/nginx ns=$2 port=$3 v6=""
    [[ ${4:-} == v6 ]] && v6="listen [::]:$port backlog=4096;"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen $port backlog=4096;
        $v6
        location / { return 200 "ok\n"; }
    }
}
NGINX
    in_ns "$ns" nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 &
}

bench_iperf_gbps() {
    python3 -c 'import json,sys
try: print("%.3f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9))
except Exception: print("nan")' "$1"
}

bench_iperf_kpps() {
    python3 -c 'import json,sys
try:
    s = json.load(open(sys.argv[1]))["end"]["sum"]
    print("%.1f" % ((s["packets"] - s["lost_packets"]) / s["seconds"] / 1e3))
except Exception: print("nan")' "$1"
}

bench_wrk_cps() {
    awk '/Requests\/sec/ {printf "%.0f\n", $2; f=1} END {if (!f) print "nan"}' "$1"
}
