"""The base of every merchant endpoint: API key auth, scope check, rate limit, idempotency.

    class CustomerDetailApi(MerchantApiView):
        def get(self, request, id):
            customer = customer_get(merchant=request.merchant, customer_id=id)   # 404 if not theirs
            return Response(CustomerOutputSerializer(customer).data)

- `request.merchant` (also `self.merchant`) is the authenticated merchant; `request.api_key` the key.
- Every POST honours `Idempotency-Key` (payera.core.idempotency) without any code in the view;
  whether its answer came before or after its work began is watched (payera.core.work), so a 400
  or 503 given before any work releases the key and any answer after it is stored;
  set `idempotency_sensitive = True` when the answer carries a secret shown once. A view whose
  POST creates an object records it (`idempotency_resource_record` in the creating transaction)
  and defines `idempotent_resume(request, resource)`: a retry that takes over the claim of a
  request that crashed after creating it answers that object instead of creating another.
- Selectors take `merchant=` so another merchant's ids answer 404; the route-walking tenant test
  (tests/merchants/test_tenant_isolation.py) fails for a /v1/ route with no entry in
  tests/merchants/tenant_routes.py, and for a /v1/ view that does not inherit from this class.
"""

from __future__ import annotations

from django.db import DatabaseError
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework.views import APIView

from payera.audit.context import clear_actor
from payera.core.errors import ServiceUnavailableError
from payera.core.idempotency import (
    HEADER as IDEMPOTENCY_HEADER,
)
from payera.core.idempotency import (
    MAX_KEY_LENGTH,
    PendingClaim,
    StoredResponse,
    error_status,
    idempotency_begin,
    idempotency_end,
    idempotency_pending_claim,
    idempotency_pending_refused_unclaimed,
    replay,
)
from payera.core.parsers import MerchantJSONParser
from payera.core.work import work_watch
from payera.idempotency.services import IdempotencyKeyExistsError, idempotency_scope, idempotency_unlock
from payera.merchants.api.authentication import ApiKeyAuthentication
from payera.merchants.api.permissions import ApiKeyPermission
from payera.merchants.api.throttling import ApiKeyRateThrottle
from payera.merchants.errors import ApiKeyMissingError
from payera.merchants.models import ApiKey, Merchant


class MerchantApiSchema(AutoSchema):
    """Documents the `Idempotency-Key` header on every POST."""

    def get_override_parameters(self):
        params = list(super().get_override_parameters())
        if self.method == "POST":
            params.append(
                OpenApiParameter(
                    name=IDEMPOTENCY_HEADER,
                    type=str,
                    location=OpenApiParameter.HEADER,
                    required=False,
                    description=(
                        f"1-{MAX_KEY_LENGTH} characters, unique per request you mean to make once. A repeat "
                        "with the same body returns the first answer with `Idempotent-Replayed: true`."
                    ),
                )
            )
        return params


