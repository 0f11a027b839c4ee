"""booking_gate.config.webhooks_from_env: the webhook settings, refused at start when they
cannot work, never quoting a secret."""

from __future__ import annotations

from datetime import timedelta

import pytest

from booking_gate.config import webhooks_from_env
from booking_gate.webhooks import new_secret

URL = "https://booking.example/hooks"


def test_no_url_means_no_webhooks() -> None:
    """Without CARECALL_WEBHOOK_URL nothing is set (a stray secret is ignored)."""
    assert webhooks_from_env({}) == {}
    assert webhooks_from_env({"CARECALL_WEBHOOK_SECRET": "whsec_x"}) == {}


def test_a_url_and_secret_with_rotation_and_timings() -> None:
    """URL, both secrets, the backoff cap and the timeout (the lease is six of them)."""
    current, previous = new_secret(), new_secret()
    found = webhooks_from_env({
        "CARECALL_WEBHOOK_URL": URL, "CARECALL_WEBHOOK_SECRET": current,
        "CARECALL_WEBHOOK_SECRET_PREVIOUS": previous,
        "CARECALL_WEBHOOK_MAX_RETRY_SECONDS": "2", "CARECALL_WEBHOOK_TIMEOUT_SECONDS": "3"})
    assert found == {"webhook_url": URL, "webhook_secret": current,
                     "webhook_previous_secret": previous,
                     "webhook_max_retry": timedelta(seconds=2),
                     "webhook_first_retry": timedelta(seconds=2),
                     "webhook_timeout": 3.0, "webhook_lease": timedelta(seconds=18)}
    defaults = webhooks_from_env({"CARECALL_WEBHOOK_URL": URL,
                                  "CARECALL_WEBHOOK_SECRET": current})
    assert defaults["webhook_max_retry"] == timedelta(hours=1)
    assert defaults["webhook_first_retry"] == timedelta(seconds=5)
    assert defaults["webhook_previous_secret"] is None


@pytest.mark.parametrize(("env", "message"), [
    ({"CARECALL_WEBHOOK_URL": "ftp://x"}, "must be an http:// or https:// URL"),
    ({"CARECALL_WEBHOOK_URL": URL}, "CARECALL_WEBHOOK_SECRET must be set"),
    ({"CARECALL_WEBHOOK_URL": URL, "CARECALL_WEBHOOK_SECRET": "hunter2-hunter2"},
     "CARECALL_WEBHOOK_SECRET must look like whsec_<base64>"),
    ({"CARECALL_WEBHOOK_URL": URL, "CARECALL_WEBHOOK_SECRET": new_secret(),
      "CARECALL_WEBHOOK_SECRET_PREVIOUS": "whsec_c2hvcnQ="},
     "CARECALL_WEBHOOK_SECRET_PREVIOUS must hold 24 to 64 bytes"),
    ({"CARECALL_WEBHOOK_URL": URL, "CARECALL_WEBHOOK_SECRET": new_secret(),
      "CARECALL_WEBHOOK_MAX_RETRY_SECONDS": "0"}, "must be at least 1"),
    ({"CARECALL_WEBHOOK_URL": URL, "CARECALL_WEBHOOK_SECRET": new_secret(),
      "CARECALL_WEBHOOK_TIMEOUT_SECONDS": "soon"}, "must be a whole number of seconds"),
])
def test_settings_that_cannot_work_are_refused(env: dict[str, str], message: str) -> None:
    """Each is a ValueError naming the variable; no secret value appears in it."""
    with pytest.raises(ValueError, match=message) as caught:
        webhooks_from_env(env)
    for name in ("CARECALL_WEBHOOK_SECRET", "CARECALL_WEBHOOK_SECRET_PREVIOUS"):
        if name in env:
            assert env[name] not in str(caught.value)
