#!/usr/bin/env bash
# Side-by-side HTTP/1.1 proxy benchmark on loopback: Switchyard vs nginx vs HAProxy, and the
# reference proxies built from benches/refs (issue 12) that show where the cost is.
#
# One origin (nginx, one worker: `return 200 "ok\n"` on /, static 4 KiB and 64 KiB files on
# /4k and /64k) and the proxies in front of it, each keeping keep-alive connections to it:
#   switchyard  release build, upstream with one pool of one backend, balance = "least_conn"
#   switchyard-hyper  the same binary and config with `http1 = "hyper"` on its listeners (the
#               hyper HTTP/1 engine, issue 12); only when named in TARGETS
#   nginx       upstream { least_conn; keepalive 128; }, proxy_pass with HTTP/1.1
#   haproxy     mode http, balance leastconn, keep-alive and connection reuse to the server
#   pingora     ref-pingora: pingora-proxy with no features (`ProxyHttp` with only upstream_peer)
#   hyper       ref-hyper: hyper's HTTP/1 codec, a current-thread runtime per thread, each with
#               its SO_REUSEPORT listener and pooled hyper client; no features
#   h1loop      ref-h1loop: the spike, a request loop on pingora-core's HTTP/1 server and client
#               sessions and pingora's pool, one task per connection, no channels; no features
# Switchyard, nginx and HAProxy add X-Forwarded-For; all use 2 worker threads/processes. wrk
# drives each in turn (rounds interleaved, order rotated each round) and the table gives the
# median over rounds of requests/s, p50 and p99 latency, the server's CPU time per request
# (user + system from /proc), and req/s, p99 and CPU/req as ratios to HAProxy (or to nginx, or
# the first target, when HAProxy is not run). "origin" is wrk straight at the origin, the
# ceiling (its CPU is the origin's own).
#
# CASES picks what is fetched: "ok" (/, 3 bytes), "4k" (/4k), "64k" (/64k), "tls" (/ over
# TLS terminated by the proxy, with a self-signed certificate made at run time; the proxy
# talks to the origin in the clear; no origin row).
#
# Everything listens on 127.0.0.1 ports picked free by the script, every run is bounded by
# `timeout`, and everything started is stopped on exit. The machine's cores are shared by
# wrk, the proxy under test and the origin: the figures compare proxies under the same
# squeeze, they are not any proxy's capacity on dedicated cores.
#
# Knobs (environment): DURATION (15, seconds per run), CONNS ("64 256"), THREADS (2, wrk
# threads), ROUNDS (3), WARMUP (3, seconds per proxy before each concurrency), OUT
# (target/bench-http/<time>: wrk outputs and configs are kept there), CARGO_TARGET_DIR
# (where the release build goes and the switchyard binary is taken from; default target),
# SWITCHYARD_BIN (a switchyard binary to use as is, instead of building one), REFS_DIR (a
# directory holding ref-pingora, ref-hyper and ref-h1loop to use as they are; else they are
# built with `cargo build --release -p switchyard-bench-refs` when a target needs them),
# CASES ("ok 4k 64k tls"),
# SWITCHYARD_LISTENER (extra keys for Switchyard's listener, e.g. 'read_buffer_bytes = 65536'),
# ACCESS_LOG (`combined` or `json`: also run "switchyard-log", a second Switchyard identical to
# the first but writing an access log line per request to $OUT/access.log, and report what the
# log costs), TARGETS (the proxies to drive, default "switchyard nginx haproxy", plus
# switchyard-log with ACCESS_LOG; e.g. TARGETS="switchyard switchyard-log" for the log alone;
# "pingora hyper h1loop" are the references; switchyard-hyper is Switchyard on its hyper
# HTTP/1 engine).
#
#   ACCESS_LOG=combined TARGETS="switchyard switchyard-log" CASES=ok ROUNDS=6 benches/http_compare.sh
#   THREADS=1 DURATION=5 TARGETS="switchyard pingora hyper h1loop haproxy nginx" benches/http_compare.sh
#   CASES="ok 4k tls" TARGETS="switchyard switchyard-hyper haproxy" benches/http_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-15}
conns=${CONNS:-"64 256"}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
warmup=${WARMUP:-3}
out=${OUT:-target/bench-http/$(date -u +%Y%m%dT%H%M%SZ)}
access_log=${ACCESS_LOG:-}
read -r -a cases <<<"${CASES:-ok 4k 64k tls}"
for k in "${cases[@]}"; do
  case "$k" in ok | 4k | 64k | tls) ;; *) echo "CASES: ok, 4k, 64k or tls, not $k" >&2; exit 2 ;; esac
