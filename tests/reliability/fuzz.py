"""Schemathesis against our own live OpenAPI schema, shared by the CI test and bench/fuzz.

The schema is read from `/v1/schema/` through the WSGI app, so an endpoint added later is
fuzzed without touching this file. Every call carries a real merchant key; the checks are
schemathesis' defaults that judge *our* answers (no 5xx, status code, content type, response
schema and headers as documented).
"""

from __future__ import annotations

import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

# What the fuzzer holds us to. (Negative-data / auth-probing checks are left out: the
# contract's own tests cover auth, and "did the server accept my random garbage" checks
# judge schemathesis' generator as much as the API.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def load_schema():
    from django.core.wsgi import get_wsgi_application

    return schemathesis.openapi.from_wsgi("/v1/schema/", get_wsgi_application())
