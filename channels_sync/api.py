"""The channels REST API (v1): channels, listings, allocation rules, preview, attempts, push.

Views validate input with serializers and change state only through the channel services.
Reads need the `read` scope; creating and changing a channel and pushing need `admin`;
listing batches, rules and a reconciliation need `write`. Credentials are accepted and never
returned.
"""

from django.db.models import Count, Q, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_sync import selectors
from channels_sync.filters import ChannelFilter, ChannelListingFilter, PushAttemptFilter
from channels_sync.models import AllocationRule, Channel, ChannelListing, PushAttempt
from channels_sync.serializers import (
    AllocationRuleSerializer,
    AllocationRuleWriteSerializer,
    ChannelCreateSerializer,
    ChannelListingSerializer,
    ChannelSerializer,
    ChannelUpdateSerializer,
    ListingBatchResultSerializer,
    ListingBatchSerializer,
    PreviewQuerySerializer,
    PreviewSerializer,
    PushAttemptSerializer,
    PushQuerySerializer,
    PushQueuedSerializer,
    PushReportSerializer,
    ReconcileQueuedSerializer,
    listing_batch_data,
    listing_rows,
)
from channels_sync.services.channels import channel_create, channel_update, rule_set
from channels_sync.services.dirty import push_enqueue
from channels_sync.services.listings import listings_upsert
from channels_sync.services.push import channel_push
from channels_sync.services.reconcile import reconcile_enqueue
from channels_sync.services.signature_failures import channel_signature_failures_flush
from core.errors import NotFoundError
from core.field_errors import service_errors
from core.idempotency import idempotent
from core.pagination import LedgerCursorPagination
from core.schema import error_responses, idempotency_header
from inventory.selectors import vendor_get

_NOT_FOUND = {404: ["channel_not_found"]}


def _channels() -> QuerySet[Channel]:
    """Channels with their warehouses and listing counts, as the channel answers show them."""
    return (
        Channel.objects.prefetch_related("warehouses")
        .annotate(
            listing_count=Count("listings"),
            dirty_count=Count("listings", filter=Q(listings__dirty=True)),
            error_count=Count("listings", filter=Q(listings__status=ChannelListing.Status.ERROR)),
        )
        .order_by("priority", "id")
    )


def _channel(channel_id: int) -> Channel:
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        raise NotFoundError(f"No channel with id {channel_id}.", code="channel_not_found")
    return channel


def _channel_data(channel_id: int) -> dict:
    return ChannelSerializer(_channels().get(pk=channel_id)).data


class _ChannelChildListView(generics.ListAPIView):
    """A list of one channel's rows (404 `channel_not_found` for an unknown channel)."""

    model: type

    def channel(self) -> Channel:
        if not hasattr(self, "_channel_obj"):
            self._channel_obj = _channel(self.kwargs["channel_id"])
        return self._channel_obj

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no channel
            return self.model.objects.none()
        return self.model.objects.filter(channel=self.channel())


# --- Channels ---------------------------------------------------------------------------------


