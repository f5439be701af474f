"""The ERP REST API, one module per area."""
