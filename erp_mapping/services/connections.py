"""ERP connections: where the nightly pull fetches each vendor's stock counts."""

import structlog
from django.db import transaction

from core.errors import DomainError
from erp_mapping.models import ErpConnection
from inventory.models import Vendor

logger = structlog.get_logger(__name__)


@transaction.atomic
def erp_connection_set(
    *,
    vendor: Vendor,
    base_url: str,
    token: str | None,
    enabled: bool = True,
    actor: str,
) -> tuple[ErpConnection, bool]:
    """Create or replace the vendor's ERP connection; return it and whether it is new.

    The token is stored encrypted; `None` keeps the stored one (a new connection needs one).
    """
    connection = ErpConnection.objects.select_for_update().filter(vendor=vendor).first()
    created = connection is None
    if created and not token:
        raise DomainError("A new ERP connection needs a token.", code="token_required")
    if created:
        connection = ErpConnection(vendor=vendor)
    connection.base_url = base_url.rstrip("/")
    connection.enabled = enabled
    if token:
        connection.token = token
    connection.save()
    logger.info(
        "erp_connection.saved",
        vendor_id=str(vendor.pk),
        created=created,
        enabled=enabled,
        token_changed=bool(token),
        actor=actor,
    )
    return connection, created
