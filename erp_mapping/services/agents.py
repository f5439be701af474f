"""ERP agent writes: registration and token rotation, heartbeats, the health check."""

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.services import alert_send
from erp_mapping.auth import agent_token_generate
from erp_mapping.clients.breaker import vendor_breaker
from erp_mapping.models import ErpAgent, ErpSyncJob
from inventory.models import Vendor

logger = structlog.get_logger(__name__)

Status = ErpAgent.Status


@dataclass(frozen=True)
class RegisteredAgent:
    """An agent, its new token and its new outbound secret: returned here and nowhere else.

    The agent authenticates to SyncStore with the token; it checks SyncStore's calls with
    the outbound secret (`X-SyncStore-Signature`).
    """

    agent: ErpAgent
    token: str = field(repr=False)
    created: bool
    outbound_secret: str = field(repr=False, default="")


def outbound_secret_generate() -> str:
    """A new outbound secret (256 random bits), with a prefix that says what it is."""
    return f"sso_{secrets.token_urlsafe(32)}"


def _token_set(agent: ErpAgent) -> str:
    token, prefix, token_hash = agent_token_generate()
    agent.token_prefix, agent.token_hash = prefix, token_hash
    return token


def agent_register(
    *, vendor: Vendor, agent_url: str, erp_type: str, registered_by: str = ""
) -> RegisteredAgent:
    """Register the vendor's agent, or re-register it: either way a new token is issued.

    One agent per vendor: re-registering keeps the row (status and heartbeat included),
    updates its URL and ERP type, and rotates the token and the outbound secret, so the old
    token stops working as soon as this commits and calls are signed with the new secret.
    Two concurrent first registrations are settled by the unique vendor: the loser
    re-registers the row the winner created. After the commit the vendor's circuit breaker
    is closed (a new or moved agent starts afresh); its waiting and failed order jobs are
    made due now (their wait reasons forgotten), so they go out with the next sweep rather
    than after their backoff.
    """
    for _ in range(2):
        try:
            with transaction.atomic():
                agent = ErpAgent.objects.select_for_update().filter(vendor=vendor).first()
                created = agent is None
                if created:
                    agent = ErpAgent(vendor=vendor)
                agent.agent_url, agent.erp_type = agent_url, erp_type
                agent.registered_by = registered_by[:150]
                token = _token_set(agent)
                secret = outbound_secret_generate()
                agent.outbound_secret = secret
                agent.save()
                ErpSyncJob.objects.filter(
                    vendor=vendor, status__in=[ErpSyncJob.Status.PENDING, ErpSyncJob.Status.FAILED]
                ).update(next_attempt_at=timezone.now(), wait_reason="", updated_at=timezone.now())
                transaction.on_commit(lambda: vendor_breaker(vendor.pk).reset(), robust=True)
        except IntegrityError:
            continue  # another registration created the row meanwhile: rotate that one
        logger.info(
            "erp_agent.registered",
            vendor_id=str(vendor.pk),
            erp_type=erp_type,
            token_prefix=agent.token_prefix,
            rotated=not created,
            registered_by=registered_by,
        )
        return RegisteredAgent(agent=agent, token=token, created=created, outbound_secret=secret)
    raise RuntimeError(f"could not register the agent of vendor {vendor.pk}")


def agent_token_rotate(*, agent: ErpAgent, actor: str) -> str:
    """Issue the agent a new token and return it; the old one stops working at once."""
    token = _token_set(agent)
    agent.save(update_fields=["token_prefix", "token_hash", "updated_at"])
    logger.info(
        "erp_agent.token_rotated",
        vendor_id=str(agent.vendor_id),
        token_prefix=agent.token_prefix,
        actor=actor,
    )
    return token


def agent_heartbeat(
    *, agent: ErpAgent, version: str | None = None, now: datetime | None = None
) -> ErpAgent:
    """Record that the agent is alive: it is online as of `now`.

    Each path is a conditional UPDATE, so of concurrent heartbeats exactly one sees the
    agent come back from offline; that one logs it and sends the "agent back online" alert
    (after commit). A new agent's first heartbeat is no recovery: no alert. An ingest batch
    counts as a heartbeat too. `version`, when given, replaces the recorded agent version.
    """
    now = now or timezone.now()
    values = {"status": Status.ONLINE, "last_heartbeat_at": now, "updated_at": now}
    if version:
        values["agent_version"] = version[:50]
    rows = ErpAgent.objects.filter(pk=agent.pk)
    if not rows.exclude(status=Status.OFFLINE).update(**values):
        offline = rows.filter(status=Status.OFFLINE)
        if offline.filter(last_heartbeat_at__isnull=False).update(**values):
            _agent_recovered(agent, now)
        elif offline.update(**values):
            logger.info("erp_agent.first_heartbeat", vendor_id=str(agent.vendor_id))
    for name, value in values.items():
        setattr(agent, name, value)
    return agent


