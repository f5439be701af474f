"""URLs of the conflicts API (mounted at /api/v1/conflicts/)."""

from rest_framework.routers import SimpleRouter

from channels_sync import api_conflicts

router = SimpleRouter()
router.register("", api_conflicts.ConflictViewSet, basename="conflict")

urlpatterns = [*router.urls]
