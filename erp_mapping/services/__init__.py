"""ERP writes, one module per area: `from erp_mapping.services.pull import erp_pull_run`."""
