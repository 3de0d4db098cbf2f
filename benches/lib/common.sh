# Shared by benches/lib/http.sh and benches/lib/pg.sh: sourced, not run.
#   free_ports N           N distinct free loopback ports, on one line (bound all at once on
#                          port 0, then released for the servers)
#   install_missing PKG... apt-get install of the Debian packages named, when any is given
#   kill_pids              kill every PID in $pids and wait for them (the cleanup traps)

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
}

install_missing() {
  [ $# -gt 0 ] || return 0
  echo "installing: $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # Debian starts packaged daemons on install unless told not to; we start our own.
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
    $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

kill_pids() {
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
