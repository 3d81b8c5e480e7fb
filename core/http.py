"""A JSON POST to an outside system, for the adapters (insurer, SMS gateway, credit-score
platform): each maps what happened to its own errors, this says only which of three things did.

- An answer came (any HTTP status): ``(status, body bytes)``.
- :class:`NotSent`: connecting or sending failed; the other side never had the whole request.
- :class:`NoAnswer`: the request went out and no usable answer came back (a timeout while
  waiting, a connection closed without an answer, a cut-off body): it may have taken effect.

Only the standard library is used, and proxies from the environment are ignored: these
systems are reached over their own networks, not the hospital's way out to the internet.
"""

import functools
import http.client
import json
import urllib.error
import urllib.request
from typing import Any


class NotSent(Exception):
    """The request never reached the other side whole."""


class NoAnswer(Exception):
    """The request was sent; no usable answer came back."""


@functools.cache
def opener() -> urllib.request.OpenerDirector:
    """An opener that ignores proxy settings from the environment: one per process, as
    ``urlopen`` keeps one (its handlers keep nothing between requests, and building them
    took a tenth of a millisecond per adapter made, one per settle)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_json(
    via: urllib.request.OpenerDirector, url: str, body: Any, *, timeout: float
) -> tuple[int, bytes]:
    """POST ``body`` as UTF-8 JSON to ``url`` (an http(s) URL the caller checked); the answer's
    status and bytes, whatever the status. ``body`` may be the JSON already encoded (bytes)."""
    request = urllib.request.Request(  # noqa: S310 - the callers check the scheme
        url,
        data=body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
        method="POST",
    )
    try:
        with via.open(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        try:
            raw = e.read()
        except (OSError, http.client.HTTPException):
            raw = b""
        finally:
            e.close()
        return e.code, raw
    except urllib.error.URLError as e:
        # urllib raises URLError while connecting or sending, before anything was answered.
        raise NotSent(str(e.reason)) from e
    except (OSError, http.client.HTTPException) as e:
        raise NoAnswer(f"{type(e).__name__}: {e}".rstrip(": ")) from e
