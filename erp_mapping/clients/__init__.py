"""Clients of outside systems the ERP app talks to."""
