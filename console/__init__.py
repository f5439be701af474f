"""The operations console: the admin site's dashboard, reports and charts.

The one app that reads every other app (it sits above webhooks, orders, channels_sync,
erp_mapping, inventory and core); nothing depends on it but the URL configuration.
"""
