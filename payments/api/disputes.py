"""Disputes (chargebacks): list, retrieve, send evidence."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from payera.core.horizon import committed_before
from payera.core.pagination import paginate
from payera.merchants.api.base import MerchantApiView
from payments.api.payments import LIST_PARAMETERS, _actor, _list
from payments.selectors import dispute_get, dispute_list
from payments.serializers import DisputeOutputSerializer, render_dispute
from payments.services import dispute_submit_evidence
from payments.services.disputes import MAX_EVIDENCE


class DisputeListApi(MerchantApiView):
    @extend_schema(operation_id="disputes_list",
                   parameters=[*LIST_PARAMETERS, OpenApiParameter("payment", str, description="Only this payment's."),
                               OpenApiParameter("status", str, description="Only disputes in this status.")],
                   responses={200: _list("DisputeList", DisputeOutputSerializer)}, summary="List disputes")
    def get(self, request):
        qs = dispute_list(merchant=request.merchant, payment_id=request.query_params.get("payment"),
                          status=request.query_params.get("status"))
        # only disputes no later commit can join below (payera.core.pagination)
        return Response(paginate(qs, params=request.query_params, render=render_dispute,
                                 final_before=committed_before))


class DisputeDetailApi(MerchantApiView):
    @extend_schema(operation_id="disputes_retrieve", responses={200: DisputeOutputSerializer},
                   summary="Retrieve a dispute")
    def get(self, request, id: str):
        return Response(render_dispute(dispute_get(merchant=request.merchant, dispute_id=id)))


class DisputeEvidenceApi(MerchantApiView):
    class EvidenceInput(serializers.Serializer):
        text = serializers.CharField(max_length=MAX_EVIDENCE, allow_blank=False, trim_whitespace=False)

    @extend_schema(operation_id="disputes_evidence", request=EvidenceInput,
                   responses={200: DisputeOutputSerializer, 202: DisputeOutputSerializer},
                   summary="Answer a dispute with evidence, sent on to the PSP (needs_response -> under_review once "
                           "the PSP took it; 202 with evidence_pending while its answer is unknown; repeating it is a "
                           "no-op)")
    def post(self, request, id: str):
        dispute_get(merchant=request.merchant, dispute_id=id)  # 404 before validating the body
        serializer = self.EvidenceInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        dispute = dispute_submit_evidence(merchant=request.merchant, dispute_id=id,
                                          text=serializer.validated_data["text"], actor=_actor(request))
        # 202: sent, the PSP's answer not known yet (recovery sends it again until it is)
        return Response(render_dispute(dispute), status=202 if dispute.evidence_pending_at else 200)
