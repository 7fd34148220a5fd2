"""Running a query "as" a subject under a policy not (yet) in force: ``simulateAccess``.

    outcomes = await simulate(schema, officer_context, subject, purpose, query, variables,
                              current=OfflinePolicy(lines_in_force, version=7),
                              proposed=OfflinePolicy(proposed_lines, version=8))

Each run takes the path of a real request of that subject (``schema.scope``: decision →
row predicate → scoped storage → the same schema with its limits), including the purpose
refusal, on ONE connection that is read-only (PostgreSQL ``SET TRANSACTION READ ONLY``; SQLite
``PRAGMA query_only``) and only for queries: a mutation is refused before anything executes.
The answers are redacted before they leave this module (``authz.simulate``): the officer sees
shapes, error paths and head counts, never a person's values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
    get_variable_values,
    is_leaf_type,
    parse,
)
from graphql.execution.values import VariableValues
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType as StrawberryOperationType

from authz.decision import AccessDecision
from authz.offline import OfflinePolicy
from authz.purpose import named_purposes, purpose_refusal
from authz.simulate import READ_MARK, RunOutcome, SimulatedError, leaf_mark
from gateway.domain.errors import BadUserInput, Forbidden, GatewayError
from gateway.domain.principal import Principal, check_claims
from schema import scope as request_scope  # a module: it imports the schema, which imports us
from schema.arguments import included
from schema.context import RequestContext
from schema.messages import chinese
from schema.purposes import reads_person_data

log = logging.getLogger(__name__)

# The subject of a synthetic principal: who simulates, never a real token's subject.
SIMULATED_PREFIX = "simulation:"


def simulated_principal(
    officer: str, jurisdiction: str, department: str, level: str, region: str, roles: list[str]
) -> Principal:
    """The subject ``officer`` simulates, checked like a token's claims, and inside the
    officer's ``jurisdiction`` (a city officer simulates callers of its own city only)."""
    checked = check_claims(department, level, region, roles)
    if not region.startswith(jurisdiction):
        raise Forbidden(
            f"模拟对象的辖区 {region} 不在本安全管理员的辖区 {jurisdiction} 内, 不能模拟"
        )
    return Principal(
        f"{SIMULATED_PREFIX}{officer}",
        checked.department,
        checked.level,
        checked.region,
        checked.roles,
    )


def is_simulated(principal: Principal) -> bool:
    return principal.subject.startswith(SIMULATED_PREFIX)


