"""The project's Celery app, configured from Django's settings (CELERY_*), as Celery's
Django guide sets it up. Nothing here knows the workers are Rust."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
