from django.urls import path

from channels_sync import api

urlpatterns = [
    path("", api.ChannelListView.as_view(), name="channel-list"),
    path("<int:channel_id>/", api.ChannelDetailView.as_view(), name="channel-detail"),
    path(
        "<int:channel_id>/listings/",
        api.ChannelListingListView.as_view(),
        name="channel-listing-list",
    ),
    path("<int:channel_id>/rules/", api.AllocationRuleListView.as_view(), name="channel-rule-list"),
    path("<int:channel_id>/preview/", api.ChannelPreviewView.as_view(), name="channel-preview"),
    path(
        "<int:channel_id>/attempts/", api.PushAttemptListView.as_view(), name="channel-attempt-list"
    ),
    path("<int:channel_id>/push/", api.ChannelPushView.as_view(), name="channel-push"),
    path(
        "<int:channel_id>/reconcile/",
        api.ChannelReconcileView.as_view(),
        name="channel-reconcile",
    ),
]
