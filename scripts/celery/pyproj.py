"""The Celery app of the interop tests' Python workers (`celery -A pyproj worker`).

Tasks Rust sends to Python, under the names a Django project would give them. The
broker and the result backend are the test's Redis, from CELERY_BROKER_URL.
"""
import os

from celery import Celery

app = Celery("proj", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])
app.conf.worker_hijack_root_logger = False


@app.task(name="proj.tasks.add")
def add(x, y):
    return x + y


@app.task(name="proj.tasks.shout")
def shout(text, times=1):
    return (text.upper() + "!") * times


@app.task(name="proj.tasks.fail")
def fail(why):
    raise ValueError(why)


@app.task(bind=True, name="proj.tasks.whoami")
def whoami(self):
    return {"by": "python", "retries": self.request.retries}


@app.task(name="proj.tasks.py_double")
def py_double(x):
    return x * 2


@app.task(name="proj.tasks.py_total")
def py_total(values):
    return {"total": sum(values), "by": "python"}


@app.task(name="proj.tasks.nap")
def nap(ms):
    import time

    time.sleep(ms / 1000)
    return "python"
