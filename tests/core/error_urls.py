"""A URLconf for the error-shape tests: the real project routes plus views that fail on purpose."""

from django.db import connection
from django.urls import path
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from payera import urls as project_urls


class _Input(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1)
    currency = serializers.CharField(max_length=3)


class OpenApiView(APIView):
    """No key needed: these views test the plumbing under the merchant API's auth."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []


class ValidatingApi(OpenApiView):
    def post(self, request):
        data = _Input(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(data.validated_data, status=201)


class NeedsAuthApi(OpenApiView):
    def get(self, request):
        raise NotAuthenticated()


class CrashingApi(OpenApiView):
    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM table_that_does_not_exist WHERE secret = 'sk_test_abcdef123456'")
        return Response({})


class PlainCrashApi(OpenApiView):
    def get(self, request):
        raise RuntimeError("card 4242424242424242 blew up")


class UserListApi(OpenApiView):
    """A real list endpoint over a real table, to test the shared cursor pagination."""

    def get(self, request):
        from django.contrib.auth.models import User

        from payera.core.pagination import paginate

        return Response(
            paginate(
                User.objects.all(),
                params=request.query_params,
                render=lambda u: {"id": u.pk, "username": u.username},
                created_field="date_joined",
            )
        )


def django_crash_view(request):
    raise ValueError("Authorization: Bearer sk_test_zzzzzzzzzzzzzzzz")


urlpatterns = [
    path("_test/django-crash", django_crash_view),
    path("_test/users", UserListApi.as_view()),
    path("_test/validate", ValidatingApi.as_view()),
    path("_test/auth", NeedsAuthApi.as_view()),
    path("_test/crash-sql", CrashingApi.as_view()),
    path("_test/crash", PlainCrashApi.as_view()),
    *project_urls.urlpatterns,
]

handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500