def _agent_recovered(agent: ErpAgent, now: datetime) -> None:
    logger.info("erp_agent.online", vendor_id=str(agent.vendor_id), erp_type=agent.erp_type)
    alert_send(
        title="ERP agent back online",
        text=f"The {agent.erp_type} agent of {agent.vendor.name} is sending heartbeats again.",
        # One alert per recovery (the status change already guarantees it); a key per agent
        # alone would hide the next recovery within the suppression window.
        key=f"erp_agent_online:{agent.pk}:{now.isoformat()}",
        severity="info",
        fields={"Vendor": agent.vendor.name, "ERP": agent.erp_type, "Since": now.isoformat()},
    )


@dataclass(frozen=True)
class AgentHealth:
    """What a health check changed: the agents it marked degraded and offline."""

    degraded: list[ErpAgent]
    offline: list[ErpAgent]


def _silent_since(moment: datetime) -> Q:
    return Q(last_heartbeat_at__lte=moment) | Q(last_heartbeat_at__isnull=True)


def agents_check_health(*, now: datetime | None = None) -> AgentHealth:
    """Mark silent agents degraded, then offline; alert once for each agent gone offline.

    An online agent silent for `ERP_AGENT_DEGRADED_AFTER_SECONDS` (2 minutes) becomes
    degraded; an online or degraded agent silent for `ERP_AGENT_OFFLINE_AFTER_SECONDS`
    (10 minutes) becomes offline, with an alert per agent (after commit; keyed per agent,
    so a repeat within the suppression window is not sent twice). The agents are locked
    while they change, so a heartbeat arriving meanwhile waits and then wins. Safe to run
    twice: an agent already degraded or offline is not changed again.
    """
    now = now or timezone.now()
    offline_before = now - timedelta(seconds=settings.ERP_AGENT_OFFLINE_AFTER_SECONDS)
    degraded_before = now - timedelta(seconds=settings.ERP_AGENT_DEGRADED_AFTER_SECONDS)
    with transaction.atomic():
        offline = list(
            ErpAgent.objects.select_for_update(of=("self",))
            .select_related("vendor")
            .filter(_silent_since(offline_before), status__in=[Status.ONLINE, Status.DEGRADED])
            .order_by("pk")
        )
        degraded = list(
            ErpAgent.objects.select_for_update(of=("self",))
            .select_related("vendor")
            .filter(_silent_since(degraded_before), status=Status.ONLINE)
            .exclude(pk__in=[agent.pk for agent in offline])
            .order_by("pk")
        )
        for agents, status in ((offline, Status.OFFLINE), (degraded, Status.DEGRADED)):
            if agents:
                ErpAgent.objects.filter(pk__in=[a.pk for a in agents]).update(
                    status=status, updated_at=now
                )
            for agent in agents:
                agent.status = status
        for agent in degraded:
            logger.warning(
                "erp_agent.degraded",
                vendor_id=str(agent.vendor_id),
                last_heartbeat_at=agent.last_heartbeat_at,
            )
        for agent in offline:
            _agent_offline(agent, now)
    logger.info("erp_agents.health_checked", degraded=len(degraded), offline=len(offline))
    return AgentHealth(degraded=degraded, offline=offline)


def _agent_offline(agent: ErpAgent, now: datetime) -> None:
    last = agent.last_heartbeat_at
    silent = f"for {int((now - last).total_seconds() // 60)} minutes" if last else "ever"
    logger.warning("erp_agent.offline", vendor_id=str(agent.vendor_id), last_heartbeat_at=last)
    alert_send(
        title="ERP agent offline",
        text=f"The {agent.erp_type} agent of {agent.vendor.name} has sent no heartbeat "
        f"{silent}; its ERP data is not reaching SyncStore.",
        # One alert per outage: the outage is named by the last heartbeat before it.
        key=f"erp_agent_offline:{agent.pk}:{last.isoformat() if last else 'never'}",
        severity="critical",
        fields={
            "Vendor": agent.vendor.name,
            "ERP": agent.erp_type,
            "Agent": agent.agent_url,
            "Last heartbeat": last.isoformat() if last else "never",
        },
    )
