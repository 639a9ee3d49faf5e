#!/usr/bin/env bash
# The whole test suite. Installs what the tests need when it is missing:
#  - redis-server, redis-cli and openssl (Debian): tests start their own private
#    redis-server on a free 127.0.0.1 port; the TLS tests make their certificates;
#  - chromium (Debian) and playwright-core (npm, pinned by package-lock.json): the web
#    example's browser test;
#  - a Python venv with the real Celery (pinned by scripts/celery/requirements.txt,
#    from PyPI) in target/celery-venv: the Celery interop tests (CELERITY_PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d examples/web/browser/node_modules/playwright-core ]; then
  echo "== installing playwright-core (npm ci)"
  npm ci --prefix examples/web/browser --no-audit --no-fund --loglevel=error
fi

venv=target/celery-venv
if ! cmp -s scripts/celery/requirements.txt "$venv/requirements.txt" 2>/dev/null \
  || ! "$venv/bin/python" -c 'import celery, msgpack, flower, django' >/dev/null 2>&1; then
  echo "== installing Celery into $venv (pip, scripts/celery/requirements.txt)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/celery/requirements.txt
  cp scripts/celery/requirements.txt "$venv/requirements.txt"
fi
export CELERITY_PYTHON="$PWD/$venv/bin/python"

exec cargo test --workspace --all-features "$@"