done
default_targets="switchyard nginx haproxy${access_log:+ switchyard-log}"
read -r -a targets <<<"${TARGETS:-$default_targets}"
case "$access_log" in "" | combined | json) ;; *) echo "ACCESS_LOG: combined or json" >&2; exit 2 ;; esac

# --- tools, ports, files, cleanup (benches/lib/http.sh) ---------------------------------
. benches/lib/http.sh
http_tools wrk openssl
refs_dir=""
if [[ " ${targets[*]} " =~ \ (pingora|hyper|h1loop)\  ]]; then
  if [ -n "${REFS_DIR:-}" ]; then
    refs_dir=$(realpath "$REFS_DIR")
  else
    cargo build --release -p switchyard-bench-refs
    refs_dir=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)
  fi
fi

http_run_dir
# The clear and TLS ports of every proxy, the origin's, and two control ports.
read -r p_origin p_switchyard p_control p_nginx p_haproxy p_sylog p_sylog_control \
  p_pingora p_hyper p_h1loop t_switchyard t_nginx t_haproxy t_pingora t_hyper t_h1loop \
  p_syhyper p_syhyper_control t_syhyper < <(free_ports 19)

# --- the origin and the TLS certificate ---------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$out/tls.key" -out "$out/tls.crt" 2>/dev/null
cat "$out/tls.crt" "$out/tls.key" >"$out/tls.pem"

start_origin "$p_origin"
declare -A pid=([origin]=$origin_pid)

