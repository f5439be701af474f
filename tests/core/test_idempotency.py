import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import IdempotencyRecord
from core.services import idempotency_purge_expired
from core.tasks import purge_idempotency_keys
from inventory.models import StockLevel, StockMovement

pytestmark = pytest.mark.django_db

URL = "/api/v1/stock-mutations/"


def mutation(sku: str, quantity: str = "1") -> dict:
    return {"sku": sku, "warehouse": "MAIN", "type": "adjust", "quantity": quantity}


def test_same_key_and_body_replays_the_stored_response(api, stocked):
    product = stocked(5)

    first = api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert StockLevel.objects.get(product=product).on_hand == Decimal(6)
    assert StockMovement.objects.filter(kind="adjust").count() == 1


def test_same_key_with_another_body_is_422(api, stocked):
    product = stocked(5)
    api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    response = api.post(URL, mutation(product.sku, "2"), format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert StockLevel.objects.get(product=product).on_hand == Decimal(6)


def test_keys_are_scoped_per_api_key(make_client, stocked):
    product = stocked(5)
    one, two = make_client(), make_client()

    one.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="shared")
    response = two.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="shared")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert StockLevel.objects.get(product=product).on_hand == Decimal(7)


def test_key_left_in_progress_is_409(api, stocked):
    product = stocked(5)
    # A claim committed as in progress (an earlier release committed claims first).
    first = api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    IdempotencyRecord.objects.filter(key="k-3").update(
        status=IdempotencyRecord.Status.IN_PROGRESS, response_status=None
    )
    assert first.status_code == 201

    response = api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k-3")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_progress"


def test_a_claim_left_by_a_dead_request_is_taken_over(api, stocked, settings):
    settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS = 60
    product = stocked(5)
    api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k-4")
    IdempotencyRecord.objects.filter(key="k-4").update(
        status=IdempotencyRecord.Status.IN_PROGRESS,
        updated_at=timezone.now() - timedelta(minutes=5),
    )

    response = api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k-4")

    # The ledger's key still holds: the stock moved once, and the answer says it is a replay.
    assert response.status_code == 200
    assert response["Idempotent-Replayed"] == "true"
    assert StockLevel.objects.get(product=product).on_hand == Decimal(6)


def test_business_refusal_is_stored_and_replayed(api, stocked):
    product = stocked(1)
    body = mutation(product.sku, "-5")
    first = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-5")
    again = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-5")
    assert first.status_code == again.status_code == 409
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_invalid_input_gives_the_key_back(api, stocked):
    product = stocked(1)
    bad = api.post(URL, mutation(product.sku, "lots"), format="json", HTTP_IDEMPOTENCY_KEY="k-6")
    assert bad.status_code == 400
    assert not IdempotencyRecord.objects.filter(key="k-6").exists()

    fixed = api.post(URL, mutation(product.sku, "2"), format="json", HTTP_IDEMPOTENCY_KEY="k-6")
    assert fixed.status_code == 201


def test_overlong_key_is_400(api, stocked):
    product = stocked(1)
    response = api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_invalid"


def test_expired_records_are_purged_by_the_task(api, stocked):
    product = stocked(1)
    api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="old")
    api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="new")
    IdempotencyRecord.objects.filter(key="old").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert purge_idempotency_keys.delay().get() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    assert idempotency_purge_expired() == 0


def test_an_expired_key_executes_again_but_the_ledger_key_still_holds(api, stocked):
    product = stocked(1)
    api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k-7")
    IdempotencyRecord.objects.filter(key="k-7").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = api.post(URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="k-7")
    other = api.post(URL, mutation(product.sku, "9"), format="json", HTTP_IDEMPOTENCY_KEY="k-7")

    # The ledger recognises the operation: nothing applied again, and the answer says so.
    assert response.status_code == 200
    assert response["Idempotent-Replayed"] == "true"
    assert response.json()["movements"][0]["on_hand_delta"] == "1.000"
    assert StockLevel.objects.get(product=product).on_hand == Decimal(2)
    # Another quantity under that old key is refused, not silently skipped.
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_apply_once(make_client, stocked):
    product = stocked(5)
    client = make_client()
    barrier = threading.Barrier(8)
    responses = []
    lock = threading.Lock()

    def send():
        own = APIClient()  # one test client per thread, all with the same API key
        own.credentials(HTTP_X_API_KEY=client.raw_key)
        barrier.wait()
        try:
            response = own.post(
                URL, mutation(product.sku), format="json", HTTP_IDEMPOTENCY_KEY="race"
            )
            with lock:
                responses.append(response)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # The duplicates wait on the key's unique index until the first commits, then replay it.
    outcomes = sorted((r.status_code, r.get("Idempotent-Replayed", "")) for r in responses)
    assert outcomes == [(201, "")] + [(201, "true")] * 7, outcomes
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1
    assert StockLevel.objects.get(product=product).on_hand == Decimal(6)
    assert StockMovement.objects.filter(kind="adjust").count() == 1


def test_keys_containing_colons_never_collide_with_batch_rows(api, stocked):
    product = stocked(5)
    row = mutation(product.sku)
    batch = api.post(
        "/api/v1/stock-mutations/batch/",
        {"rows": [row, row]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="order-17",
    )
    single = api.post(
        URL, mutation(product.sku, "40"), format="json", HTTP_IDEMPOTENCY_KEY="order-17:1"
    )

    assert batch.status_code == 200
    assert single.status_code == 201
    assert "Idempotent-Replayed" not in single
    assert StockLevel.objects.get(product=product).on_hand == Decimal(47)


def test_a_reservation_repeated_after_the_http_window_replays(api, stocked):
    product = stocked(5)
    body = {"sku": product.sku, "quantity": "1"}
    first = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="r-9")
    IdempotencyRecord.objects.filter(key="r-9").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    again = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="r-9")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert StockLevel.objects.get(product=product).reserved == Decimal(1)