class MerchantApiView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [ApiKeyPermission]
    throttle_classes = [ApiKeyRateThrottle]
    parser_classes = [MerchantJSONParser]  # a card number outside payment_method_data: 400
    schema = MerchantApiSchema()
    # True for endpoints whose answer carries a secret shown once (webhook endpoint secrets):
    # the stored idempotent answer is then encrypted through the secrets backend.
    idempotency_sensitive = False
    # True for a create whose writes all happen in transactions of which the first calls
    # `idempotency_resource_record` (before any PSP call): a fresh key's claim is inserted there,
    # bound to the object, instead of in a commit of its own before the handler
    # (docs/decisions/idempotency-claim-with-work.md). A repeat is found by that insert (its
    # transaction rolls back) and claimed the ordinary way; a handler that wrote nothing has its
    # key claimed after it, with the answers (replay, 422, 409) it would have had before it.
    idempotency_claim_with_work = False

    @property
    def merchant(self) -> Merchant:
        return self.request.merchant

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttles
        api_key = request.auth
        if not isinstance(api_key, ApiKey):  # ApiKeyPermission already refused; never run unscoped
            raise ApiKeyMissingError()
        request.merchant = request._request.merchant = api_key.merchant
        request.api_key = request._request.api_key = api_key

    def _handle_claimed(self, outcome, request, answer):
        """The answer under a claimed key: the stored one replayed, the crashed first try's object
        resumed, else `answer(claim)`."""
        if isinstance(outcome, StoredResponse):
            return replay(outcome)
        self._idempotency_claim = claim = outcome
        resume = getattr(self, "idempotent_resume", None)
        if claim is not None and claim.resource and resume is not None:
            try:
                return resume(request, claim.resource)  # the crashed first try created it
            except ServiceUnavailableError:
                # that object can not be answered now (e.g. the secrets backend is down): a 503
                # stored for the key would be replayed for its whole retention, so nothing is
                # stored and the next retry takes the claim over at once and answers it
                self._idempotency_claim = None
                idempotency_unlock(claim=claim)
                raise
        return answer(claim)

    @staticmethod
    def _run_handler(handler, request, *args, **kwargs):
        """`answer` of `_handle_claimed` for a key claimed before the handler: run it under the claim."""

        def run(claim):
            with idempotency_scope(claim):
                return handler(request, *args, **kwargs)

        return run

    def _handle_pending(self, pending: PendingClaim, request, handler, *args, **kwargs):
        """The handler's answer, its key claimed in its creating transaction (`PendingClaim`)."""
        try:
            with idempotency_scope(pending):
                response = handler(request, *args, **kwargs)
        except IdempotencyKeyExistsError:  # a repeat: its transaction rolled back, nothing was written
            self._work.forget()
            return self._handle_claimed(idempotency_pending_claim(pending), request,
                                        self._run_handler(handler, request, *args, **kwargs))
        except DatabaseError:
            self._idempotency_claim = pending.claim  # its answer is not stored (503), as for any claim
            raise
        except Exception as exc:
            if pending.claim is None:
                return self._handle_unclaimed(pending, request, error=exc)
            # (if the claim's own transaction rolled back, storing the answer finds no row: the
            # key stays free, as nothing was done)
            self._idempotency_claim = pending.claim
            raise
        if pending.claim is not None:
            self._idempotency_claim = pending.claim
            return response
        if getattr(response, "database_unavailable", False):
            return response
        return self._handle_unclaimed(pending, request, response=response)

    def _handle_unclaimed(self, pending: PendingClaim, request, *, response=None, error: Exception | None = None):
        """The handler wrote nothing: claim the key now. What was stored, 422 or 409 answer as they
        would have before the handler; a crashed first try's object is resumed; else this answer
        (`response`, or the handler's `error`) is the key's."""

        def answer(claim):
            if error is not None:
                raise error
            return response

        self._work.forget()  # its key was never inserted: whatever it began rolled back with that
        status = response.status_code if error is None else error_status(error)
        if idempotency_pending_refused_unclaimed(pending, status=status):
            return answer(None)  # refused before any work, its key unused: nothing to claim or store
        return self._handle_claimed(idempotency_pending_claim(pending), request, answer)

    def dispatch(self, request, *args, **kwargs):
        # APIView.dispatch, with the handler run under the request's Idempotency-Key claim.
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        self._idempotency_claim = None
        self._idempotency_pending = None
        with work_watch() as self._work:
            return self._dispatch(request, *args, **kwargs)

    def _dispatch(self, request, *args, **kwargs):
        try:
            try:
                self.initial(request, *args, **kwargs)
                if request.method.lower() in self.http_method_names:
                    handler = getattr(self, request.method.lower(), self.http_method_not_allowed)
                else:
                    handler = self.http_method_not_allowed
                outcome = None
                self._work.forget()  # the request's own work is watched from here (not authentication's)
                if handler != self.http_method_not_allowed:
                    outcome = idempotency_begin(django_request=request._request, merchant_id=request.merchant.id,
                                                with_work=self.idempotency_claim_with_work)
                if isinstance(outcome, PendingClaim):
                    self._idempotency_pending = outcome
                    response = self._handle_pending(outcome, request, handler, *args, **kwargs)
                else:
                    response = self._handle_claimed(outcome, request,
                                                    self._run_handler(handler, request, *args, **kwargs))
            except Exception as exc:
                response = self.handle_exception(exc)
            claim = self._idempotency_claim
            self.response = self.finalize_response(request, response, *args, **kwargs)
            if response.status_code == 401:
                self.response["WWW-Authenticate"] = ApiKeyAuthentication().authenticate_header(request)
            if claim is not None and not getattr(response, "database_unavailable", False):
                # If storing fails — or the database was unreachable (503) — the claim stays in
                # flight until its lock times out: a retry then takes it over and answers what
                # the first try created, never a second effect and never a stored 503.
                pending = self._idempotency_pending
                idempotency_end(claim=claim, response=self.response, work_began=self._work.began,
                                sensitive=self.idempotency_sensitive,
                                stored=pending.answered if pending is not None and pending.claim is claim else None)
            return self.response
        finally:
            token = getattr(request._request, "payera_actor_token", None)
            if token is not None:
                clear_actor(token)
                request._request.payera_actor_token = None