class ChannelListView(generics.ListAPIView):
    serializer_class = ChannelSerializer
    filterset_class = ChannelFilter
    required_scopes = {"GET": "read", "POST": "admin"}

    def get_queryset(self) -> QuerySet[Channel]:
        return _channels()

    @extend_schema(
        summary="List channels (credentials are never returned)",
        responses={
            200: ChannelSerializer(many=True),
            **error_responses(),
        },
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        # Signature failures wait in the cache for a few seconds: show them counted.
        channel_signature_failures_flush()
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a channel (scope admin)",
        description=(
            "A shop on a marketplace, fed by the stock of the given warehouses of the vendor. "
            "`credentials` holds the type's fields (Shopee: partner_id, partner_key, shop_id, "
            "access_token, refresh_token, access_token_expires_at; Lazada: app_key, app_secret, "
            "access_token, refresh_token, access_token_expires_at; TikTok Shop and Tokopedia: "
            "app_key, app_secret, shop_cipher, access_token, refresh_token, "
            "access_token_expires_at; Shopify: shop_domain, access_token, client_secret, "
            "api_version; Amazon: lwa_client_id, lwa_client_secret, refresh_token, seller_id, "
            "marketplace_id, endpoint; eBay: client_id, client_secret, refresh_token, "
            "verification_token, marketplace_id; Square: access_token, location_id, "
            "signature_key, refresh_token, client_id, client_secret, access_token_expires_at; "
            "custom REST shop: token, username, password, api_key or hmac_secret as "
            "`options.auth` says, and webhook_secret). `options` holds the type's settings "
            "(Amazon: product_type, quantity_op; Square: order_location_ids; custom REST "
            "shop: auth, api_key_header, stock, read, orders). Credentials and the webhook "
            "secret are stored encrypted "
            "and never returned: the answer shows `credentials_set` and the field names held. "
            "Unset rate limit and batch size take the type's defaults (`effective_*`)."
        ),
        request=ChannelCreateSerializer,
        parameters=[idempotency_header(required=False)],
        responses={
            201: ChannelSerializer,
            **error_responses(
                {
                    400: [
                        "validation_error",
                        "invalid_credentials",
                        "unknown_warehouse",
                        "invalid_batch_size",
                        "invalid_conflict_policy",
                    ],
                    404: ["vendor_not_found"],
                    409: ["channel_exists", "idempotency_key_in_progress"],
                    422: ["idempotency_key_reused"],
                }
            ),
        },
    )
    @idempotent(required=False)
    def post(self, request: Request) -> Response:
        serializer = ChannelCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        vendor = vendor_get(data.pop("vendor", None))
        with service_errors():
            channel = channel_create(vendor=vendor, actor=request.user.actor, **data)
        return Response(_channel_data(channel.pk), status=status.HTTP_201_CREATED)


class ChannelDetailView(APIView):
    required_scopes = {"GET": "read", "PATCH": "admin"}

    @extend_schema(
        summary="A channel (credentials are never returned)",
        responses={200: ChannelSerializer, **error_responses(_NOT_FOUND)},
    )
    def get(self, request: Request, channel_id: int) -> Response:
        channel_signature_failures_flush(channel_ids=[channel_id])
        channel = _channels().filter(pk=channel_id).first()
        if channel is None:
            raise NotFoundError(f"No channel with id {channel_id}.", code="channel_not_found")
        return Response(ChannelSerializer(channel).data)

    @extend_schema(
        summary="Change a channel (scope admin)",
        description=(
            "Only the fields sent change. `credentials` are merged into the stored ones (a "
            "null value removes a field) and clear the re-authorisation flag. Changes that can "
            "move allocations (warehouses, priority, active, push_enabled, dry_run, "
            "credentials) mark the channel's listings, and the other channels' listings of "
            "the same products, dirty."
        ),
        request=ChannelUpdateSerializer,
        responses={
            200: ChannelSerializer,
            **error_responses(
                {
                    400: [
                        "validation_error",
                        "invalid_credentials",
                        "unknown_warehouse",
                        "invalid_batch_size",
                        "invalid_conflict_policy",
                    ],
                    **_NOT_FOUND,
                    409: ["channel_exists"],
                }
            ),
        },
    )
    def patch(self, request: Request, channel_id: int) -> Response:
        channel = _channel(channel_id)
        serializer = ChannelUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            channel_update(channel=channel, actor=request.user.actor, **serializer.validated_data)
        return Response(_channel_data(channel.pk))


# --- Listings ---------------------------------------------------------------------------------


