"""The ERP part of the staff console: one module per area."""
