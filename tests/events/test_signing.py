import hashlib
import hmac
import time

from payera.events.signing import sign, verify
from tests.events.helpers import docs_verifier

BODY = b'{"id":"evt_1","object":"event"}'


def test_header_is_t_and_hex_hmac_of_timestamp_dot_body():
    header = sign("whsec_abc", 1763800000, BODY)
    expected = hmac.new(b"whsec_abc", b"1763800000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1763800000,v1={expected}"


def test_docs_snippet_verifies_and_rejects():
    verify_snippet = docs_verifier()
    now = int(time.time())
    header = sign("whsec_abc", now, BODY)
    assert verify_snippet(BODY, header, "whsec_abc")
    assert not verify_snippet(BODY + b" ", header, "whsec_abc")
    assert not verify_snippet(BODY, header, "whsec_other")
    assert not verify_snippet(BODY, sign("whsec_abc", now - 3600, BODY), "whsec_abc")  # stale: replay
    assert not verify_snippet(BODY, "garbage", "whsec_abc")


def test_during_a_roll_both_secrets_sign_and_either_verifies():
    now = int(time.time())
    header = sign(["whsec_new", "whsec_old"], now, BODY)
    assert header.count("v1=") == 2
    verify_snippet = docs_verifier()
    for secret in ("whsec_new", "whsec_old"):
        assert verify_snippet(BODY, header, secret) and verify(secret, header, BODY)
    assert not verify_snippet(BODY, header, "whsec_third")
