"""URLs of the webhooks app: one inbound endpoint per channel (outside the DRF API)."""

from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("<str:channel_type>/<int:channel_id>/", views.webhook_receive_view, name="receive"),
]
