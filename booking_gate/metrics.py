"""Prometheus metrics of the gate, on a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GateMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "carecall_gate_requests", "Gate API requests by route and status",
            ["route", "status"], registry=registry)
        self.latency = Histogram(
            "carecall_gate_request_seconds", "Gate API request latency", ["route"],
            registry=registry)
        self.bookings_created = Counter(
            "carecall_bookings_created", "Bookings created", registry=registry)
        self.bookings_cancelled = Counter(
            "carecall_bookings_cancelled", "Bookings cancelled", registry=registry)
        self.events_ingested = Counter(
            "carecall_attendance_events", "Attendance events stored (duplicates excluded)",
            registry=registry)
        self.finalized = Counter(
            "carecall_attendance_finalized", "Attendance records finalised by the background task",
            registry=registry)
        # Webhook events in the outbox, shared by every gate on the database: read from
        # it at each scrape (webhook_sender.refresh_metrics).
        self.webhook_events = Gauge(
            "carecall_webhook_events", "Webhook events by delivery state", ["state"],
            registry=registry)
        self.webhook_oldest_pending = Gauge(
            "carecall_webhook_oldest_pending_seconds",
            "Age of the oldest webhook event not delivered yet (0: none)", registry=registry)
