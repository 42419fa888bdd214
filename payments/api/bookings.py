"""Bookings (escrow) API (CONTRACT "Bookings"; docs/api.md "Bookings"): one APIView per
operation; input serializers check shape only, the services check the rules."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from payera.core.fields import StrictIntegerField
from payera.core.horizon import committed_before
from payera.core.pagination import paginate
from payera.merchants.api.base import MerchantApiView
from payments.api.payments import LIST_PARAMETERS, RETURN_URL_SCHEMES, _actor, _list
from payments.bookings_models import BS
from payments.bookings_selectors import booking_get, booking_list
from payments.bookings_serializers import BookingOutputSerializer, render_booking
from payments.services import payment_confirm
from payments.services.bookings import booking_cancel, booking_complete, booking_confirm, booking_create


class BookingListCreateApi(MerchantApiView):
    class BookingCreateInput(serializers.Serializer):
        amount = StrictIntegerField()
        currency = serializers.CharField(max_length=8)
        reference = serializers.CharField(max_length=255)
        hold_expires_at = serializers.JSONField(
            help_text="When an unconfirmed hold is voided: unix seconds, or ISO 8601 with a zone (at most 7 days)."
        )
        payment_method_data = serializers.JSONField(required=False, allow_null=True)
        payment_method = serializers.CharField(required=False, allow_null=True, max_length=64)
        customer = serializers.CharField(required=False, allow_null=True, max_length=64)
        return_url = serializers.URLField(required=False, allow_null=True, allow_blank=True, max_length=2048,
                                          validators=[RETURN_URL_SCHEMES])
        description = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=1000)
        metadata = serializers.DictField(required=False, allow_null=True, child=serializers.JSONField())

    @extend_schema(operation_id="bookings_create", request=BookingCreateInput,
                   responses={201: BookingOutputSerializer},
                   summary="Create a booking: authorize the amount and hold it until hold_expires_at")
    def post(self, request):
        serializer = self.BookingCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        booking = booking_create(merchant=request.merchant, actor=_actor(request), **serializer.validated_data)
        return Response(render_booking(booking_get(merchant=request.merchant, booking_id=booking.id)),
                        status=status.HTTP_201_CREATED)

    def idempotent_resume(self, request, resource: str):
        """A retry after the first request crashed having created booking `resource` (with its
        payment): that booking, its payment confirmed if the crash came before the PSP call."""
        booking = booking_get(merchant=request.merchant, booking_id=resource)
        if booking.payment.status == "requires_confirmation":
            payment_confirm(merchant=request.merchant, payment_id=booking.payment_id, actor=_actor(request))
        return Response(render_booking(booking_get(merchant=request.merchant, booking_id=resource)),
                        status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="bookings_list",
                   parameters=[*LIST_PARAMETERS,
                               OpenApiParameter("status", str, description="Only bookings in this status."),
                               OpenApiParameter("reference", str, description="Only bookings with this reference.")],
                   responses={200: _list("BookingList", BookingOutputSerializer)}, summary="List bookings")
    def get(self, request):
        qs = booking_list(merchant=request.merchant, status=request.query_params.get("status"),
                          reference=request.query_params.get("reference"))
        # only bookings no later commit can join below (payera.core.pagination)
        return Response(paginate(qs, params=request.query_params, render=render_booking,
                                 final_before=committed_before))


class BookingDetailApi(MerchantApiView):
    @extend_schema(operation_id="bookings_retrieve", responses={200: BookingOutputSerializer},
                   summary="Retrieve a booking")
    def get(self, request, id: str):
        return Response(render_booking(booking_get(merchant=request.merchant, booking_id=id)))


def _booking_action_resume(done: tuple[str, ...]):
    """`idempotent_resume` of a booking action: a retry after the first request crashed having done
    (some of) its work — bound to the key in that work's transactions — answers the booking if the
    action got it to `done`; otherwise it runs the action, whose own checks finish or refuse what
    the crash left (a pending capture, a refund to record). Run again on a booking it had already
    moved, the action was refused (400 `booking_unexpected_state`), and that 400 released the key."""

    def resume(view, request, resource: str):
        booking = booking_get(merchant=request.merchant, booking_id=view.kwargs["id"])
        if booking.status in done:
            return Response(render_booking(booking))
        return view.post(request, view.kwargs["id"])

    return resume


class BookingConfirmApi(MerchantApiView):
    @extend_schema(operation_id="bookings_confirm", request=None, responses={200: BookingOutputSerializer},
                   summary="Confirm a held booking: capture it into the merchant's escrow")
    def post(self, request, id: str):
        booking = booking_get(merchant=request.merchant, booking_id=id)
        booking_confirm(merchant=request.merchant, booking_id=booking.id, actor=_actor(request))
        return Response(render_booking(booking_get(merchant=request.merchant, booking_id=id)))

    idempotent_resume = _booking_action_resume((BS.CONFIRMED, BS.COMPLETED))


class BookingCompleteApi(MerchantApiView):
    class BookingCompleteInput(serializers.Serializer):
        amount = StrictIntegerField(
            required=False, allow_null=True,
            help_text="Release only this much (≤ captured); the rest is refunded to the shopper. Default: all.",
        )

    @extend_schema(operation_id="bookings_complete", request=BookingCompleteInput,
                   responses={200: BookingOutputSerializer},
                   summary="Complete a confirmed booking: release its escrow to the merchant's pending balance")
    def post(self, request, id: str):
        booking = booking_get(merchant=request.merchant, booking_id=id)
        serializer = self.BookingCompleteInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        booking_complete(merchant=request.merchant, booking_id=booking.id,
                         amount=serializer.validated_data.get("amount"), actor=_actor(request))
        return Response(render_booking(booking_get(merchant=request.merchant, booking_id=id)))

    idempotent_resume = _booking_action_resume((BS.COMPLETED,))


class BookingCancelApi(MerchantApiView):
    @extend_schema(operation_id="bookings_cancel", request=None, responses={200: BookingOutputSerializer},
                   summary="Cancel a booking: void the hold, or refund the escrow after confirm")
    def post(self, request, id: str):
        booking = booking_get(merchant=request.merchant, booking_id=id)
        booking_cancel(merchant=request.merchant, booking_id=booking.id, actor=_actor(request))
        return Response(render_booking(booking_get(merchant=request.merchant, booking_id=id)))

    idempotent_resume = _booking_action_resume((BS.CANCELED,))
