"""The gate's aiohttp application state, in one place."""

from __future__ import annotations

from aiohttp import web

from booking_gate.config import GateConfig
from booking_gate.credit_requests import CreditRequests
from booking_gate.incall import InCall
from booking_gate.lobby import Lobby
from booking_gate.mailer import Mailer
from booking_gate.metrics import GateMetrics
from booking_gate.retention import RetentionPurge
from booking_gate.service import GateService
from booking_gate.webhook_sender import WebhookSender

CONFIG = web.AppKey("gate_config", GateConfig)
SERVICE = web.AppKey("gate_service", GateService)
METRICS = web.AppKey("gate_metrics", GateMetrics)
INCALL = web.AppKey("gate_incall", InCall)
LOBBY = web.AppKey("gate_lobby", Lobby)
CREDIT_REQUESTS = web.AppKey("gate_credit_requests", CreditRequests)
MAILER = web.AppKey("gate_mailer", Mailer)
RETENTION = web.AppKey("gate_retention", RetentionPurge)
CALENDAR_SECRET = web.AppKey("gate_calendar_secret", bytes)
# Only when a webhook receiver is configured.
WEBHOOKS = web.AppKey("gate_webhooks", WebhookSender)
