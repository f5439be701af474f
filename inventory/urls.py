from django.urls import path
from rest_framework.routers import SimpleRouter

from inventory import api

router = SimpleRouter()
router.register("products", api.ProductViewSet, basename="product")
router.register("warehouses", api.WarehouseViewSet, basename="warehouse")
router.register("stock-levels", api.StockLevelViewSet, basename="stock-level")
router.register("stock-movements", api.StockMovementViewSet, basename="stock-movement")
router.register("reservations", api.ReservationViewSet, basename="reservation")

urlpatterns = [
    path("stock-mutations/", api.StockMutationView.as_view(), name="stock-mutation"),
    path(
        "stock-mutations/batch/",
        api.StockMutationBatchView.as_view(),
        name="stock-mutation-batch",
    ),
    *router.urls,
]
