from typing import Any

from django.db import models

from accounts.models import AuditEvent


def audit_record(
    *, actor: str, action: str, obj: models.Model, changes: dict[str, Any] | None = None
) -> AuditEvent:
    """Record a change; call it inside the transaction that makes the change."""
    return AuditEvent.objects.create(
        actor=actor,
        action=action,
        object_type=obj._meta.model_name or type(obj).__name__,
        object_id=str(obj.pk),
        changes=changes or {},
    )
