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


def test_a_hostile_header_is_refused_not_raised_by_the_docs_snippet_and_verify():
    """Merchants copy the docs snippet into their endpoint, which anyone can call: a `t=` of
    Unicode digits (`"²".isdigit()` is True, `int("²")` raises ValueError) or a `v1=` with a
    non-ASCII character (`hmac.compare_digest` raises TypeError on such a str) made it raise — a
    500 at the merchant's — instead of answering False. Both verifiers now refuse them."""
    verify_snippet = docs_verifier()
    now = int(time.time())
    good = sign("whsec_abc", now, BODY).split(",")[1]
    hostile = [f"t=²,{good}", f"t={now},v1={'é' * 64}", f"t={now},v1=é,{good}"]
    for header in hostile[:2]:
        assert verify_snippet(BODY, header, "whsec_abc") is False
        assert verify("whsec_abc", header, BODY) is False
    # a hostile value beside a good one does not stop the good one from verifying
    assert verify_snippet(BODY, hostile[2], "whsec_abc") and verify("whsec_abc", hostile[2], BODY)
