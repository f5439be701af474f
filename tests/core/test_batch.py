import pytest

from core.batch import batch_answer, batch_rows, batch_size_check, row_result
from core.errors import DomainError


def test_batch_rows_refuses_an_oversized_list_with_max_and_received():
    assert batch_rows({"rows": [1, 2]}, limit=2) == [1, 2]

    with pytest.raises(DomainError) as refused:
        batch_rows({"rows": [1, 2, 3]}, limit=2)

    assert (refused.value.code, refused.value.status_code) == ("batch_too_large", 400)
    assert refused.value.details == {"max": 2, "received": 3}


@pytest.mark.parametrize("body", [[1], {"rows": "x"}, {}, None, {"mappings": []}])
def test_batch_rows_refuses_a_body_without_its_list(body):
    with pytest.raises(DomainError) as refused:
        batch_rows(body, limit=10)

    assert refused.value.code == "invalid_body"


def test_batch_size_check_leaves_other_shapes_to_the_serializer():
    batch_size_check("not a list", limit=1)
    batch_size_check(None, limit=1)
    with pytest.raises(DomainError):
        batch_size_check([1, 2], limit=1)


def test_batch_answer_has_one_row_shape_and_counts_every_status():
    results = [
        row_result(0, "created", sku="A"),
        row_result(1, "invalid", code="unknown_sku", message="no product", field="sku"),
    ]

    answer = batch_answer(results, ("created", "unchanged", "invalid"), atomic=False)

    assert answer == {
        "atomic": False,
        "counts": {"created": 1, "unchanged": 0, "invalid": 1},
        "results": [
            {"index": 0, "status": "created", "code": "", "message": "", "field": "", "sku": "A"},
            {
                "index": 1,
                "status": "invalid",
                "code": "unknown_sku",
                "message": "no product",
                "field": "sku",
            },
        ],
    }
