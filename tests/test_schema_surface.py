"""The schema's surface is a decision: contract names, enum values and the guard catalogue."""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    get_named_type,
    is_leaf_type,
)

from authz.resources import GUARDED_FIELDS
from gateway.domain.departments import RELIEF_CATEGORIES, Department
from schema import build_schema
from schema.fields import FIELDS
from tests.expectations import ALWAYS_READABLE

# Fields every reader of a visible row gets (docs/api.md "Contract notes"), stated once for the
# tests in tests/expectations.py; everything else is guarded.
STRUCTURAL = ALWAYS_READABLE


def test_root_fields_are_the_contracts() -> None:
    """The core's fields plus the names CONTRACT.md fixes ("Names for the capabilities that
    follow") for ingest and the closed loop; Person.effectiveRelief is pinned below."""
    schema = build_schema()._schema
    assert set(schema.query_type.fields) == {
        "me",
        "person",
        "persons",
        "batches",
        "anomalies",
        "warnings",
        "tasks",
        "reliefChain",
        "coverage",
        "statistics",
        "auditLog",  # issue 5: officers read the audit log
        "auditChain",
        "policies",  # issue 5: policy administration (security officers)
        "policyVersions",
        "policyProposals",
        "policyProposal",
        "policyMatrix",
        "simulateAccess",  # issue 5: simulation and explanation (security officers)
        "explainAccess",
        "task",  # issue 18: one task (its read receipt)
        "webhookEndpoints",  # issue 18: push delivery to department systems
        "webhookDeliveries",
    }
    assert schema.mutation_type is not None
    assert set(schema.mutation_type.fields) == {
        "submitRecords",
        "resolveAnomaly",
        "answerTask",
        "proposePolicyChange",  # issue 5
        "proposePolicyRollback",
        "approvePolicyChange",
        "rejectPolicyChange",
        "acknowledgeTasks",  # issue 18: receipts and push delivery
        "registerWebhookEndpoint",
        "rotateWebhookSecret",
        "disableWebhookEndpoint",
        "replayDeliveries",
    }
    # issue 18: live worklists over Server-Sent Events (CONTRACT: "GraphQL subscriptions over SSE")
    assert schema.subscription_type is not None
    assert set(schema.subscription_type.fields) == {"worklistEvents"}


def test_the_loop_uses_the_contracts_argument_names() -> None:
    schema = build_schema()._schema
    query = schema.query_type.fields
    assert set(query["reliefChain"].args) == {"idNumber"}
    assert set(query["coverage"].args) == {"regionPrefix", "year"}
    for connection in ("warnings", "tasks"):
        assert {"filter", "first", "after"} <= set(query[connection].args), connection
    person = schema.get_type("Person")
    assert isinstance(person, GraphQLObjectType)
    relief = person.fields["effectiveRelief"]
    assert isinstance(relief.args["on"].type, GraphQLNonNull)
    assert str(relief.args["on"].type.of_type) == "Date"


def test_relief_category_enum_matches_the_domain() -> None:
    enum = build_schema()._schema.get_type("ReliefCategory")
    assert isinstance(enum, GraphQLEnumType)
    assert set(enum.values) == RELIEF_CATEGORIES


def test_department_enum_matches_the_token_codes() -> None:
    enum = build_schema()._schema.get_type("Department")
    assert isinstance(enum, GraphQLEnumType)
    assert set(enum.values) == {d.name for d in Department}


def test_every_record_field_is_guarded_or_structural() -> None:
    schema = build_schema()._schema
    for type_name in ("Person", "Household", "ReliefStatus", "Enrollment", "CostBurden"):
        graphql_type = schema.get_type(type_name)
        assert isinstance(graphql_type, GraphQLObjectType)
        for field_name in graphql_type.fields:
            name = f"{type_name}.{field_name}"
            assert name in GUARDED_FIELDS or name in STRUCTURAL, f"{name} has no guard"


def test_guarded_fields_are_nullable_so_a_denial_cannot_null_the_person() -> None:
    schema = build_schema()._schema
    for name in GUARDED_FIELDS:
        type_name, field_name = name.split(".")
        graphql_type = schema.get_type(type_name)
        assert isinstance(graphql_type, GraphQLObjectType)
        assert not str(graphql_type.fields[field_name].type).endswith("!"), name


def test_every_leaf_field_has_a_bound_resolver_entry() -> None:
    schema = build_schema()._schema
    for type_name, entries in FIELDS.items():
        graphql_type = schema.get_type(type_name)
        assert isinstance(graphql_type, GraphQLObjectType)
        leaves = {n for n, f in graphql_type.fields.items() if is_leaf_type(get_named_type(f.type))}
        assert leaves == set(entries), type_name


def test_anomaly_kinds_match_what_ingest_opens() -> None:
    """Every kind the pipeline can open is a GraphQL enum value (else reading it would fail)."""
    from adapters.apply import AnomalyKind

    enum = build_schema()._schema.get_type("AnomalyKind")
    assert isinstance(enum, GraphQLEnumType)
    assert set(enum.values) == {kind.value for kind in AnomalyKind}
