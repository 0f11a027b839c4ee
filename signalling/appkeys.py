"""Signalling's aiohttp application state, in one place."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from signalling.admission import Admission
from signalling.config import SignallingConfig
from signalling.hub import RoomHub
from signalling.metrics import SignallingMetrics
from signalling.ratelimit import KeyedLimiter
from signalling.reporter import AttendanceReporter
from signalling.waiting import WaitingJoins

CONFIG = web.AppKey("signalling_config", SignallingConfig)
HUB = web.AppKey("signalling_hub", RoomHub)
ADMISSION = web.AppKey("signalling_admission", Admission)
METRICS = web.AppKey("signalling_metrics", SignallingMetrics)
REPORTER = web.AppKey("signalling_reporter", AttendanceReporter)
FAILED_JOINS = web.AppKey("signalling_failed_joins", KeyedLimiter)
WAITING = web.AppKey("signalling_waiting_joins", WaitingJoins)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("signalling_clock")
RESUME_SECRET = web.AppKey("signalling_resume_secret", bytes)