class ChannelListingListView(_ChannelChildListView):
    model = ChannelListing
    serializer_class = ChannelListingSerializer
    filterset_class = ChannelListingFilter
    required_scopes = {"GET": "read", "POST": "write"}

    def get_queryset(self) -> QuerySet[ChannelListing]:
        return super().get_queryset().select_related("product").order_by("id")

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["channel_type"] = self.channel().type
        return context

    @extend_schema(
        summary="List a channel's listings (filter by dirty, status, sku)",
        description=(
            "Each listing with its keys (as the channel type names them), the desired and "
            "last pushed quantities, the quantity last read back, and its push state."
        ),
        responses={
            200: ChannelListingSerializer(many=True),
            **error_responses(_NOT_FOUND),
        },
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create or update up to 1,000 listings",
        description=(
            'Body `{"rows": [{"sku": "...", "keys": {...}}]}`: ties each SKU of the '
            "channel's vendor to the marketplace's keys for it. Each row is checked on its "
            "own and answered in order: `created`, `updated` (new keys: the listing is pushed "
            "again), `unchanged`, or `invalid` with a code (`invalid_row`, `invalid_keys`, "
            "`unknown_sku`, `duplicate`, `keys_taken`); invalid rows never stop valid ones. "
            "New and changed listings are pushed after the commit. Sending the same batch "
            "again changes nothing."
        ),
        request=ListingBatchSerializer,
        responses={
            200: ListingBatchResultSerializer,
            **error_responses(
                {400: ["invalid_body", "batch_too_large", "parse_error"], **_NOT_FOUND}
            ),
        },
    )
    def post(self, request: Request, channel_id: int) -> Response:
        channel = self.channel()
        rows = listing_rows(request.data)
        result = listings_upsert(channel=channel, rows=rows, actor=request.user.actor)
        return Response(listing_batch_data(result))


# --- Rules ------------------------------------------------------------------------------------


