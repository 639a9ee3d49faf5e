from django.urls import path

from jobs import views

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs", views.start_job, name="start_job"),
    path("jobs/<str:job_id>", views.job_status, name="job_status"),
    path("jobs/<str:job_id>/page", views.job_page, name="job_page"),
]
