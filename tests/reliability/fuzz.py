"""Schemathesis against our own live OpenAPI schema, shared by the CI test and bench/fuzz.

The schema is read from `/v1/schema/` through the WSGI app, so an endpoint added later is
fuzzed without touching this file. Every call carries a real merchant key.
"""

from __future__ import annotations

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

# What the fuzzer holds us to: our answers (no 5xx; status, content type, body and headers as
# documented) and the schema's precision (data the schema calls invalid is refused, undocumented
# methods answer 405). Left out: positive_data_acceptance (it counts business-rule refusals the
# schema cannot express as failures: an unknown `starting_after` id, an unknown event type, an
# Idempotency-Key reused with another body) and the auth probes (missing_required_header,
# ignored_auth: the test adds the key to every case, which they mistake for a missing-header
# case; tests/merchants covers authentication).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    unsupported_method,
]


def load_schema():
    from django.core.wsgi import get_wsgi_application

    return schemathesis.openapi.from_wsgi("/v1/schema/", get_wsgi_application())
