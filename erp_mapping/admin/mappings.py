"""The ERP code mapping console: filter by vendor and type, activate / deactivate, edit.

Every change goes through the mapping services, which clear the resolver cache on commit
(in this process; other processes follow within the cache's 5-minute TTL). The vendor, type
and ERP code of a mapping are fixed once it exists; mappings are deactivated, not deleted.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import actor_of
from core.field_errors import service_errors
from erp_mapping.models import ErpCodeMapping
from erp_mapping.services.mappings import (
    mapping_check,
    mapping_create,
    mapping_update,
    mappings_set_active,
)

_IDENTITY_FIELDS = ["vendor", "mapping_type", "erp_code"]


class ErpCodeMappingForm(forms.ModelForm):
    class Meta:
        model = ErpCodeMapping
        fields = [*_IDENTITY_FIELDS, "resto_code", "resto_label", "is_active"]

    def clean(self) -> dict:
        data = super().clean()
        if self.instance.pk is None and data.get("mapping_type"):
            with service_errors(form=self):
                mapping_check(
                    mapping_type=data["mapping_type"], erp_code=data.get("erp_code") or ""
                )
        return data


@admin.register(ErpCodeMapping)
class ErpCodeMappingAdmin(admin.ModelAdmin):
    form = ErpCodeMappingForm
    list_display = [
        "erp_code_display",
        "mapping_type",
        "resto_code",
        "resto_label",
        "vendor",
        "is_active",
        "updated_at",
    ]
    list_filter = ["vendor", "mapping_type", "is_active"]
    search_fields = ["erp_code", "resto_code", "resto_label"]
    list_select_related = ["vendor"]
    actions = ["activate_selected", "deactivate_selected"]

    @admin.display(description="ERP code", ordering="erp_code")
    def erp_code_display(self, obj: ErpCodeMapping) -> str:
        return obj.erp_code or "(fallback)"

    def get_readonly_fields(self, request: HttpRequest, obj: ErpCodeMapping | None = None):
        readonly = ["created_at", "updated_at"]
        return [*_IDENTITY_FIELDS, *readonly] if obj is not None else readonly

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # deactivate instead: codes that resolved before keep their history

    def save_model(
        self, request: HttpRequest, obj: ErpCodeMapping, form: forms.Form, change: bool
    ) -> None:
        data = form.cleaned_data
        if change:
            mapping_update(
                mapping=obj,
                resto_code=data["resto_code"],
                resto_label=data["resto_label"],
                is_active=data["is_active"],
                actor=actor_of(request),
            )
            return
        created = mapping_create(
            vendor=data["vendor"],
            mapping_type=data["mapping_type"],
            erp_code=data["erp_code"],
            resto_code=data["resto_code"],
            resto_label=data["resto_label"],
            is_active=data["is_active"],
            actor=actor_of(request),
        )
        obj.pk = created.pk

    @admin.action(description="Activate selected mappings", permissions=["change"])
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[ErpCodeMapping]) -> None:
        self._set_active(request, queryset, active=True)

    @admin.action(description="Deactivate selected mappings", permissions=["change"])
    def deactivate_selected(self, request: HttpRequest, queryset: QuerySet[ErpCodeMapping]) -> None:
        self._set_active(request, queryset, active=False)

    def _set_active(
        self, request: HttpRequest, queryset: QuerySet[ErpCodeMapping], *, active: bool
    ) -> None:
        changed = mappings_set_active(
            ids=list(queryset.values_list("pk", flat=True)), active=active, actor=actor_of(request)
        )
        verb = "Activated" if active else "Deactivated"
        self.message_user(request, f"{verb} {changed} mapping(s).", messages.SUCCESS)
