"""The OpenAPI document says exactly what the API does: schemathesis generates requests from it (valid ones, and
invalid ones it derives by breaking the schema) against the real app over a real store; every answer must be
declared (status code, content type, body schema, headers) and no request may cause a server error. Bounded per
operation so the suite stays fast; the failures of every operation are reported together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.generation import GenerationMode
from serving_helpers import SECRET, blocks_model, fill

from adrec.feedback.tokens import TokenSigner
from adrec.serving.api import ServerState, create_app
from adrec.serving.auth import create_api_key
from adrec.serving.limits import Limits
from adrec.store import open_store

pytestmark = pytest.mark.slow

EXAMPLES = 50  # per operation and mode
# What the document promises. Left out: "positive data acceptance", which expects every schema-valid request to
# succeed; a PUT whose body names another id than its path is schema-valid and rightly refused (422), and a JSON
# schema cannot say that two values must be equal.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def _checks(case: Any) -> list[Any]:
    """Besides :data:`CHECKS`, that invalid data is refused (4xx) when the body or path was broken. Not for query
    parameters alone: on the wire a query value is text, so many "violations" (``false`` for an id, a one-element
    list for a scalar) arrive as valid requests, and schemathesis cannot tell them apart."""
    negated = {loc.value for loc, info in case.meta.components.items() if info.mode.is_negative}
    if negated - {"query", "header"}:  # a header "violation" is the missing key, which every call sends back
        return [*CHECKS, checks.negative_data_rejection]
    return CHECKS


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_every_answer_is_declared_and_none_is_a_server_error(tmp_path: Path, mode: GenerationMode) -> None:
    with open_store(f"sqlite:///{tmp_path / 'api.db'}") as store:
        fill(store)
        state = ServerState(store, None, TokenSigner(SECRET), sync_interval_s=0)
        state.pipeline.swap_model(blocks_model())
        key = {"X-API-Key": create_api_key(store, "admin")[1]}
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(state, limits=Limits(rate_limit_rps=0)))
        failures: dict[str, str] = {}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        for operation in operations:

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                derandomize=True,  # the same cases every run: CI never fails by chance
            )
            def run(case: Any) -> None:
                # A parameter whose value is an empty list or object is not sent at all: such a "violation" never
                # reaches the server, which then rightly answers the request it got.
                assume(all(v not in ([], {}) for v in (case.query or {}).values()))
                case.call_and_validate(headers=key, checks=_checks(case))

            try:
                run()
            except Unsatisfiable:  # nothing to break in this operation (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as err:  # every operation is tried; all failures listed at the end
                failures[operation.label] = f"{type(err).__name__}: {str(err)[:1500]}"
    assert not failures, "\n\n".join(f"{label}\n{why}" for label, why in failures.items())
