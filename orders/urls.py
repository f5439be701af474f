"""URLs of the orders app (mounted at /api/v1/orders/)."""

from rest_framework.routers import SimpleRouter

from orders import api

router = SimpleRouter()
router.register("", api.OrderViewSet, basename="order")

urlpatterns = [*router.urls]
