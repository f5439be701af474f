from django.urls import path
from rest_framework.routers import SimpleRouter

from erp_mapping.api import agents as agents_api
from erp_mapping.api import ingest as ingest_api
from erp_mapping.api import mappings as mappings_api
from erp_mapping.api import pull as pull_api
from erp_mapping.api import sync as sync_api

urlpatterns: list = []

urlpatterns += [
    path("mappings/", mappings_api.MappingListView.as_view(), name="erp-mapping-list"),
    path("mappings/seed/", mappings_api.MappingSeedView.as_view(), name="erp-mapping-seed"),
]

runs = SimpleRouter()
runs.register("sync-runs", pull_api.SyncRunViewSet, basename="erp-sync-run")
runs.register("sync-jobs", sync_api.ErpSyncJobViewSet, basename="erp-sync-job")
urlpatterns += [
    path(
        "connections/<str:vendor_id>/",
        pull_api.ErpConnectionView.as_view(),
        name="erp-connection",
    ),
    *runs.urls,
]

urlpatterns += [
    path("agents/", agents_api.AgentListView.as_view(), name="erp-agent-list"),
    path("agents/heartbeat/", agents_api.AgentHeartbeatView.as_view(), name="erp-agent-heartbeat"),
    path("agents/callback/", sync_api.AgentCallbackView.as_view(), name="erp-agent-callback"),
    path("ingest/items/", ingest_api.ItemIngestView.as_view(), name="erp-ingest-items"),
    path(
        "ingest/warehouses/", ingest_api.WarehouseIngestView.as_view(), name="erp-ingest-warehouses"
    ),
    path("ingest/stock/", ingest_api.StockIngestView.as_view(), name="erp-ingest-stock"),
]
