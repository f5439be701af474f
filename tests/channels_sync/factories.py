import factory

from channels_sync.models import AllocationRule, Channel, ChannelListing, ChannelType
from tests.inventory.factories import ProductFactory, default_vendor

# An address nothing listens on: a push that escapes a test fails at once (connection
# refused) instead of reaching a real marketplace. Tests that push use a sandbox's URL.
UNREACHABLE_URL = "http://127.0.0.1:9"

_TOKENS = {"access_token": "factory-access-token", "refresh_token": "factory-refresh-token"}


def credentials_for(channel_type: str) -> dict[str, str]:
    """Valid credentials of a channel type (a token held, no expiry: no refresh is tried)."""
    if channel_type == ChannelType.SHOPEE:
        return {
            "partner_id": "2001887",
            "partner_key": "factory-partner-key",
            "shop_id": "1",
        } | _TOKENS
    if channel_type == ChannelType.LAZADA:
        return {"app_key": "100001", "app_secret": "factory-app-secret"} | _TOKENS
    return {
        "app_key": "factory-app-key",
        "app_secret": "factory-app-secret",
        "shop_cipher": "factory-shop-cipher",
    } | _TOKENS


class ChannelFactory(factory.django.DjangoModelFactory):
    """A channel; `warehouses=[...]` sets the warehouses it sells from (none by default)."""

    class Meta:
        model = Channel
        skip_postgeneration_save = True

    vendor = factory.LazyFunction(default_vendor)
    name = factory.Sequence(lambda n: f"Channel {n}")
    type = ChannelType.SHOPEE
    base_url = UNREACHABLE_URL
    credentials = factory.LazyAttribute(lambda o: credentials_for(o.type))

    @factory.post_generation
    def warehouses(self, create: bool, extracted, **kwargs) -> None:
        if create and extracted:
            self.warehouses.set(extracted)


class ChannelListingFactory(factory.django.DjangoModelFactory):
    """A listing of a new product of the channel's vendor, with unique marketplace keys."""

    class Meta:
        model = ChannelListing

    channel = factory.SubFactory(ChannelFactory)
    product = factory.SubFactory(ProductFactory, vendor=factory.SelfAttribute("..channel.vendor"))
    external_item_id = factory.Sequence(lambda n: str(100000 + n))
    external_variant_id = factory.Sequence(lambda n: str(500000 + n))


class AllocationRuleFactory(factory.django.DjangoModelFactory):
    """The channel default rule (`scope=product` needs `product`, `scope=listing` a listing)."""

    class Meta:
        model = AllocationRule

    channel = factory.SubFactory(ChannelFactory)
    scope = AllocationRule.Scope.CHANNEL
    strategy = AllocationRule.Strategy.ALL
