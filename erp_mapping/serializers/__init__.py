"""Serializers of the ERP API, one module per area."""
