"""The partner API's request signature (API.md § Partner API).

``X-Signature`` = lowercase hex HMAC-SHA256, with the partner's secret, over::

    METHOD \n PATH_WITH_QUERY \n TIMESTAMP \n NONCE \n hex(sha256(body))

The same scheme signs the webhooks sent to partners.
"""

import hashlib
import hmac

MAX_SKEW_SECONDS = 300


def string_to_sign(
    method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join([method.upper(), path_with_query, timestamp, nonce, body_hash]).encode()


def sign(
    secret: str, method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    message = string_to_sign(method, path_with_query, timestamp, nonce, body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())