# --- switchyard ---------------------------------------------------------------------------
start_switchyard switchyard "$p_switchyard" "$p_control" "" "[[http.listeners]]
name = \"bench-tls\"
addr = \"127.0.0.1:$t_switchyard\"
tls = [{ cert = \"$out/tls.crt\", key = \"$out/tls.key\" }]"
pid[switchyard]=$switchyard_pid
if [ -n "$access_log" ]; then
  start_switchyard switchyard-log "$p_sylog" "$p_sylog_control" \
    "access_log = { format = \"$access_log\", path = \"$out/access.log\" }" ""
  pid[switchyard-log]=$switchyard_pid
fi
if [[ " ${targets[*]} " == *" switchyard-hyper "* ]]; then
  start_switchyard switchyard-hyper "$p_syhyper" "$p_syhyper_control" 'http1 = "hyper"' "[[http.listeners]]
name = \"bench-tls\"
addr = \"127.0.0.1:$t_syhyper\"
http1 = \"hyper\"
tls = [{ cert = \"$out/tls.crt\", key = \"$out/tls.key\" }]"
  pid[switchyard-hyper]=$switchyard_pid
fi

# --- nginx proxy --------------------------------------------------------------------------
start_nginx_proxy "$p_nginx" 8192 "    keepalive_requests 10000000;
    keepalive_timeout 120s;" "        least_conn;
        keepalive_requests 10000000;" "        listen 127.0.0.1:$t_nginx ssl;
        ssl_certificate $out/tls.crt;
        ssl_certificate_key $out/tls.key;"
pid[nginx]=$nginx_pid

# --- haproxy ------------------------------------------------------------------------------
start_haproxy "$p_haproxy" 4096 "" "    timeout client 60s
    timeout http-keep-alive 120s" "    bind 127.0.0.1:$t_haproxy ssl crt $out/tls.pem alpn http/1.1" "    balance leastconn"
pid[haproxy]=$haproxy_pid

# --- the references (benches/refs) -------------------------------------------------------
# Each twice: one process in the clear, one terminating TLS (kept apart so that neither's CPU
# counts in the other's figures). h1loop gets no read buffer in the clear, like Switchyard
# (`read_buffer_bytes` defaults to 0 there); pingora keeps pingora's default.
declare -A port=([origin]=$p_origin [switchyard]=$p_switchyard [nginx]=$p_nginx [haproxy]=$p_haproxy
  [switchyard-log]=$p_sylog [pingora]=$p_pingora [hyper]=$p_hyper [h1loop]=$p_h1loop
  [switchyard-hyper]=$p_syhyper)
declare -A tport=([switchyard]=$t_switchyard [nginx]=$t_nginx [haproxy]=$t_haproxy
  [pingora]=$t_pingora [hyper]=$t_hyper [h1loop]=$t_h1loop [switchyard-hyper]=$t_syhyper)
declare -A tpid=([switchyard]=${pid[switchyard]} [nginx]=${pid[nginx]} [haproxy]=${pid[haproxy]}
  [switchyard-hyper]=${pid[switchyard-hyper]:-})
declare -A ref_extra=([pingora]="" [hyper]="" [h1loop]="--read-buffer 0")
for t in "${targets[@]}"; do
  [ -n "${port[$t]:-}" ] && { [ "$t" != switchyard-log ] || [ -n "$access_log" ]; } ||
    { echo "TARGETS: unknown target $t (switchyard-log needs ACCESS_LOG)" >&2; exit 2; }
  case "$t" in
    pingora | hyper | h1loop)
      # shellcheck disable=SC2086 # ref_extra holds separate words
      "$refs_dir/ref-$t" --listen "127.0.0.1:${port[$t]}" --upstream "127.0.0.1:$p_origin" \
        --threads 2 ${ref_extra[$t]} >"$out/ref-$t.log" 2>&1 &
      pids+=($!)
      pid[$t]=$!
      if [[ " ${cases[*]} " == *" tls "* ]]; then
        "$refs_dir/ref-$t" --listen "127.0.0.1:${tport[$t]}" --upstream "127.0.0.1:$p_origin" \
          --threads 2 --cert "$out/tls.crt" --key "$out/tls.key" >"$out/ref-$t-tls.log" 2>&1 &
        pids+=($!)
        tpid[$t]=$!
      fi
      ;;
  esac
done

wait_http origin "$p_origin"
for t in "${targets[@]}"; do
  wait_http "$t" "${port[$t]}"
  if [[ " ${cases[*]} " == *" tls "* ]] && [ -n "${tport[$t]:-}" ]; then wait_http "$t" "${tport[$t]}" https; fi
done
# Every response size must come through every proxy whole.
for k in 4k 64k; do
  if [[ " ${cases[*]} " == *" $k "* ]]; then
    for t in origin "${targets[@]}"; do
      got=$(curl -s "http://127.0.0.1:${port[$t]}/$k" | wc -c)
      [ "$got" = "$(wc -c <"$out/www/$k")" ] ||
        { echo "bench: $t answered /$k with $got bytes" >&2; exit 1; }
    done
  fi
done
# The ratio columns: against HAProxy, else nginx, else the first target.
ref=${targets[0]}
for t in "${targets[@]}"; do [ "$t" != nginx ] || ref=nginx; done
for t in "${targets[@]}"; do [ "$t" != haproxy ] || ref=haproxy; done

# --- runs ---------------------------------------------------------------------------------
# cpu_ticks PID: user + system CPU time of PID and its children (nginx's workers), in ticks.
cpu_ticks() {
  local p total=0
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  echo "$total"
}
clk_tck=$(getconf CLK_TCK)

# url CASE TARGET: what wrk fetches.
url() {
  case "$1" in
    ok) echo "http://127.0.0.1:${port[$2]}/" ;;
    4k | 64k) echo "http://127.0.0.1:${port[$2]}/$1" ;;
    tls) echo "https://127.0.0.1:${tport[$2]}/" ;;
  esac
}
# case_targets CASE: the targets run in CASE (TLS: those with a TLS listener; no origin).
case_targets() {
  local t
  [ "$1" = tls ] || echo origin
  for t in "${targets[@]}"; do
    [ "$1" != tls ] || [ -n "${tport[$t]:-}" ] && echo "$t"
  done
}

# run_wrk CASE TARGET CONNS SECONDS FILE: wrk's output, then a line "cpu_ticks N" for the
# server under test (the proxy, or the origin itself for "origin").
run_wrk() {
  local before p=${pid[$2]}
  [ "$1" != tls ] || p=${tpid[$2]}
  before=$(cpu_ticks "$p")
  timeout $(($4 + 30)) wrk -t"$threads" -c"$3" -d"$4s" --latency "$(url "$1" "$2")" >"$5"
  echo "cpu_ticks $(($(cpu_ticks "$p") - before))" >>"$5"
}

