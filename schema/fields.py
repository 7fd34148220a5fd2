"""How every leaf field of the record types is read: the one table from GraphQL field to
guarded policy object and storage value.

These resolvers are bound directly on the executable schema (``bind_field_resolvers``): a page
of 50 people with their records resolves a couple of thousand leaf fields, and a plain
function per field costs a fraction of the generic wrapper. Each goes through the field guard;
a value is computed (and a sealed column decrypted) only when the guard releases it.

Start-up fails if the schema declares a leaf field this table does not cover: a field with no
entry here would have no guard.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from graphql import GraphQLObjectType, GraphQLResolveInfo, GraphQLSchema, get_named_type
from graphql.type import is_leaf_type

from schema import relations
from schema.context import RequestContext
from schema.enums import Department, EnrollmentStatus, Gender, InsuranceType, ReliefCategory
from schema.types import Household

Getter = Callable[[Any, RequestContext], Any]


def _sealed(column: str) -> Getter:
    return lambda row, context: context.vault.open(row, column)


def _attr(name: str, convert: Callable[[Any], Any] | None = None) -> Getter:
    if convert is None:
        return lambda record, _context: getattr(record, name)
    return lambda record, _context: convert(getattr(record, name))


def _optional_category(value: str | None) -> ReliefCategory | None:
    return ReliefCategory[value] if value else None


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# GraphQL type → field → (guarded policy object, or None for structural fields; getter).
# Person objects are person rows (``id``); child records carry ``person_id``.
FIELDS: dict[str, dict[str, tuple[str | None, Getter]]] = {
    "Person": {
        "id": (None, _attr("id", str)),
        "regionCode": (None, _attr("region_code", str)),
        "idNumber": ("Person.idNumber", _sealed("id_number")),
        "name": ("Person.name", _sealed("name")),
        "phone": ("Person.phone", _sealed("phone")),
        "address": ("Person.address", _sealed("address")),
        "gender": ("Person.gender", _attr("gender", lambda v: Gender[v])),
        "birthDate": ("Person.birthDate", _attr("birth_date", _as_date)),
        "underVerification": ("Person.underVerification", _attr("under_verification", bool)),
    },
    "ReliefStatus": {
        "category": (None, _attr("category", lambda v: ReliefCategory[v])),
        "sourceDepartment": (
            "ReliefStatus.sourceDepartment",
            _attr("source_department", Department),
        ),
        "recognizedOn": ("ReliefStatus.recognizedOn", _attr("recognized_on")),
        "validFrom": ("ReliefStatus.validFrom", _attr("valid_from")),
        "validTo": ("ReliefStatus.validTo", _attr("valid_to")),
    },
    "Enrollment": {
        "year": (None, _attr("year", int)),
        "insuranceType": (
            "Enrollment.insuranceType",
            _attr("insurance_type", lambda v: InsuranceType[v]),
        ),
        "status": ("Enrollment.status", _attr("status", lambda v: EnrollmentStatus[v])),
        "regionCode": ("Enrollment.regionCode", _attr("region_code")),
        "subsidyCategory": (
            "Enrollment.subsidyCategory",
            _attr("subsidy_category", _optional_category),
        ),
        "subsidyAmount": ("Enrollment.subsidyAmount", _attr("subsidy_amount")),
    },
    "CostBurden": {
        "year": (None, _attr("year", int)),
        "totalCost": ("CostBurden.totalCost", _attr("total_cost")),
        "basicInsurancePaid": ("CostBurden.basicInsurancePaid", _attr("basic_insurance_paid")),
        "criticalIllnessPaid": ("CostBurden.criticalIllnessPaid", _attr("critical_illness_paid")),
        "medicalAssistancePaid": (
            "CostBurden.medicalAssistancePaid",
            _attr("medical_assistance_paid"),
        ),
        "personalBurden": ("CostBurden.personalBurden", _attr("personal_burden")),
        "inpatientCount": ("CostBurden.inpatientCount", _attr("inpatient_count")),
    },
}


def _own_id(person: Any) -> Any:
    return person.id


def _owner_id(record: Any) -> Any:
    return record.person_id


def _resolver(
    guarded: str | None, getter: Getter, person_id: Callable[[Any], Any]
) -> Callable[..., Any]:
    if guarded is None:

        def structural(obj: Any, info: GraphQLResolveInfo[Any]) -> Any:
            context: RequestContext = info.context
            context.guard.people.add(person_id(obj))
            return getter(obj, context)

        return structural

    def guarded_field(obj: Any, info: GraphQLResolveInfo[Any]) -> Any:
        context: RequestContext = info.context
        return context.guard.release(guarded, person_id(obj), lambda: getter(obj, context))

    return guarded_field


def _bind_relations(schema: GraphQLSchema) -> None:
    """Relations resolve through ``schema.relations``; arguments arrive under their GraphQL
    names, already coerced by the scalars (``activeOn`` is a ``date``)."""
    person = schema.get_type("Person")
    household = schema.get_type("Household")
    assert isinstance(person, GraphQLObjectType)
    assert isinstance(household, GraphQLObjectType)

    def resolve_household(obj: Any, info: GraphQLResolveInfo[Any]) -> Any:
        household_id = relations.household_id(obj, info.context)
        return None if household_id is None else Household(household_id=household_id)

    def resolve_relief(
        obj: Any,
        info: GraphQLResolveInfo[Any],
        activeOn: date | None = None,
    ) -> Any:
        return relations.relief_statuses(obj, info.context, activeOn)

    def resolve_enrollments(
        obj: Any,
        info: GraphQLResolveInfo[Any],
        year: int | None = None,
    ) -> Any:
        return relations.enrollments(obj, info.context, year)

    def resolve_costs(
        obj: Any,
        info: GraphQLResolveInfo[Any],
        year: int | None = None,
    ) -> Any:
        return relations.cost_burdens(obj, info.context, year)

    def resolve_members(obj: Any, info: GraphQLResolveInfo[Any]) -> Any:
        return relations.household_members(obj.household_id, info.context)

    def resolve_household_id(obj: Any, _info: GraphQLResolveInfo[Any]) -> Any:
        return str(obj.household_id)

    def provenance_of(field: str, department: Callable[[Any], str | None]) -> Callable[..., Any]:
        def resolve(obj: Any, info: GraphQLResolveInfo[Any]) -> Any:
            return relations.record_provenance(field, obj, department(obj), info.context)

        return resolve

    for type_name, department in (
        ("ReliefStatus", lambda record: record.source_department),
        ("Enrollment", lambda _record: None),
        ("CostBurden", lambda _record: None),
    ):
        record_type = schema.get_type(type_name)
        assert isinstance(record_type, GraphQLObjectType)
        record_type.fields["provenance"].resolve = provenance_of(
            f"{type_name}.provenance", department
        )

    person.fields["household"].resolve = resolve_household
    person.fields["reliefStatuses"].resolve = resolve_relief
    person.fields["enrollments"].resolve = resolve_enrollments
    person.fields["costBurdens"].resolve = resolve_costs
    household.fields["members"].resolve = resolve_members
    household.fields["id"].resolve = resolve_household_id


def bind_field_resolvers(schema: GraphQLSchema) -> None:
    for type_name, fields in FIELDS.items():
        graphql_type = schema.get_type(type_name)
        assert isinstance(graphql_type, GraphQLObjectType), type_name
        leaves = {
            name
            for name, field in graphql_type.fields.items()
            if is_leaf_type(get_named_type(field.type))
        }
        missing = leaves - fields.keys()
        if missing:
            raise RuntimeError(f"leaf fields without a guard entry: {type_name}.{sorted(missing)}")
        person_id = _own_id if type_name == "Person" else _owner_id
        for field_name, (guarded, getter) in fields.items():
            graphql_type.fields[field_name].resolve = _resolver(guarded, getter, person_id)
    _bind_relations(schema)
