import io
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from channels_sync.models import Channel, ChannelListing, PushAttempt
from channels_sync.sandbox import ShopeeSandbox
from core.sandbox import SandboxServer
from tests.channels_sync.factories import ChannelFactory, ChannelListingFactory

KEYS = [{"item_id": "5001", "model_id": "0"}, {"item_id": "5002", "model_id": "0"}]


@pytest.fixture(scope="module")
def shopee_server() -> Iterator[tuple[ShopeeSandbox, SandboxServer]]:
    # One server for the module (stopping one waits out its poll interval); reset per test.
    app = ShopeeSandbox()
    with SandboxServer(app) as server:
        yield app, server


@pytest.fixture
def shopee(shopee_server) -> tuple[ShopeeSandbox, SandboxServer]:
    shopee_server[0].reset()
    return shopee_server


@pytest.fixture
def live_channel(warehouse, stocked, shopee) -> Channel:
    """A channel on the Shopee sandbox with two listings holding 4 and 6 in stock."""
    sandbox, server = shopee
    channel = ChannelFactory(
        base_url=server.url, credentials=sandbox.credentials(), warehouses=[warehouse]
    )
    for keys, quantity in zip(KEYS, (4, 6), strict=True):
        ChannelListingFactory(
            channel=channel,
            product=stocked(quantity),
            external_item_id=keys["item_id"],
            external_variant_id=keys["model_id"],
        )
    sandbox.seed_listings(KEYS, quantity=1)
    return channel


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("push_stock", *args, stdout=out)
    return out.getvalue()


def _count(output: str, name: str) -> int:
    line = next(line for line in output.splitlines() if line.split()[:1] == [name])
    return int(line.split()[-1])


@pytest.mark.django_db
def test_push_stock_pushes_dirty_listings_and_prints_the_counts(live_channel, shopee):
    sandbox, _ = shopee

    # when
    output = _run("--channel", str(live_channel.pk))

    # then
    assert (_count(output, "pushed"), _count(output, "unchanged"), _count(output, "failed")) == (
        2,
        0,
        0,
    )
    assert _count(output, "calls") == 2  # Shopee: one call per item
    assert [sandbox.quantity(keys) for keys in KEYS] == [4, 6]
    assert not ChannelListing.objects.filter(dirty=True).exists()

    # nothing is dirty any more: nothing is planned
    again = _run("--channel", str(live_channel.pk))
    assert (_count(again, "planned"), _count(again, "calls")) == (0, 0)

    # --all sends every listing, changed or not
    resync = _run("--channel", str(live_channel.pk), "--all")
    assert (_count(resync, "pushed"), _count(resync, "calls")) == (2, 2)


@pytest.mark.django_db
def test_push_stock_dry_run_sends_nothing(live_channel, shopee):
    sandbox, _ = shopee

    output = _run("--channel", str(live_channel.pk), "--dry-run")

    assert "(dry run)" in output
    assert (_count(output, "planned"), _count(output, "pushed"), _count(output, "calls")) == (
        2,
        0,
        0,
    )
    assert sandbox.updates == []
    assert [sandbox.quantity(keys) for keys in KEYS] == [1, 1]
    assert set(PushAttempt.objects.values_list("outcome", flat=True)) == {"dry_run"}


@pytest.mark.django_db
def test_push_stock_exits_1_when_the_marketplace_fails(live_channel, shopee):
    sandbox, _ = shopee
    sandbox.configure(error_ratio=1)
    out = io.StringIO()

    with pytest.raises(CommandError) as failure:
        call_command("push_stock", "--channel", str(live_channel.pk), stdout=out)

    assert failure.value.returncode == 1
    assert "failed" in str(failure.value)
    output = out.getvalue()
    assert (_count(output, "pushed"), _count(output, "failed")) == (0, 2)
    assert _count(output, "calls") == 2
    assert [sandbox.quantity(keys) for keys in KEYS] == [1, 1]
    assert set(ChannelListing.objects.values_list("push_failures", flat=True)) == {1}


@pytest.mark.django_db
def test_push_stock_exits_1_when_the_channel_needs_reauthorisation(live_channel, shopee):
    sandbox, _ = shopee
    sandbox.revoke()
    out = io.StringIO()

    with pytest.raises(CommandError) as failure:
        call_command("push_stock", "--channel", str(live_channel.pk), stdout=out)

    assert failure.value.returncode == 1
    assert "stopped        needs_reauth" in out.getvalue()
    assert Channel.objects.get(pk=live_channel.pk).needs_reauth is True


@pytest.mark.django_db
def test_push_stock_refuses_an_unknown_channel():
    with pytest.raises(CommandError, match="No channel with id 999999") as failure:
        call_command("push_stock", "--channel", "999999", stdout=io.StringIO())
    assert failure.value.returncode == 1
