"""Staff API: persons and family links (API.md § Staff API)."""

from typing import Any

from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import (
    StaffTokenAuthentication,
    patient_person_id,
    roles,
    staff_actor,
)
from accounts.models import Department, FamilyLink, Person
from accounts.selectors import (
    line_figures,
    lines_of,
    person_find,
    staff_institution,
    staff_place,
)
from accounts.serializers import (
    DepartmentOut,
    DepartmentPage,
    FamilyLinkOut,
    PersonDetailOut,
    PersonOut,
    PersonPage,
    credit_line_out,
)
from accounts.services import family, persons
from core.api import IDEMPOTENCY_KEY, PAGE, ApiView, YuanField, idempotent

STAFF = roles("cashier", "finance", "admin")
# Reads the city platform's operators may make too: persons are the platform's.
READ = roles("cashier", "finance", "admin", "platform")
FRONT_DESK = roles("cashier", "admin")


class StaffView(ApiView):
    authentication_classes = [StaffTokenAuthentication]
    permission_classes = [STAFF]


class PersonListCreateApi(StaffView):
    class PersonInput(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        id_number = serializers.CharField(max_length=32)
        phone = serializers.CharField(max_length=20, required=False, allow_blank=True)

    def get_permissions(self) -> list[Any]:
        return [FRONT_DESK()] if self.request.method == "POST" else [READ()]

    @extend_schema(
        operation_id="persons_list",
        description="People the caller's institution has admitted, by part of their name. To "
        "find anyone by ID number, POST it to /api/v1/persons/find/: an ID number never goes "
        "into a URL (and so into access logs).",
        parameters=[OpenApiParameter("name", str, description="part of the name"), PAGE],
        responses=PersonPage,
    )
    def get(self, request: Request) -> Response:
        # Only whom the caller's institution has seen; anyone is found by ID number (find/).
        people = Person.objects.filter(staff_place(request.user).q("seen_at__institution"))
        people = people.distinct().order_by("id")
        if "id_number" in request.query_params:
            raise serializers.ValidationError(
                {"id_number": ["POST it to /api/v1/persons/find/; ID numbers stay out of URLs"]}
            )
        name = request.query_params.get("name", "").strip()
        if name:
            people = people.filter(Q(name__icontains=name))
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(people, request, view=self)
        return paginator.get_paginated_response(PersonOut(page, many=True).data)

    @extend_schema(
        operation_id="persons_create",
        parameters=[IDEMPOTENCY_KEY],
        request=PersonInput,
        responses={201: PersonOut},
    )
    def post(self, request: Request) -> Response:
        data = self.PersonInput(data=request.data)
        data.is_valid(raise_exception=True)

        def create() -> Response:
            person = persons.person_create(
                actor=staff_actor(request),
                seen_at=staff_institution(request.user),
                **data.validated_data,
            )
            return Response(PersonOut(person).data, status=status.HTTP_201_CREATED)

        return idempotent(request, f"staff:{request.user.pk}", create)


class DepartmentListApi(StaffView):
    @extend_schema(
        operation_id="departments_list",
        description="The caller's institution's departments, by code. Admission takes a "
        "department by this code (or its id).",
        parameters=[PAGE],
        responses=DepartmentPage,
    )
    def get(self, request: Request) -> Response:
        institution = staff_institution(request.user)
        departments = Department.objects.filter(institution=institution).order_by("code", "pk")
        if institution is None:
            departments = departments.none()
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(departments, request, view=self)
        return paginator.get_paginated_response(DepartmentOut(page, many=True).data)


class PersonFindApi(StaffView):
    """Exact lookup by ID number, through its keyed hash; the number travels in the body. Open
    to every staff role and the platform's operators: a patient may arrive anywhere."""

    permission_classes = [READ]

    class FindInput(serializers.Serializer):
        id_number = serializers.CharField(max_length=32)

    @extend_schema(
        operation_id="persons_find",
        description="Finds nobody or one person; the answer has the shape of a page.",
        request=FindInput,
        responses={200: PersonPage},
    )
    def post(self, request: Request) -> Response:
        data = self.FindInput(data=request.data)
        data.is_valid(raise_exception=True)
        found = person_find(data.validated_data["id_number"])
        results = [PersonOut(found).data] if found else []
        return Response({"count": len(results), "next": None, "previous": None, "results": results})


class PersonDetailApi(StaffView):
    """Staff (and the platform's operators) see anyone; a patient's own login (session or
    token) sees only itself."""

    authentication_classes = [StaffTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="persons_read", responses=PersonDetailOut)
    def get(self, request: Request, person_id: int) -> Response:
        own = patient_person_id(request)
        if own is None and not READ().has_permission(request, self):
            raise PermissionDenied("staff roles or the person's own login only")
        if own is not None and own != person_id:
            raise PermissionDenied("a patient sees only their own data")
        person = Person.objects.get(pk=person_id)
        lines = list(lines_of(person))
        figures = line_figures(lines)
        links = FamilyLink.objects.filter(Q(payer=person) | Q(beneficiary=person)).order_by("id")
        body = dict(PersonOut(person).data)
        body["credit_lines"] = [credit_line_out(line, figures[line.pk]) for line in lines]
        body["family_links"] = FamilyLinkOut(links, many=True).data
        return Response(body)


class FamilyLinkCreateApi(StaffView):
    permission_classes = [FRONT_DESK]

    class FamilyLinkInput(serializers.Serializer):
        payer = serializers.IntegerField()
        beneficiary = serializers.IntegerField()
        relation = serializers.ChoiceField(choices=FamilyLink.Relation.choices)
        consent = serializers.BooleanField()
        consent_by = serializers.CharField(max_length=150, required=False)
        cap = YuanField(required=False, allow_null=True, allow_zero=False)

    @extend_schema(
        operation_id="family_links_create",
        parameters=[IDEMPOTENCY_KEY],
        request=FamilyLinkInput,
        responses={201: FamilyLinkOut},
    )
    def post(self, request: Request) -> Response:
        data = self.FamilyLinkInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        people = Person.objects.in_bulk([values["payer"], values["beneficiary"]])
        missing = {
            f: ["no such person"] for f in ("payer", "beneficiary") if values[f] not in people
        }
        if missing:
            raise serializers.ValidationError(missing)

        def create() -> Response:
            link = family.family_link_create(
                actor=staff_actor(request),
                payer=people[values["payer"]],
                beneficiary=people[values["beneficiary"]],
                relation=values["relation"],
                consent=values["consent"],
                consent_by=values.get("consent_by") or staff_actor(request),
                consent_channel="cashier",
                cap=values.get("cap"),
            )
            return Response(FamilyLinkOut(link).data, status=status.HTTP_201_CREATED)

        return idempotent(request, f"staff:{request.user.pk}", create)


class FamilyLinkRevokeApi(StaffView):
    permission_classes = [FRONT_DESK]

    @extend_schema(
        operation_id="family_links_revoke",
        parameters=[IDEMPOTENCY_KEY],
        request=None,
        responses={200: FamilyLinkOut},
    )
    def post(self, request: Request, link_id: int) -> Response:
        def revoke() -> Response:
            link = family.family_link_revoke(actor=staff_actor(request), link_id=link_id)
            return Response(FamilyLinkOut(link).data)

        return idempotent(request, f"staff:{request.user.pk}", revoke)
