# Shared setup of the HTTP benchmarks (benches/http_compare.sh, benches/conn_memory.sh,
# benches/edge_flood.sh): sourced, not run. It provides
#   http_tools [TOOLS...]  nginx, haproxy, python3, curl and TOOLS (e.g. wrk openssl),
#                          installed from Debian when missing; /usr/sbin on PATH;
#                          $switchyard_bin (SWITCHYARD_BIN as given, else the release build
#                          of this tree, made here)
#   http_run_dir           $out made and absolute, $pids (every PID in it is killed on exit),
#                          the cleanup trap
#   free_ports N           N distinct free loopback ports, on one line
#   wait_http NAME PORT [SCHEME]
#                          until the server answers 200 on /, at most 20 s (over TLS with
#                          SCHEME https; the certificate is not checked)
#   nginx_http_paths NAME  nginx's scratch paths (*_temp_path) under $out/nginx-NAME
#   start_origin PORT      the origin: nginx, one worker, `return 200 "ok\n"` on /, static
#                          4 KiB and 64 KiB files on /4k and /64k; its PID is $origin_pid
#   start_switchyard, start_nginx_proxy, start_haproxy
#                          the proxies compared, in front of the origin (see below)
#   bench_token_sha256     the SHA-256 of the viewer token "bench", for Switchyard's
#                          [control] tokens (`curl -H "Authorization: Bearer bench"`)
# and expects the caller to have `cd`ed to the repository and set $out (and $p_origin, the
# origin's port, for the proxies).

. benches/lib/common.sh

http_tools() {
  local need=() t
  for t in nginx haproxy python3 curl "$@"; do
    command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || need+=("$t")
  done
  install_missing "${need[@]}"
  PATH=$PATH:/usr/sbin
  if [ -n "${SWITCHYARD_BIN:-}" ]; then
    switchyard_bin=$(realpath "$SWITCHYARD_BIN")
  else
    scripts/install-deps.sh
    cargo build --release --bin switchyard
    switchyard_bin=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/switchyard
  fi
}

http_run_dir() {
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  pids=()
  trap http_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

http_cleanup() {
  trap - EXIT INT TERM
  kill_pids
}


wait_http() {
  local deadline=$((SECONDS + 20))
  until [ "$(curl -sk -o /dev/null -w '%{http_code}' "${3:-http}://127.0.0.1:$2/" || true)" = 200 ]; do
    if [ $SECONDS -ge $deadline ]; then
      echo "bench: $1 on :$2 does not answer 200${3:+ over $3}; its log is in $out" >&2
      exit 1
    fi
    sleep 0.1
  done
}

nginx_http_paths() {
  local d=$out/nginx-$1
  mkdir -p "$d"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $d/$t;"; done
}

# nginx_head NAME WORKERS CONNECTIONS: the top of an nginx config (pid, log, limits) for
# the nginx called NAME, up to its http block.
nginx_head() {
  cat <<CONF
worker_processes $2;
daemon off;
pid $out/nginx-$1.pid;
error_log $out/nginx-$1.log warn;
worker_rlimit_nofile $(ulimit -n);
events { worker_connections $3; }
CONF
}

start_origin() {
  mkdir -p "$out/www"
  head -c 4096 /dev/zero | tr '\0' x >"$out/www/4k"
  head -c 65536 /dev/zero | tr '\0' x >"$out/www/64k"
  cat >"$out/origin.conf" <<CONF
$(nginx_head origin 1 16384)
http {
$(nginx_http_paths origin)
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$1 backlog=8192;
        location / { default_type text/plain; return 200 "ok\n"; }
        location = /4k { default_type application/octet-stream; root $out/www; }
        location = /64k { default_type application/octet-stream; root $out/www; }
    }
}
CONF
  nginx -p "$out" -e "$out/nginx-origin.log" -c "$out/origin.conf" &
  pids+=($!)
  origin_pid=$!
}

bench_token_sha256=$(printf bench | sha256sum | cut -d' ' -f1)

# start_switchyard NAME PORT CONTROL_PORT LISTENER_KEYS MORE_TOML: one Switchyard in front of
# the origin, its config in $out/NAME/, its log $out/NAME.log; LISTENER_KEYS (and
# SWITCHYARD_LISTENER) are extra keys of its listener, MORE_TOML more tables (another
# listener). The viewer token "bench" reads its /metrics. Its PID is $switchyard_pid.
start_switchyard() {
  mkdir -p "$out/$1"
  cat >"$out/$1/switchyard.toml" <<CONF
[control]
listen = "127.0.0.1:$3"
audit_log = "audit.jsonl"
tokens = [{ name = "bench", role = "viewer", sha256 = "$bench_token_sha256" }]

[[http.listeners]]
name = "bench"
addr = "127.0.0.1:$2"
${SWITCHYARD_LISTENER:-}
$4

$5

[[http.routes]]
upstream = "origin"

[http.upstreams.origin]
balance = "least_conn"

[http.upstreams.origin.pools.main]
backends = ["127.0.0.1:$p_origin"]
CONF
  RUST_LOG=warn "$switchyard_bin" run --config "$out/$1/switchyard.toml" \
    >"$out/$1.log" 2>&1 &
  pids+=($!)
  switchyard_pid=$!
}

# start_nginx_proxy PORT WORKER_CONNECTIONS HTTP_KEYS UPSTREAM_KEYS SERVER_KEYS: nginx, 2
# workers, proxying everything to the origin on $p_origin over kept-alive HTTP/1.1 with
# X-Forwarded-For; the *_KEYS are extra lines for its http, upstream (before `keepalive`, as
# nginx wants a balancing method) and server blocks. Its PID is $nginx_pid.
start_nginx_proxy() {
  cat >"$out/nginx-proxy.conf" <<CONF
$(nginx_head proxy 2 "$2")
http {
$(nginx_http_paths proxy)
    access_log off;
$3
    upstream origin {
$4
        server 127.0.0.1:$p_origin;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$1 backlog=8192;
$5
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
CONF
  nginx -p "$out" -e "$out/nginx-proxy.log" -c "$out/nginx-proxy.conf" &
  pids+=($!)
  nginx_pid=$!
}

# start_haproxy PORT MAXCONN GLOBAL_KEYS DEFAULTS_KEYS BIND_KEYS BACKEND_KEYS: HAProxy, 2
# threads, mode http with keep-alive both ways, X-Forwarded-For and connection reuse to the
# origin on $p_origin; DEFAULTS_KEYS hold its client-side timeouts. Its PID is $haproxy_pid.
start_haproxy() {
  cat >"$out/haproxy.cfg" <<CONF
global
    nbthread 2
    maxconn $2
$3

defaults
    mode http
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 3s
    timeout server 60s
$4

frontend bench
    bind 127.0.0.1:$1 backlog 8192
$5
    default_backend origin

backend origin
$6
    server origin 127.0.0.1:$p_origin
CONF
  haproxy -db -f "$out/haproxy.cfg" >"$out/haproxy.log" 2>&1 &
  pids+=($!)
  haproxy_pid=$!
}
