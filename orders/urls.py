"""URLs of the orders app."""

urlpatterns: list = []
