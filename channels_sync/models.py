"""Sales channels, their listings, allocation rules and the record of every push.

A channel is one shop on one marketplace. A listing ties one of our products to the
marketplace's keys for it; the push pipeline keeps the marketplace's quantity equal to the
listing's desired quantity (computed from the allocation rules) and records every call as a
`PushAttempt`.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.fields import EncryptedJSONField, EncryptedTextField
from core.models import BaseModel
from inventory.models import Product, Vendor, Warehouse


class ChannelType(models.TextChoices):
    SHOPEE = "shopee", "Shopee"
    LAZADA = "lazada", "Lazada"
    TIKTOK = "tiktok", "TikTok Shop"
    TOKOPEDIA = "tokopedia", "Tokopedia & Shop"
    SHOPIFY = "shopify", "Shopify"
    AMAZON = "amazon", "Amazon Seller Central"
    EBAY = "ebay", "eBay"
    SQUARE = "square", "Square"
    REST = "rest", "Custom REST shop"


class ConflictStrategy(models.TextChoices):
    """How a conflict between our figure and a channel's is settled."""

    USE_OURS = "use_ours", "use ours (push our quantity)"
    USE_THEIRS = "use_theirs", "use theirs (move our stock to theirs)"
    MINIMUM = "minimum", "minimum of the two"
    SET_VALUE = "set_value", "set a value"
    LAST_WRITE_WINS = "last_write_wins", "last write wins"
    SOURCE_PRIORITY = "source_priority", "source priority"
    IGNORE = "ignore", "ignore"


class ConflictPolicy(models.TextChoices):
    """What a channel does with its conflicts as they open: a strategy, or a person."""

    USE_OURS = "use_ours", "use ours (push our quantity)"
    USE_THEIRS = "use_theirs", "use theirs"
    MINIMUM = "minimum", "minimum of the two"
    LAST_WRITE_WINS = "last_write_wins", "last write wins"
    SOURCE_PRIORITY = "source_priority", "source priority"
    MANUAL = "manual", "manual review"


# The policy's help in the console and the API (the field's own help_text is the short one).
CONFLICT_POLICY_HELP = (
    "How the channel's stock conflicts are resolved as they open: a strategy, or `manual` "
    "(left for a person). Default `use_ours`. `use_theirs`, and `minimum` when the channel "
    "shows less, move our stock; that is refused (the conflict waits for a person) when the "
    "vendor's stock comes from its ERP, when the listing's allocation is not plain `all`, "
    "or when the listing changed since the conflict was seen. `last_write_wins` compares "
    "when each figure was written, and what the channel shows is always read after our last "
    "push: as a policy it always takes theirs, like `use_theirs`."
)


class Channel(BaseModel):
    """One shop on one marketplace, fed by the stock of some of the vendor's warehouses."""

    name = models.CharField(max_length=200)
    type = models.CharField(max_length=20, choices=ChannelType.choices)
    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="channels")
    base_url = models.CharField(
        max_length=500, help_text="The API base as the marketplace documents it."
    )
    auth_base_url = models.CharField(
        max_length=500,
        blank=True,
        help_text="Where tokens are refreshed, when not the API base (blank: the default).",
    )
    credentials = EncryptedJSONField(default=dict, blank=True)
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="The type's settings that are not secrets (a custom REST shop's endpoints, "
        "templates and answer paths; each type checks its own).",
    )
    webhook_secret = EncryptedTextField(blank=True, default="")
    warehouses = models.ManyToManyField(Warehouse, related_name="channels", blank=True)
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower goes first when channels share stock by priority."
    )
    active = models.BooleanField(default=True)
    push_enabled = models.BooleanField(default=True)
    dry_run = models.BooleanField(
        default=False, help_text="Compute and record desired quantities; never send them."
    )
    rate_limit_per_second = models.FloatField(null=True, blank=True)
    rate_limit_burst = models.PositiveIntegerField(null=True, blank=True)
    batch_size = models.PositiveIntegerField(null=True, blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    needs_reauth = models.BooleanField(default=False)
    reauth_reason = models.CharField(max_length=500, blank=True)
    last_push_at = models.DateTimeField(null=True, blank=True)
    webhook_last_received_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last verified webhook arrived."
    )
    webhook_signature_failures = models.PositiveIntegerField(
        default=0, help_text="Webhooks refused for a bad or missing signature."
    )
    webhook_signature_failed_at = models.DateTimeField(null=True, blank=True)
    orders_cursor = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Orders updated before this have been polled (the next poll overlaps it).",
    )
    orders_polled_at = models.DateTimeField(null=True, blank=True)
    conflict_policy = models.CharField(
        max_length=20,
        choices=ConflictPolicy.choices,
        default=ConflictPolicy.USE_OURS,
        help_text="How this channel's stock conflicts are resolved as they open.",
    )
    reconciled_at = models.DateTimeField(
        null=True, blank=True, help_text="When its stock was last read back and compared."
    )

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["vendor", "name"], name="uniq_channel_vendor_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_type_display()})"


