from django.apps import AppConfig


class ErpMappingConfig(AppConfig):
    name = "erp_mapping"
    verbose_name = "ERP"