class AllocationRuleListView(_ChannelChildListView):
    model = AllocationRule
    serializer_class = AllocationRuleSerializer
    required_scopes = {"GET": "read", "POST": "write"}

    def get_queryset(self) -> QuerySet[AllocationRule]:
        return super().get_queryset().select_related("product").order_by("scope", "id")

    @extend_schema(
        summary="List a channel's allocation rules",
        description="The channel default, product and listing rules (most specific applies).",
        responses={200: AllocationRuleSerializer(many=True), **error_responses(_NOT_FOUND)},
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Set a channel's allocation rule for a scope (create or replace)",
        description=(
            "One rule per scope target: the channel default (`scope` channel), a product "
            "(`scope` product with `sku`) or one listing (`scope` listing with `listing_id`); "
            "the most specific applies. Strategies: all, percentage (parameter 0-100), fixed "
            "(parameter: the quantity), priority (parameter: the cap), equal_split, "
            "demand_weighted; then buffer_units / buffer_percent held back, max_shown, and "
            "zero_below. Answers 201 for a new rule, 200 when it replaced the existing one. "
            "The affected listings are marked dirty and pushed after the commit."
        ),
        request=AllocationRuleWriteSerializer,
        responses={
            201: AllocationRuleSerializer,
            200: AllocationRuleSerializer,
            **error_responses(
                {
                    400: ["validation_error", "invalid_rule", "unknown_sku", "unknown_listing"],
                    **_NOT_FOUND,
                }
            ),
        },
    )
    def post(self, request: Request, channel_id: int) -> Response:
        channel = self.channel()
        serializer = AllocationRuleWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            rule, created = rule_set(
                channel=channel, actor=request.user.actor, **serializer.validated_data
            )
        return Response(
            AllocationRuleSerializer(rule).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


# --- Preview, attempts, push ------------------------------------------------------------------


class ChannelPreviewView(APIView):
    @extend_schema(
        summary="Dry-run table: each listing's pool, current and desired quantity",
        description=(
            "Computes what a push would send, listing by listing, from the current stock "
            "and rules; sends nothing and changes nothing. Excluded listings show no desired "
            "quantity. "
            "Pages by listing id: pass the answer's `next_after` as `after`."
        ),
        parameters=[PreviewQuerySerializer],
        responses={
            200: PreviewSerializer,
            **error_responses({400: ["validation_error"], **_NOT_FOUND}),
        },
    )
    def get(self, request: Request, channel_id: int) -> Response:
        channel = _channel(channel_id)
        query = PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        rows = selectors.channel_preview(channel, limit=limit, after_id=after)
        # The cursor is the page's last listing id, when more listings follow it.
        bounds = list(
            ChannelListing.objects.filter(channel=channel, id__gt=after)
            .order_by("id")
            .values_list("id", flat=True)[limit - 1 : limit + 1]
        )
        next_after = bounds[0] if len(bounds) == 2 else None
        return Response(
            PreviewSerializer(
                {"channel_id": channel.pk, "rows": rows, "next_after": next_after}
            ).data
        )


class PushAttemptListView(_ChannelChildListView):
    model = PushAttempt
    serializer_class = PushAttemptSerializer
    filterset_class = PushAttemptFilter
    pagination_class = LedgerCursorPagination

    @extend_schema(
        summary="A channel's push attempts, newest first (filter by outcome)",
        description=(
            "One row per marketplace call (or dry-run batch): the listings and quantities "
            "sent, the outcome, HTTP status, latency and error. Cursor-paginated."
        ),
        responses={
            200: PushAttemptSerializer(many=True),
            **error_responses(_NOT_FOUND),
        },
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class ChannelPushView(APIView):
    required_scopes = {"POST": "admin"}

    @extend_schema(
        summary="Push a channel now (queued), or run a dry run (scope admin)",
        description=(
            "Queues a push of the channel's dirty listings and answers 202; `queued` is "
            "false when a push is queued already (the dirty listings ride on it). With "
            "`?dry_run=1` runs a dry run in the request and answers its report: desired "
            "quantities are computed and recorded as `dry_run` attempts; nothing is sent. "
            "503 `service_unavailable` (with `Retry-After`) when Redis, which queues the push "
            "and holds the channel's run lock, is down."
        ),
        request=None,
        parameters=[PushQuerySerializer],
        responses={
            202: PushQueuedSerializer,
            200: PushReportSerializer,
            **error_responses(
                {400: ["validation_error"], **_NOT_FOUND, 503: ["service_unavailable"]}
            ),
        },
    )
    def post(self, request: Request, channel_id: int) -> Response:
        channel = _channel(channel_id)
        query = PushQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if query.validated_data["dry_run"]:
            report = channel_push(channel_id=channel.pk, dry_run=True)
            return Response(PushReportSerializer(report.as_dict()).data)
        queued = push_enqueue([channel.pk])
        return Response(
            {"channel_id": channel.pk, "queued": channel.pk in queued},
            status=status.HTTP_202_ACCEPTED,
        )


class ChannelReconcileView(APIView):
    required_scopes = {"POST": "write"}

    @extend_schema(
        summary="Reconcile a channel's stock now (queued; scope write)",
        description=(
            "Queues a read-back of every listing's stock on the marketplace, compared with "
            "what was last pushed; a confirmed difference opens (or updates) a "
            "`stock_mismatch` conflict. Answers 202. A run already going for the channel "
            "makes this one end at once (nothing is read twice at the same time). 503 "
            "`service_unavailable` (with `Retry-After`) when the queue is down."
        ),
        request=None,
        responses={
            202: ReconcileQueuedSerializer,
            **error_responses({**_NOT_FOUND, 503: ["service_unavailable"]}),
        },
    )
    def post(self, request: Request, channel_id: int) -> Response:
        channel = _channel(channel_id)
        queued = reconcile_enqueue(channel_ids=[channel.pk], trigger="api")
        return Response(
            {"channel_id": channel.pk, "queued": channel.pk in queued},
            status=status.HTTP_202_ACCEPTED,
        )
