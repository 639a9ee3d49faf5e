#!/usr/bin/env bash
# The Django example's three processes at once: Django's runserver, the Rust worker
# and Flower, all stopped together on Ctrl-C (or when one of them exits).
#
#   examples/django/run.sh            # Redis at $CELERY_BROKER_URL (default 127.0.0.1:6379/0)
#
# PYTHON names a Python with the project's packages (scripts/celery/requirements.txt);
# DJANGO_PORT and FLOWER_PORT move the two web servers (8000 and 5555).
set -euo pipefail
python="${PYTHON:-python3}"
worker="${DJANGO_WORKER:-}"
# Paths given relative to where it was started from, before it moves.
if [[ "$python" == */* ]]; then python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"; fi
if [[ "$worker" == */* ]]; then worker="$(cd "$(dirname "$worker")" && pwd)/$(basename "$worker")"; fi
cd "$(dirname "$0")"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/0}"
export CELERITY_BROKER_URL="$CELERY_BROKER_URL"
if [ -z "$worker" ]; then
  cargo build -q -p celerity-examples --bin django-worker
  worker="$(cd ../.. && pwd)/target/debug/django-worker"
fi
# Its own jobs only (not the caller's process group).
trap 'trap - EXIT INT TERM; kill $(jobs -p) 2>/dev/null || true; wait' EXIT INT TERM
"$worker" worker -c 4 -n "rusty@%h" &
"$python" -m celery -A proj flower --address=127.0.0.1 --port="${FLOWER_PORT:-5555}" &
"$python" manage.py runserver --noreload "127.0.0.1:${DJANGO_PORT:-8000}" &
wait -n