def read_only_document(query: str) -> tuple[DocumentNode, OperationDefinitionNode]:
    """Parse the query to simulate: exactly one operation, and a query (never a mutation)."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        raise BadUserInput(f"模拟的查询有语法错误: {chinese(exc.message)}") from None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1:
        raise BadUserInput("模拟的查询须恰好包含一个操作")
    operation = get_operation_ast(document)
    assert operation is not None
    if operation.operation is not OperationType.QUERY:
        raise BadUserInput("模拟只能执行查询 (query), 不能执行变更或订阅: 模拟不写入任何数据")
    return document, operation


async def simulate(
    schema: strawberry.Schema,
    officer: RequestContext,
    *,
    principal: Principal,
    purpose: str,
    purpose_labels: Mapping[str, str],
    query: str,
    variables: dict[str, Any] | None,
    current: OfflinePolicy,
    proposed: OfflinePolicy,
) -> tuple[RunOutcome, RunOutcome]:
    """Run ``query`` as ``principal`` under ``current`` and then under ``proposed``."""
    document, operation = read_only_document(query)
    async with officer.engine.connect() as connection:
        await _read_only(connection)
        try:
            outcomes = []
            for label, policy in (("current", current), ("proposed", proposed)):
                outcomes.append(
                    await _run(
                        schema,
                        officer,
                        connection,
                        label=label,
                        policy=policy,
                        principal=principal,
                        purpose=purpose,
                        purpose_labels=purpose_labels,
                        query=query,
                        variables=variables,
                        document=document,
                        operation=operation,
                    )
                )
        finally:
            await connection.rollback()
            if connection.dialect.name == "sqlite":
                await connection.execute(text("PRAGMA query_only = OFF"))
                await connection.commit()
    return outcomes[0], outcomes[1]


async def _read_only(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SET TRANSACTION READ ONLY"))
    elif connection.dialect.name == "sqlite":
        await connection.execute(text("PRAGMA query_only = ON"))


async def _run(
    schema: strawberry.Schema,
    officer: RequestContext,
    connection: AsyncConnection,
    *,
    label: str,
    policy: OfflinePolicy,
    principal: Principal,
    purpose: str,
    purpose_labels: Mapping[str, str],
    query: str,
    variables: dict[str, Any] | None,
    document: DocumentNode,
    operation: OperationDefinitionNode,
) -> RunOutcome:
    decision = policy.decision(principal, purpose)
    purposes = named_purposes(policy.lines)
    if purposes and reads_person_data(query, None):
        refusal = purpose_refusal(
            decision,
            lambda other: policy.decision(principal, other),
            purposes,
            purpose_labels,
        )
        if refusal is not None:
            # A real request would be answered 403 before executing: nothing read.
            refused = SimulatedError((), Forbidden.code, refusal)
            return RunOutcome(policy.version, decision, None, (refused,), frozenset(), False)
    context = request_scope.scoped_context(
        connection,
        principal=principal,
        purpose=purpose,
        decision=decision,
        request_id=f"{officer.request_id}:{label}",
        today=officer.today,
        vault=officer.vault,
        max_page_size=officer.max_page_size,
        feeds=officer.feeds,
        engine=officer.engine,
        rules=officer.rules,
    )
    try:
        result = await schema.execute(
            query,
            variable_values=variables,
            context_value=context,
            allowed_operation_types={StrawberryOperationType.QUERY},
        )
    except InvalidOperationTypeError:  # pragma: no cover - refused by read_only_document
        raise BadUserInput("模拟只能执行查询 (query)") from None
    errors: list[SimulatedError] = []
    for error in result.errors or []:
        if isinstance(error.original_error, DBAPIError | OSError):
            raise error.original_error  # an outage, as for a real request
        errors.append(_simulated_error(error, context.request_id))
    data = redact(result.data, schema, document, operation, variables or {}, decision)
    guard = context.guard
    return RunOutcome(
        policy_version=policy.version,
        decision=decision,
        data=data,
        errors=tuple(errors),
        people=frozenset(guard.people),
        touched_person_data=guard.touched_person_data or bool(guard.people),
    )


def _simulated_error(error: GraphQLError, request_id: str) -> SimulatedError:
    path = tuple(str(step) for step in error.path or ())
    original = error.original_error
    if isinstance(original, GatewayError):
        return SimulatedError(path, original.code, original.message)
    if original is None or isinstance(original, GraphQLError):
        code = (
            "BAD_USER_INPUT"
            if error.message.startswith("Variable '$")
            else "GRAPHQL_VALIDATION_FAILED"
        )
        return SimulatedError(path, code, chinese(error.message))
    log.error(
        "simulation %s: unexpected %s at %s",
        request_id,
        type(original).__name__,
        path,
        exc_info=original,
    )
    return SimulatedError(path, "INTERNAL_SERVER_ERROR", "服务器内部错误")


# ---------------------------------------------------------------- redaction
def redact(
    data: Any,
    schema: strawberry.Schema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
    decision: AccessDecision,
) -> Any:
    """The answer with every non-null leaf replaced by its mark (``authz.simulate``), walking
    the query's selections (aliases, fragments, @skip/@include) to know each leaf's field."""
    if data is None:
        return None
    graphql_schema = schema._schema
    root = graphql_schema.query_type
    assert root is not None
    # The variables as execution coerced them (declared defaults applied), for @skip/@include.
    coerced = get_variable_values(
        graphql_schema, operation.variable_definitions or (), dict(variables)
    )
    if isinstance(coerced, list):  # pragma: no cover - refused before execution: no data
        return None
    walker = _Redactor(document, coerced, decision)
    return walker.object(data, root, [operation.selection_set])


class _Redactor:
    def __init__(
        self, document: DocumentNode, variables: VariableValues, decision: AccessDecision
    ) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.variables = variables
        self.decision = decision

    def object(
        self, value: dict[str, Any], type_: GraphQLObjectType, selections: list[SelectionSetNode]
    ) -> dict[str, Any]:
        fields = self.collect(type_, selections)
        redacted: dict[str, Any] = {}
        for key, item in value.items():
            nodes = fields.get(key)
            if not nodes or nodes[0].name.value.startswith("__"):
                redacted[key] = self.leaf(item, READ_MARK)
                continue
            name = nodes[0].name.value
            definition = type_.fields[name]
            sub = [n.selection_set for n in nodes if n.selection_set is not None]
            redacted[key] = self.value(item, definition.type, f"{type_.name}.{name}", sub)
        return redacted

    def value(
        self, item: Any, type_: GraphQLOutputType, field: str, sub: list[SelectionSetNode]
    ) -> Any:
        if item is None:
            return None
        if isinstance(type_, GraphQLNonNull):
            return self.value(item, type_.of_type, field, sub)
        if isinstance(type_, GraphQLList):
            return [self.value(element, type_.of_type, field, sub) for element in item]
        named = get_named_type(type_)
        if is_leaf_type(named) or not isinstance(named, GraphQLObjectType):
            return leaf_mark(field, self.decision)
        return self.object(item, named, sub)

    @staticmethod
    def leaf(item: Any, mark: str) -> Any:
        if item is None:
            return None
        if isinstance(item, list):
            return [_Redactor.leaf(element, mark) for element in item]
        return mark

    def collect(
        self, type_: GraphQLObjectType, selections: list[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        fields: dict[str, list[FieldNode]] = {}

        def visit(selection_set: SelectionSetNode, seen: frozenset[str]) -> None:
            for selection in selection_set.selections:
                if not self.included(selection):
                    continue
                if isinstance(selection, FieldNode):
                    key = selection.alias.value if selection.alias else selection.name.value
                    fields.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    if condition is None or condition.name.value == type_.name:
                        visit(selection.selection_set, seen)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if (
                        fragment is not None
                        and name not in seen
                        and fragment.type_condition.name.value == type_.name
                    ):
                        visit(fragment.selection_set, seen | {name})

        for selection_set in selections:
            visit(selection_set, frozenset())
        return fields

    def included(self, node: SelectionNode) -> bool:
        return included(node, self.variables)