echo "bench: load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
echo "bench: $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), wrk -t$threads -d${duration}s, connections: $conns, $rounds rounds, cases: ${cases[*]}, targets: ${targets[*]}${access_log:+, access log $access_log}; outputs in $out"
for k in "${cases[@]}"; do
  mapfile -t run_targets < <(case_targets "$k")
  n_targets=${#run_targets[@]}
  for c in $conns; do
    for t in "${run_targets[@]}"; do run_wrk "$k" "$t" "$c" "$warmup" /dev/null; done
    for r in $(seq "$rounds"); do
      # Rotate the order each round so no proxy always runs first (or right after the warm-up).
      order=("${run_targets[@]:$(((r - 1) % n_targets))}" "${run_targets[@]:0:$(((r - 1) % n_targets))}")
      for t in "${order[@]}"; do
        f="$out/wrk-$k-$t-c$c-r$r.txt"
        run_wrk "$k" "$t" "$c" "$duration" "$f"
        printf '  %-3s c=%-4s round %s %-16s %10s req/s\n' "$k" "$c" "$r" "$t" \
          "$(awk '/^Requests\/sec/ {print $2}' "$f")"
      done
    done
  done
done

# --- table --------------------------------------------------------------------------------
# One line per wrk output: req/s, p50 ms, p99 ms, errors (socket errors + non-2xx), and the
# server's CPU time per request in microseconds.
summarize() {
  awk -v tck="$clk_tck" '
    function ms(v) {
      if (v ~ /us$/) return v * 0.001; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000
      return v
    }
    /^Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Socket errors/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
    /Non-2xx/ { errs += $NF }
    / requests in / { n = $1 }
    $1 == "cpu_ticks" { cpu = $2 * 1e6 / tck / n }
    END { printf "%s %.3f %.3f %d %.1f\n", rps, p50, p99, errs, cpu }' "$1"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
{
  printf '%-4s %-16s %6s %10s %8s %8s %11s %7s %7s %7s %7s\n' case target conns "req/s" \
    "p50 ms" "p99 ms" "CPU us/req" errors "rps/ref" "p99/ref" "cpu/ref"
  for k in "${cases[@]}"; do
    mapfile -t run_targets < <(case_targets "$k")
    for c in $conns; do
      declare -A rps=() p99=() cpu=()
      for t in "${run_targets[@]}"; do
        s=$out/summary-$k-$t-c$c.txt
        for r in $(seq "$rounds"); do summarize "$out/wrk-$k-$t-c$c-r$r.txt"; done >"$s"
        rps[$t]=$(cut -d' ' -f1 "$s" | median)
        p99[$t]=$(cut -d' ' -f3 "$s" | median)
        cpu[$t]=$(cut -d' ' -f5 "$s" | median)
      done
      for t in "${run_targets[@]}"; do
        s=$out/summary-$k-$t-c$c.txt
        printf '%-4s %-16s %6s %10.0f %8.3f %8.3f %11.1f %7d %7.2f %7.2f %7.2f\n' "$k" "$t" "$c" \
          "${rps[$t]}" "$(cut -d' ' -f2 "$s" | median)" "${p99[$t]}" "${cpu[$t]}" \
          "$(awk '{ e += $4 } END { print e + 0 }' "$s")" \
          "$(awk -v a="${rps[$t]}" -v b="${rps[$ref]}" 'BEGIN { print a / b }')" \
          "$(awk -v a="${p99[$t]}" -v b="${p99[$ref]}" 'BEGIN { print a / b }')" \
          "$(awk -v a="${cpu[$t]}" -v b="${cpu[$ref]}" 'BEGIN { print (b > 0) ? a / b : 0 }')"
      done
      if [ -n "${rps[switchyard-log]:-}" ] && [ -n "${rps[switchyard]:-}" ]; then
        cpu_on=${cpu[switchyard-log]}
        cpu_off=${cpu[switchyard]}
        awk -v c="$c" -v on="${rps[switchyard-log]}" -v off="${rps[switchyard]}" \
          -v con="$cpu_on" -v coff="$cpu_off" -v fmt="$access_log" -v k="$k" 'BEGIN {
            printf "access log (%s) at %s c=%s: %+.1f%% req/s, %+.1f%% CPU us/req (medians, on vs off)\n",
              fmt, k, c, (on / off - 1) * 100, (con / coff - 1) * 100 }'
      fi
      unset rps p99 cpu
    done
  done
} | tee "$out/table.txt"
if [ -n "$access_log" ]; then
  echo "access log: $(wc -l <"$out/access.log") lines, $(du -h "$out/access.log" | cut -f1) in $out/access.log; its series:"
  curl -s -H "Authorization: Bearer bench" "http://127.0.0.1:$p_sylog_control/metrics" |
    grep '^switchyard_http_access_log_' || echo "  (none: nothing written or dropped yet)"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(medians over $rounds rounds of ${duration}s; CPU us/req is the server under test's own"
echo " CPU time (the proxy; for \"origin\" the origin); errors summed over rounds; */ref are ratios"
echo " to $ref; raw output in $out)"
