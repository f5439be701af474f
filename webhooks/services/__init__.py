"""Webhook services: the intake (`intake`), processing and sweep (`events`), polling (`polling`)."""
