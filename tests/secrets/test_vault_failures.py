"""Vault fails closed: down, sealed, refusing us -> SecretsUnavailableError (503 api_error), and an
expired token is renewed or re-logged once. Against real OpenBao servers."""

import logging
import time

import pytest
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from payera.secrets.backends.base import SecretsUnavailableError
from tests.fixtures.vault import use_vault, vault_backend_for


def _assert_no_secret_in(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def test_stopped_server_is_unavailable(bao_disposable, key_name, caplog):
    backend = vault_backend_for(bao_disposable)
    ciphertext = backend.encrypt(key_name, b"4242424242424242")
    bao_disposable.stop()
    with caplog.at_level(logging.DEBUG):
        for call in (
            lambda: backend.encrypt(key_name, b"4242424242424242"),
            lambda: backend.decrypt(key_name, ciphertext),
            lambda: backend.secret_get("psp/alpha"),
            lambda: backend.keyed_hash(key_name, b"4242424242424242"),
        ):
            with pytest.raises(SecretsUnavailableError) as info:
                call()
            assert info.value.http_status == 503 and info.value.type == "api_error"
            assert info.value.__cause__ is None and info.value.__suppress_context__
    creds = bao_disposable.approles["payera"]
    _assert_no_secret_in(caplog.text, creds.secret_id, "4242424242424242", bao_disposable.root_token)


def test_backend_started_while_vault_is_down_is_unavailable(bao_disposable):
    backend = vault_backend_for(bao_disposable)
    bao_disposable.stop()
    with pytest.raises(SecretsUnavailableError):
        backend.secret_put("psp/alpha", {"api_key": "k"})


def test_sealed_server_is_unavailable(bao_disposable, key_name):
    backend = vault_backend_for(bao_disposable)
    backend.secret_put("psp/alpha", {"api_key": "psp-key"})
    bao_disposable.seal()
    assert bao_disposable.client().sys.is_sealed()
    with pytest.raises(SecretsUnavailableError):
        backend.secret_get("psp/alpha")
    with pytest.raises(SecretsUnavailableError):
        backend.encrypt(key_name, b"x")


def test_token_without_the_policy_is_unavailable(bao, key_name, caplog):
    token = bao.token(policies=["payera-kv-only"])
    backend = vault_backend_for(bao, token=token)
    with caplog.at_level(logging.DEBUG), pytest.raises(SecretsUnavailableError) as info:
        backend.encrypt(key_name, b"4242424242424242")
    assert backend.renewals == 1  # 403 -> one renewal -> retried once -> still 403
    _assert_no_secret_in(str(info.value) + caplog.text, token, "4242424242424242")


def test_approle_without_the_policy_relogs_once_then_is_unavailable(bao, key_name):
    backend = vault_backend_for(bao, role="payera-no-transit")
    with pytest.raises(SecretsUnavailableError):
        backend.encrypt(key_name, b"x")
    assert backend.logins == 2


def test_bad_approle_secret_id_is_unavailable(bao, key_name):
    from payera.secrets.backends.vault import VaultBackend

    creds = bao.approles["payera"]
    backend = VaultBackend(addr=bao.addr, token="", role_id=creds.role_id, secret_id="wrong-secret-id", timeout=3)
    with pytest.raises(SecretsUnavailableError) as info:
        backend.encrypt(key_name, b"x")
    assert "wrong-secret-id" not in str(info.value)


def test_revoked_static_token_is_unavailable(bao, key_name):
    token = bao.token(policies=["payera-app"])
    backend = vault_backend_for(bao, token=token)
    backend.encrypt(key_name, b"x")
    bao.client().auth.token.revoke(token)
    with pytest.raises(SecretsUnavailableError):
        backend.encrypt(key_name, b"x")


def test_expired_approle_token_is_relogged_once(bao, key_name):
    backend = vault_backend_for(bao, role="payera-short")  # tokens live 2 s, not renewable past it
    ciphertext = backend.encrypt(key_name, b"4242424242424242")
    assert backend.logins == 1
    time.sleep(2.3)
    assert backend.decrypt(key_name, ciphertext) == b"4242424242424242"
    assert backend.logins == 2


def test_expired_approle_token_refused_by_vault_is_relogged_once(bao, key_name):
    """Even when our own clock misses it (token revoked/expired early): 403 -> one re-login."""
    backend = vault_backend_for(bao, role="payera")
    backend.encrypt(key_name, b"x")
    bao.client().auth.token.revoke(backend._client.token)
    backend.encrypt(key_name, b"y")
    assert backend.logins == 2


def test_renewable_token_is_renewed_before_it_expires(bao, key_name):
    token = bao.token(policies=["payera-app"], ttl="3s")
    backend = vault_backend_for(bao, token=token)
    backend.encrypt(key_name, b"x")
    time.sleep(2.1)  # past two thirds of the TTL
    backend.encrypt(key_name, b"y")
    assert backend.renewals == 1
    time.sleep(1.5)  # past the original expiry: only alive because it was renewed
    assert backend.decrypt(key_name, backend.encrypt(key_name, b"z")) == b"z"


def test_kv_secrets_live_under_the_payera_prefix(bao, kv_path):
    backend = vault_backend_for(bao)
    backend.secret_put(kv_path, {"api_key": "psp-key"})
    stored = bao.client().secrets.kv.v2.read_secret_version(
        path=f"payera/{kv_path}", mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"api_key": "psp-key"}


class _TokenizeApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):
        from payera.secrets import services

        services.encrypt(key="cards", plaintext=b"4242424242424242")
        return None  # pragma: no cover - never reached: the backend is down


def test_unavailable_secrets_render_as_503_api_error(bao_disposable, settings):
    use_vault(settings, bao_disposable)
    bao_disposable.stop()
    request = APIRequestFactory().post("/v1/test", {"card": "4242424242424242"}, format="json")
    response = _TokenizeApi.as_view()(request)
    assert response.status_code == 503
    assert response.data == {
        "error": {
            "type": "api_error",
            "code": "secrets_unavailable",
            "message": "The secrets service is unavailable. Retry later.",
        }
    }
    response.render()
    secret_id = bao_disposable.approles["payera"].secret_id
    _assert_no_secret_in(response.content.decode(), secret_id, "4242424242424242", bao_disposable.addr)


def test_static_token_without_lookup_self_still_works(bao, key_name):
    token = bao.client().auth.token.create(policies=["payera-app"], no_default_policy=True, ttl="1h")["auth"][
        "client_token"
    ]
    backend = vault_backend_for(bao, token=token)
    assert backend.decrypt(key_name, backend.encrypt(key_name, b"x")) == b"x"
