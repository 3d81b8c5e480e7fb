"""Production settings: refuse to start with debug on or with development or weak keys.

Generate keys with ``python -c "import secrets; print(secrets.token_urlsafe(50))"``.
"""

import math
import os
from collections import Counter

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import (
    DEV_FIELD_ENCRYPTION_KEY,
    DEV_SECRET_KEY,
    FIELD_ENCRYPTION_KEY,
    MIDDLEWARE,
    SECRET_KEY,
    env_bool,
)

# A key must carry at least this many bits by the Shannon estimate of its own characters: a
# random URL-safe key of 43 characters has some 190 or more, 32 random hex digits 99 or more,
# a repeated or patterned one far fewer.
MIN_KEY_BITS = 90


def key_weakness(key: str, *, min_length: int) -> str | None:
    """Why ``key`` is too weak to protect production data, or None."""
    if len(key) < min_length:
        return f"shorter than {min_length} characters"
    counts = Counter(key)
    bits = -sum(n * math.log2(n / len(key)) for n in counts.values())
    if bits < MIN_KEY_BITS:
        return "too predictable (repeated or patterned characters)"
    return None


DEBUG = env_bool("DJANGO_DEBUG", False)
if DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production.")
if SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("Set DJANGO_SECRET_KEY; the development key is refused.")
if weakness := key_weakness(SECRET_KEY, min_length=50):
    raise ImproperlyConfigured(f"DJANGO_SECRET_KEY is {weakness}: use 50+ random characters.")
_field_keys = [part.strip() for part in FIELD_ENCRYPTION_KEY.split(",")]
if DEV_FIELD_ENCRYPTION_KEY in _field_keys:
    raise ImproperlyConfigured("Set FIELD_ENCRYPTION_KEY; the development key is refused.")
if not all(_field_keys):
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY has an empty key (keys are comma-separated).")
# The first key encrypts; older ones after it only decrypt until rotate_field_keys has run.
if weakness := key_weakness(_field_keys[0], min_length=32):
    raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEY is {weakness}: use 32+ random characters.")

# TLS ends at the reverse proxy, which says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Off only where the proxy itself redirects plain HTTP (API.md § Deployment).
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# A load balancer probes over plain HTTP on the inside of the proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# `check --deploy` warns while these two are off. They stay the operator's choice, so the
# warnings are silenced only when chosen: a hospital's domain often has intranet subdomains
# still on plain HTTP (include-subdomains would lock browsers out of them), and preloading is
# a commitment made with the browser vendors, not a setting.
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True

# Hashed, compressed static files served by the web process (WhiteNoise) after collectstatic.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Static files right after SecurityMiddleware (WhiteNoise answers them itself, so anything
# later would not see them): they get HSTS and the TLS redirect like every page.
_security = MIDDLEWARE.index("django.middleware.security.SecurityMiddleware")
MIDDLEWARE = [
    *MIDDLEWARE[: _security + 1],
    "whitenoise.middleware.WhiteNoiseMiddleware",
    *MIDDLEWARE[_security + 1 :],
]
