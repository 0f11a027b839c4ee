"""The fuzz targets of bench/fuzz.py, bounded for CI: no finding in a few hundred inputs.

The long run (``python -m bench.fuzz``, 100,000 inputs per target) and its figures are
in docs/security.md. A finding is any exception other than the project's own refusal,
or a 5xx from a REST route.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import fuzz

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize(("name", "strategy", "target"), [
    ("ws_parse", fuzz.ws_messages, fuzz.ws_parse),
    ("token_verify", fuzz.join_tokens, fuzz.token_verify),
], ids=["ws_parse", "token_verify"])
def test_the_parser_and_the_verifiers_refuse_only_with_their_own_errors(
        name: str, strategy: object, target: object) -> None:
    report = fuzz.run(name, strategy, target, 400)  # type: ignore[arg-type]
    assert report.inputs == 400
    assert report.findings == []


def test_no_rest_body_reaches_a_server_error(tmp_path: Path) -> None:
    """Against a real `carecall serve`: every route with a body, none answers 5xx."""
    with fuzz.RestTarget(tmp_path) as rest:
        assert len(rest.routes) >= 10  # every operation with a body, from the OpenAPI doc
        report = fuzz.run("rest_bodies", fuzz.rest_bodies(rest.routes), rest, 600,
                          ok=lambda status: isinstance(status, int) and status < 500)
        _, _, samples = rest.lag()
        assert samples > 0  # the service's own lag figures were read
    assert report.inputs == 600
    assert report.findings == []


def test_a_finding_is_reported_not_swallowed() -> None:
    """The harness itself: a target that raises something else is a finding."""
    def fragile(text: str) -> None:
        if len(text) > 3:
            raise KeyError("boom")

    report = fuzz.run("fragile", fuzz.ws_messages, fragile, 50)
    assert report.findings and report.findings[0].startswith("KeyError at test_fuzz.py:")
