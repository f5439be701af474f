"""Serializer fields shared by the API's apps."""

from rest_framework import serializers

from core.validators import http_url_validate

URL_MAX_LENGTH = 500


class HttpUrlField(serializers.CharField):
    """An http(s) URL with a host (single-label on-premise hosts too), documented as a URI.

    Not DRF's `URLField`: its validator refuses `http://sage01:8080`. The schema says
    `format: uri` (see `core.schema.HttpUrlFieldExtension`).
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_length", URL_MAX_LENGTH)
        super().__init__(**kwargs)
        self.validators.append(http_url_validate)
