"""Schemathesis fuzzes every JSON API operation of the app's own OpenAPI, as each role, on a seeded database: no
answer may be a server error, or break the status codes, content type or body schema the spec declares.

- `test_api`: every operation as each logged-in role (administrator, coordinator, communications officer,
  two partner users of different organisations) on SQLite, with a fixed number of generated requests, valid
  and invalid.
- `test_api_writes_on_postgresql`: the same as the administrator on PostgreSQL, for the operations that store
  something: PostgreSQL refuses what SQLite keeps (a NUL character, an over-long string, a huge number).
- `test_api_anonymous`: every operation without a login, with fewer requests: behind a login every one is
  refused before its input is looked at.
- `test_api_boundaries`: schemathesis's coverage phase (each field at its limits, every enum value) as the
  administrator, who may call everything, on both databases: on SQLite what passed validation but breaks the
  response model surfaces as a 500; PostgreSQL refuses what does not fit its types.
- `test_pdf_operations`: the operations that render a PDF (a render takes about a second), bounded to a few
  requests so they do not dominate the run; the coverage phase leaves them out.

Each operation is fuzzed on its own copy of the seeded database, and generation is derandomised: a run makes
the same requests every time, so CI sees no flaky failures.
"""

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.db import create_db_engine, migrate
from service.main import create_app
from tests.fuzz.conftest import ANONYMOUS, LOGGED_IN, Target

pytestmark = pytest.mark.fuzz

# Routes whose answer is a rendered PDF: a situation report, a memorandum's draft, its issue, the signature
# that completes it (the final PDF with its certificate page).
PDF_RENDERING = r"/sitrep\.pdf$|/memoranda/\{memorandum_id\}/(pdf|issue|signatures|signatures/scan)$"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
BOUNDED = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    # Each operation gets a fresh copy of the seeded database; a request that takes a while is no fault here.
    "suppress_health_check": [
        HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
}  # fmt: skip


def _openapi() -> dict:
    """The app's own spec; it does not depend on the data, so an empty migrated database will do."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'spec.db'}"
        migrate(url)
        engine = create_db_engine(url)
        try:
            return create_app(engine, run_scheduler=False).openapi()
        finally:
            engine.dispose()


def _loaded(spec: dict, phases: dict) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        # The role's token is sent by the test; generated security parameters would replace it.
        {"generation": {"with-security-parameters": False}, "phases": {"stateful": {"enabled": False}, **phases}}
    )
    schema = schemathesis.openapi.from_dict(spec, config=config)

    @schema.hook
    def before_generate_path_parameters(context, strategy):
        """Half the ids are ones the seeded database has (no table of it has more than a dozen rows), so fuzzing
        gets past the 404 into the code behind it; the other half are whatever the spec allows."""
        names = [parameter.name for parameter in context.operation.path_parameters]
        return st.one_of(st.fixed_dictionaries({name: st.integers(1, 12) for name in names}), strategy)

    return schema


def _only_ids(context) -> bool:
    """An operation whose only input is the ids in its path: the coverage phase would vary nothing but their
    edges, which the fuzzing run reaches too."""
    definition = context.operation.definition.raw  # filters see the spec's text, not parsed parameters yet
    return "requestBody" not in definition and all(p["in"] == "path" for p in definition.get("parameters", []))


SPEC = _openapi()
fuzzing = _loaded(SPEC, {"coverage": {"enabled": False}})
boundaries = (
    _loaded(
        SPEC,
        {
            "examples": {"enabled": False},
            "fuzzing": {"enabled": False},
            # Valid values at the edges (longest strings, extreme numbers, every enum value): where what passed
            # validation may still not fit the database or the response model. Invalid input is the fuzzing
            # phase's; an unsupported method FastAPI's router answers the same way for every path.
            "coverage": {"enabled": True, "generation": {"mode": "positive"}, "unexpected-methods": []},
        },
    )
    .exclude(path_regex=PDF_RENDERING)
    .exclude(_only_ids)
)


def _call_and_check(case: schemathesis.Case, target: Target) -> None:
    response = case.call(session=target.client, app=target.app, headers=target.headers)
    case.validate_response(response, checks=CHECKS, headers=target.headers)


FUZZED = {"max_examples": 5, "phases": [Phase.explicit, Phase.generate], **BOUNDED}
without_pdfs = fuzzing.exclude(path_regex=PDF_RENDERING)


@without_pdfs.parametrize()
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("role", LOGGED_IN)
@settings(**FUZZED)
def test_api(case: schemathesis.Case, target: Target) -> None:
    _call_and_check(case, target)


@without_pdfs.exclude(method="GET").parametrize()
@pytest.mark.parametrize(("backend", "role"), [("postgresql", "admin")])
@settings(**FUZZED)
def test_api_writes_on_postgresql(case: schemathesis.Case, target: Target) -> None:
    _call_and_check(case, target)


@without_pdfs.parametrize()
@pytest.mark.parametrize(("backend", "role"), [("sqlite", ANONYMOUS)])
@settings(**{**FUZZED, "max_examples": 4})
def test_api_anonymous(case: schemathesis.Case, target: Target) -> None:
    _call_and_check(case, target)


@boundaries.parametrize()
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("role", ["admin"])
@settings(phases=[Phase.explicit], **BOUNDED)
def test_api_boundaries(case: schemathesis.Case, target: Target) -> None:
    _call_and_check(case, target)


@fuzzing.include(path_regex=PDF_RENDERING).parametrize()
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("role", [ANONYMOUS, *LOGGED_IN])
@settings(**{**FUZZED, "max_examples": 2})
def test_pdf_operations(case: schemathesis.Case, target: Target) -> None:
    _call_and_check(case, target)
