"""The OpenAPI schema says what the API returns: nullable fields, URL formats, error answers."""

import importlib
import inspect

import pytest
from django.core.exceptions import FieldDoesNotExist
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

SERIALIZER_MODULES = [
    "inventory.serializers",
    "channels_sync.serializers",
    "erp_mapping.serializers.agents",
    "erp_mapping.serializers.ingest",
    "erp_mapping.serializers.mappings",
    "erp_mapping.serializers.pull",
]


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _model_serializers():
    for module_name in SERIALIZER_MODULES:
        module = importlib.import_module(module_name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            model = getattr(getattr(cls, "Meta", None), "model", None)
            if cls.__module__ == module_name and issubclass(cls, serializers.Serializer) and model:
                yield cls, model


def _source_is_nullable(model, source: str) -> bool:
    """Whether a dotted source can read None (a null column or a null relation on the way)."""
    current = model
    for part in source.split("."):
        try:
            field = current._meta.get_field(part)
        except FieldDoesNotExist:
            field = next((f for f in current._meta.concrete_fields if f.attname == part), None)
        if field is None:
            return False  # an annotation or a property: declared by hand
        if getattr(field, "null", False):
            return True
        current = field.related_model
        if current is None:
            return False
    return False


def test_schema_fields_read_from_nullable_sources_are_nullable():
    # StockMovement.reservation was returned as null but documented as an integer.
    missing = [
        f"{cls.__name__}.{name} ({field.source})"
        for cls, model in _model_serializers()
        for name, field in cls().fields.items()
        if not field.write_only
        and field.source != "*"
        and not isinstance(field, serializers.SerializerMethodField)
        and _source_is_nullable(model, field.source)
        and not field.allow_null
    ]
    assert missing == []


def test_schema_stock_movement_reservation_is_nullable(schema):
    reservation = schema["components"]["schemas"]["StockMovement"]["properties"]["reservation"]
    assert reservation["nullable"] is True


def _url_properties(schema: dict) -> dict[str, dict]:
    return {
        f"{component}.{name}": prop
        for component, definition in schema["components"]["schemas"].items()
        for name, prop in definition.get("properties", {}).items()
        if name.endswith("_url")
    }


def test_schema_url_fields_are_uris(schema):
    properties = _url_properties(schema)
    assert {
        "Channel.base_url",
        "Channel.auth_base_url",
        "ChannelCreateRequest.base_url",
        "ErpAgent.agent_url",
        "AgentRegisterRequest.agent_url",
        "ErpConnection.base_url",
        "ErpConnectionWriteRequest.base_url",
    } <= set(properties)
    for name, prop in properties.items():
        formats = [prop.get("format")] + [choice.get("format") for choice in prop.get("anyOf", [])]
        assert "uri" in formats, name


def test_schema_every_operation_with_a_body_documents_the_body_errors(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if "requestBody" not in operation:
                continue
            responses = operation["responses"]
            assert "`payload_too_large`" in responses["413"]["description"], (method, path)
            assert "`parse_error`" in responses["400"]["description"], (method, path)
            error = responses["413"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}


def test_schema_every_authenticated_operation_documents_401_403_429(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if operation.get("security"):
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


@pytest.mark.parametrize("path", ["/api/v1/channels/", "/api/v1/erp/agents/"])
def test_schema_documents_the_idempotency_key_of_creations(schema, path):
    operation = schema["paths"][path]["post"]
    header = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert (header["in"], header.get("required", False)) == ("header", False)
    assert "`idempotency_key_reused`" in operation["responses"]["422"]["description"]
