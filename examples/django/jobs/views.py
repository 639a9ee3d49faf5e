"""A view that hands the work to the queue and answers at once (202), a JSON status,
and a page that polls it."""
from celery.result import AsyncResult
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from .tasks import build_job


@require_GET
def index(request):
    return render(request, "jobs/index.html")


@require_POST
def start_job(request):
    try:
        job_id = int(request.POST.get("job_id", "0"))
        pages = int(request.POST.get("pages", "1"))
    except ValueError:
        return JsonResponse({"error": "job_id and pages are numbers"}, status=400)
    result = build_job.delay(job_id, pages=pages)
    return JsonResponse(
        {"id": result.id, "status": f"/jobs/{result.id}", "page": f"/jobs/{result.id}/page"}, status=202
    )


@require_GET
def job_status(request, job_id):
    # An example: anyone who knows a task's id reads its state. A real project checks
    # that the job is the asker's (keep the ids it started, per user) before this.
    result = AsyncResult(job_id)
    body = {"id": job_id, "state": result.state}
    if result.state == "PROGRESS":
        body["progress"] = result.info
    elif result.successful():
        body["result"] = result.result
    elif result.failed():
        body["error"] = str(result.result)
    return JsonResponse(body)


@require_GET
def job_page(request, job_id):
    return render(request, "jobs/job.html", {"job_id": job_id})
