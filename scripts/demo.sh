#!/usr/bin/env bash
# Build Switchyard and run a demo: the control API on 127.0.0.1:9901 with an admin token,
# using a config in target/demo/ that you can edit live.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --bin switchyard

demo=target/demo
mkdir -p "$demo"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
cat > "$demo/switchyard.toml" <<TOML
# Demo config: edit me while Switchyard runs, the change is applied live.
[control]
listen = "127.0.0.1:9901"
audit_log = "audit.jsonl"

[[control.tokens]]
name = "demo-admin"
role = "admin"
sha256 = "$hash"

[[http.listeners]]
name = "public"
addr = "127.0.0.1:8080"

[[http.routes]]
host = "*"
path_prefix = "/"
upstream = "jobs-api"

[http.upstreams.jobs-api]
balance = "least_conn"
max_fails = 3
fail_timeout = "10s"

[http.upstreams.jobs-api.pools.blue]
weight = 100
backends = ["127.0.0.1:9001", "127.0.0.1:9002"]

[http.upstreams.jobs-api.pools.green]
weight = 0
backends = ["127.0.0.1:9101"]
TOML

cat <<MSG

Switchyard demo
  config:    $demo/switchyard.toml   (edit it: changes apply live)
  audit log: $demo/audit.jsonl
  token:     $token

Try, in another terminal:
  export TOKEN=$token
  curl -s localhost:9901/health
  curl -s -H "Authorization: Bearer \$TOKEN" localhost:9901/v1/status
  curl -s -H "Authorization: Bearer \$TOKEN" localhost:9901/v1/config
  sed 's/weight = 0/weight = 10/' $demo/switchyard.toml | \\
    curl -s -X PUT -H "Authorization: Bearer \$TOKEN" --data-binary @- 'localhost:9901/v1/config?dry_run=true'
  curl -s -H "Authorization: Bearer \$TOKEN" localhost:9901/v1/config/history

Ctrl-C stops it.
MSG
exec target/release/switchyard run --config "$demo/switchyard.toml"