class ChannelListing(BaseModel):
    """A product as listed on a channel, with the marketplace's keys for it.

    `dirty` is set (and `dirty_version` raised) in the same transaction as any stock
    movement of the product; a push clears it only if the version is still the one it
    planned with, so a change made while a push is in flight is pushed again.
    """

    class Status(models.TextChoices):
        OK = "ok", "ok"
        ERROR = "error", "error"
        EXCLUDED = "excluded", "excluded"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="listings")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="listings")
    external_item_id = models.CharField(max_length=100, help_text="Item or product id.")
    external_variant_id = models.CharField(
        max_length=100, blank=True, help_text="Model, variation or SKU id."
    )
    external_sku = models.CharField(max_length=200, blank=True, help_text="Seller SKU.")
    external_location_id = models.CharField(
        max_length=100, blank=True, help_text="Marketplace warehouse or location id."
    )
    desired_quantity = models.IntegerField(null=True, blank=True)
    desired_reason = models.CharField(max_length=200, blank=True)
    last_pushed_quantity = models.IntegerField(null=True, blank=True)
    last_pushed_at = models.DateTimeField(null=True, blank=True)
    last_observed_quantity = models.IntegerField(null=True, blank=True)
    last_observed_at = models.DateTimeField(null=True, blank=True)
    channel_quantity = models.IntegerField(
        null=True,
        blank=True,
        help_text="What the channel shows as far as we know: set by a confirmed push and by "
        "every observation (read-back, stock webhook, stale refusal), never cleared before a "
        "send; the push sends it as the expected quantity to a channel with compare-and-set.",
    )
    dirty = models.BooleanField(default=True)
    dirty_version = models.PositiveBigIntegerField(default=0)
    dirty_since = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK)
    last_error = models.CharField(max_length=1000, blank=True)
    push_failures = models.PositiveSmallIntegerField(
        default=0, help_text="Retryable failures in a row; the eighth dead-letters it."
    )
    next_push_at = models.DateTimeField(
        null=True, blank=True, help_text="Backing off after a failure until then."
    )
    push_stale_streak = models.PositiveSmallIntegerField(
        default=0,
        help_text="Pushes in a row the channel refused as stale (its compare-and-set saw "
        "another quantity); from the second one the listing backs off.",
    )

    class Meta:
        ordering = ["channel_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "product"], name="uniq_listing_channel_product"
            ),
            models.UniqueConstraint(
                fields=[
                    "channel",
                    "external_item_id",
                    "external_variant_id",
                    "external_location_id",
                ],
                name="uniq_listing_channel_keys",
            ),
        ]
        indexes = [
            models.Index(
                fields=["channel", "id"], condition=Q(dirty=True), name="listing_dirty_idx"
            ),
            models.Index(fields=["product"], name="listing_product_idx"),
            models.Index(fields=["channel", "status"], name="listing_status_idx"),
        ]

    def __str__(self) -> str:
        variant = f"/{self.external_variant_id}" if self.external_variant_id else ""
        return f"{self.external_item_id}{variant} on {self.channel_id}"


