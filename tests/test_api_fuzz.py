"""Fuzzing the REST API from its own OpenAPI schema (schemathesis): zero server errors
and zero schema violations (every status code, content type and body the schema
documents, refusals included: ``studyweb.openapi.add_error_responses``).

Bounded: a few examples per operation, over HTTP against the live test server,
as an admin (the persona that reaches every code path).
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from scoring.model_scoring.services import model_version_register
from tests.factories import StimulusFactory, StudyFactory, UserFactory

_spec = SchemaGenerator().get_schema(request=None, public=True)
schema = schemathesis.openapi.from_dict(json.loads(OpenApiJsonRenderer().render(_spec)))

EXAMPLES = 6


@pytest.fixture
def admin_headers(transactional_db):
    admin = UserFactory(username="fuzz-admin", is_staff=True, is_superuser=True)
    study = StudyFactory(slug="fuzz", owner=admin)
    StimulusFactory.create_batch(2, study=study)
    model_version_register(name="fuzz-sharp", kind="baseline", baseline="sharpness")
    return {"Authorization": f"Token {Token.objects.create(user=admin).key}"}


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_answers_as_documented(case, admin_headers, live_server):
    case.call_and_validate(
        base_url=live_server.url,
        headers=admin_headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def test_the_schema_generates_without_warnings(tmp_path):
    """Warnings mean a client's generated code gets odd names (``Platform659Enum``)
    or guessed types: each is fixed at its source (ENUM_NAME_OVERRIDES, a field's
    type), never silenced."""
    from django.core.management import call_command

    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")
    )
