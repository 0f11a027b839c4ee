"""Prometheus metrics of signalling."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class SignallingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.rooms = Gauge("carecall_rooms", "Rooms with someone in them", registry=registry)
        self.connections = Gauge("carecall_connections", "Open signalling connections",
                                 registry=registry)
        self.admissions = Counter("carecall_admissions", "Admitted joins", registry=registry)
        self.waiting = Gauge("carecall_joins_waiting",
                             "Sockets open on /ws that have not sent their hello yet",
                             registry=registry)
        self.refusals = Counter("carecall_refusals", "Refused or closed connections by code",
                                ["code"], registry=registry)
        self.relayed = Counter("carecall_relayed_messages", "Messages relayed between peers",
                               registry=registry)
