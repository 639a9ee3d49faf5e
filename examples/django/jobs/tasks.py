"""The project's slow work, declared as Celery tasks. Their bodies run on the Rust
worker (`cargo run -p celerity-examples --bin django-worker`), which registers the same
names; a Python worker started on this project would run these bodies instead."""
from celery import shared_task


@shared_task(name="proj.tasks.build_job")
def build_job(job_id, pages=1):
    raise NotImplementedError("build_job runs on the Rust worker")
