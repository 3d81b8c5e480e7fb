"""How the OpenAPI schema describes the authentication schemes."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class StaffTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.StaffTokenAuthentication"
    name = "staffToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`; a key comes from `manage.py create_staff`.",
        }


class PartnerSignatureScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.PartnerSignatureAuthentication"
    name = "partnerSignature"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Signature",
            "description": (
                "Send `X-Partner-Key` (key id), `X-Timestamp` (Unix seconds, within 300 s), "
                "`X-Nonce` (never reused) and `X-Signature`: lowercase hex HMAC-SHA256 with the "
                "partner secret over `METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\n"
                "hex(sha256(body))`. Any fault is a 401 and changes nothing."
            ),
        }


class PatientTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.PatientTokenAuthentication"
    name = "patientToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `POST /api/patient/v1/auth/token/` (an SMS code).",
        }