class AllocationRule(BaseModel):
    """How much of the pool a channel may sell: for the channel, a product, or one listing.

    The most specific rule applies (listing, then product, then the channel default).
    """

    class Scope(models.TextChoices):
        CHANNEL = "channel", "channel default"
        PRODUCT = "product", "product"
        LISTING = "listing", "listing"

    class Strategy(models.TextChoices):
        ALL = "all", "all of the pool"
        PERCENTAGE = "percentage", "a percentage of the pool"
        FIXED = "fixed", "a fixed quantity"
        PRIORITY = "priority", "channels in priority order, each up to a cap"
        EQUAL_SPLIT = "equal_split", "equal split between channels"
        DEMAND_WEIGHTED = "demand_weighted", "split by the last 30 days' sales"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="rules")
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.CHANNEL)
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, null=True, blank=True, related_name="allocation_rules"
    )
    listing = models.ForeignKey(
        ChannelListing,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="allocation_rules",
    )
    strategy = models.CharField(max_length=20, choices=Strategy.choices, default=Strategy.ALL)
    parameter = models.DecimalField(
        max_digits=14,
        decimal_places=3,
        null=True,
        blank=True,
        help_text="percentage: the percent; fixed: the quantity; priority: the cap.",
    )
    buffer_units = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    buffer_percent = models.DecimalField(max_digits=5, decimal_places=2, default=0)
    max_shown = models.PositiveIntegerField(null=True, blank=True)
    zero_below = models.PositiveIntegerField(
        null=True, blank=True, help_text="Show 0 when the allocation is below this."
    )

    class Meta:
        ordering = ["channel_id", "scope", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel"],
                condition=Q(scope="channel"),
                name="uniq_rule_channel_default",
            ),
            models.UniqueConstraint(
                fields=["channel", "product"],
                condition=Q(scope="product"),
                name="uniq_rule_channel_product",
            ),
            models.UniqueConstraint(
                fields=["listing"], condition=Q(scope="listing"), name="uniq_rule_listing"
            ),
            models.CheckConstraint(
                condition=(
                    Q(scope="channel", product__isnull=True, listing__isnull=True)
                    | Q(scope="product", product__isnull=False, listing__isnull=True)
                    | Q(scope="listing", listing__isnull=False, product__isnull=True)
                ),
                name="rule_scope_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} rule {self.strategy} on {self.channel_id}"


class PushAttempt(models.Model):
    """One call to a marketplace's stock update (or a dry run): what was sent, what came back."""

    class Outcome(models.TextChoices):
        OK = "ok", "ok"
        PARTIAL = "partial", "partial (some items failed)"
        THROTTLED = "throttled", "throttled"
        RETRYABLE = "retryable", "retryable error"
        PERMANENT = "permanent", "permanent error"
        AUTH = "auth", "authorisation failed"
        DRY_RUN = "dry_run", "dry run (not sent)"
        # Written, committed, before the call goes out; the answer replaces it.
        SENDING = "sending", "sending (no answer recorded yet)"
        # The run ended (its worker died, its time limit hit) before this call's answer was
        # recorded: it may or may not have been sent and applied; its listings stayed dirty.
        INTERRUPTED = "interrupted", "interrupted (no answer recorded)"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="attempts")
    items = models.JSONField(
        default=list, help_text='[{"listing": id, "quantity": n, "ok": bool, "error": ...}]'
    )
    item_count = models.PositiveIntegerField(default=0)
    idempotency_key = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=1000, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["channel", "-id"], name="push_attempt_channel_idx"),
            models.Index(fields=["idempotency_key"], name="push_attempt_key_idx"),
            models.Index(fields=["created_at"], name="push_attempt_created_idx"),
            # The next run of a channel finds the calls a dead run left unanswered.
            models.Index(
                fields=["channel"],
                condition=Q(outcome="sending"),
                name="push_attempt_sending_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"push to {self.channel_id}: {self.outcome} ({self.item_count} items)"


class Conflict(BaseModel):
    """A disagreement between our figure and a channel's that needs settling.

    At most one open conflict per (kind, listing), and per (kind, reference) for conflicts
    about no listing (a duplicate order), by constraint: a mismatch seen again updates the
    open conflict. Every change writes a `ConflictEvent` in the same transaction.
    """

    class Kind(models.TextChoices):
        STOCK_MISMATCH = "stock_mismatch", "stock mismatch"
        OVERSELL = "oversell", "oversell"
        DUPLICATE_ORDER = "duplicate_order", "duplicate order"

    class Status(models.TextChoices):
        OPEN = "open", "open"
        RESOLVED = "resolved", "resolved"
        AUTO_RESOLVED = "auto_resolved", "auto-resolved"
        IGNORED = "ignored", "ignored"

    class Source(models.TextChoices):
        RECONCILIATION = "reconciliation", "reconciliation (stock read back)"
        WEBHOOK = "webhook", "webhook stock report"
        ORDER = "order", "order"
        PUSH = "push", "push"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="conflicts")
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, null=True, blank=True, related_name="conflicts"
    )
    listing = models.ForeignKey(
        ChannelListing, on_delete=models.SET_NULL, null=True, blank=True, related_name="conflicts"
    )
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, null=True, blank=True, related_name="conflicts"
    )
    reference = models.CharField(
        max_length=200, blank=True, help_text="What it is about besides a listing (an order id)."
    )
    ours = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    theirs = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    ours_at = models.DateTimeField(
        null=True, blank=True, help_text="When our figure last changed (last write wins)."
    )
    theirs_at = models.DateTimeField(
        null=True, blank=True, help_text="When the channel's figure was reported."
    )
    detected_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=20, choices=Source.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    strategy = models.CharField(max_length=20, choices=ConflictStrategy.choices, blank=True)
    resolved_value = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=1000, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "listing"],
                condition=Q(status="open", listing__isnull=False),
                name="uniq_open_conflict_listing",
            ),
            models.UniqueConstraint(
                fields=["kind", "vendor", "reference"],
                condition=Q(status="open", listing__isnull=True),
                name="uniq_open_conflict_reference",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "kind"], name="conflict_status_idx"),
            models.Index(fields=["channel", "status"], name="conflict_channel_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def difference(self):
        if self.ours is None or self.theirs is None:
            return None
        return self.theirs - self.ours


class ConflictEvent(models.Model):
    """One line of a conflict's history (append-only): opened, seen again, resolved."""

    class Action(models.TextChoices):
        OPENED = "opened", "opened"
        UPDATED = "updated", "seen again"
        RESOLVED = "resolved", "resolved"
        AUTO_RESOLVED = "auto_resolved", "auto-resolved"
        IGNORED = "ignored", "ignored"
        FAILED = "failed", "resolution failed"

    conflict = models.ForeignKey(Conflict, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=20, choices=Action.choices)
    strategy = models.CharField(max_length=20, blank=True)
    ours = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    theirs = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    value = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    actor = models.CharField(max_length=150)
    note = models.CharField(max_length=1000, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.action} conflict {self.conflict_id}"
