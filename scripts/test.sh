#!/usr/bin/env bash
# The whole test suite. Tests that need Redis start their own private redis-server on
# a free 127.0.0.1 port, so only the binary is needed: installed here from Debian's
# packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  echo "== installing redis-server and openssl (Debian packages; the TLS tests make certificates)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server openssl >/dev/null
fi

exec cargo test --workspace --all-features "$@"
