"""Writes the Celery messages task-redis's codec tests read (task-redis/tests/data/celery):
what Celery itself puts on Redis for a few sends, read back as they lie there.

    python3 -m venv /tmp/celery-venv && /tmp/celery-venv/bin/pip install "celery[redis]==5.7.0" msgpack
    redis-server --port 7311 --save '' --appendonly no --daemonize yes
    /tmp/celery-venv/bin/python scripts/celery/capture.py redis://127.0.0.1:7311/15 task-redis/tests/data/celery
"""
import pathlib
import sys

import redis
from celery import Celery, chain

url, out = sys.argv[1], pathlib.Path(sys.argv[2])
client = redis.Redis.from_url(url)
client.flushdb()
app = Celery("proj", broker=url, backend=url)


@app.task(name="proj.tasks.add")
def add(x, y):
    return x + y


def sent(name, send, key="celery"):
    """Runs `send`, then moves the one message it queued into `out/name.json`."""
    send()
    raw = client.rpop(key)
    assert raw is not None and client.llen(key) == 0, f"{name}: one message on {key!r}"
    (out / f"{name}.json").write_bytes(raw + b"\n")


sent("delay", lambda: add.delay(2, 3))
# Priority 5 is kombu's step 3 on Redis: the list `celery\x06\x163`.
sent(
    "options",
    lambda: add.apply_async(
        (1,), {"y": 2}, countdown=30, expires=600, priority=5, time_limit=10, soft_time_limit=5, retries=1
    ),
    key="celery\x06\x163",
)
sent("chain", lambda: chain(add.s(1, 2), add.s(10)).delay())
sent("msgpack", lambda: app.send_task("proj.tasks.add", args=[4, 5], kwargs={}, serializer="msgpack"))
client.flushdb()
print("wrote", sorted(p.name for p in out.glob("*.json")))
