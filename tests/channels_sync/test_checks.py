from django.test import override_settings

from channels_sync.checks import push_time_limits_check, shopify_api_version_check


def test_push_time_limits_check_passes_the_defaults():
    assert push_time_limits_check(None) == []


@override_settings(CHANNEL_PUSH_SOFT_TIME_LIMIT_SECONDS=700, CHANNEL_PUSH_TIME_LIMIT_SECONDS=660)
def test_push_time_limits_check_warns_when_the_soft_limit_is_not_below_the_hard_one():
    assert [problem.id for problem in push_time_limits_check(None)] == ["channels_sync.W001"]


@override_settings(CELERY_BROKER_TRANSPORT_OPTIONS={"visibility_timeout": 600})
def test_push_time_limits_check_warns_when_the_broker_would_redeliver_a_running_push():
    assert [problem.id for problem in push_time_limits_check(None)] == ["channels_sync.W002"]


def test_shopify_api_version_check_passes_the_default():
    assert shopify_api_version_check(None) == []


@override_settings(SHOPIFY_API_VERSION="2025-10")
def test_shopify_api_version_check_refuses_a_version_without_compare_and_set():
    (problem,) = shopify_api_version_check(None)
    assert problem.id == "channels_sync.E001"
    assert "2025-10 is too old" in problem.msg
