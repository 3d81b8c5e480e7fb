from django.db import models
from django.utils import timezone


class IdempotentRequest(models.Model):
    """A request that must take effect once (an API call per ``Idempotency-Key``, a page's form
    per its one-time token) and the answer it got.

    The key is claimed in a transaction of its own before the work, which commits on its own;
    the answer is remembered after. ``status_code`` is ``None`` while the work runs; a claim
    whose work failed is deleted, so the key may be sent again.

    The table keeps the name it was created with, in ``accounts``.
    """

    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "accounts_idempotentrequest"
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotent_request_once")
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
