"""Compiled reads (issue 17): a query of people answered with one SQL statement per root field.

The GraphQL executor (strawberry over graphql-core) resolves a page of 50 people with their
records field by field: a couple of thousand resolver calls, each through the field guard.
For the queries departments send most — ``person(idNumber)`` and ``persons(...)`` with leaf
fields and the person's records — this module reads the document once, and per caller
decision compiles it into a plan: on PostgreSQL one statement per root field that selects
exactly the requested fields and relations under the caller's row predicate and returns the
response as JSON built by PostgreSQL (``gateway.storage.person_json``). Python then touches
only what the field guard must decide per person:

* sealed fields arrive as ciphertext; the guard releases them (opened by the vault, masked
  where the grant is a mask) — still the only code that releases a value;
* fields the decision denies arrive as ``null``; the guard refuses them per person, which gives
  the ``FORBIDDEN`` error at each path exactly as the executor would;
* a person seen only through a place outside the caller's region (fields follow the place,
  ``authz.compiler.PlaceNarrowing``) goes through the guard field by field, as in the executor;
* the audit learns the same people and fields (a guard of its own, merged on success).

What compiles: a valid query operation (aliases, fragments, inline fragments, ``@include`` /
``@skip``, variables, ``__typename``) whose root fields are ``person`` and ``persons``, with
the leaf fields of ``Person``, its ``reliefStatuses``, ``enrollments`` and ``costBurdens`` and
their leaf fields, and ``edges``/``node``/``cursor``/``pageInfo``/``totalCount``. Anything
else — other fields, mutations, a document the executor would refuse (syntax, validation,
limits, variables, a bad argument), SQLite, a person seen only through the caller's own
report — is answered by the executor, which stays the reference: the two are compared on
generated documents, subjects and policies in tests/test_compiled_reads.py.

Caches: a document by its text (parse, validation, limits); its collected fields by
operation and the values of the variables ``@include``/``@skip`` read; a plan by those, the
caller's decision and row scope (identity, kept alive by the entry and compared on every hit),
the place narrowing and the arguments' shape. Values vary through bind parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    get_named_type,
    located_error,
    validate,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.language import DirectiveNode, FragmentDefinitionNode, Visitor, visit

from authz.decision import AccessDecision, Effect
from authz.guard import FieldGuard
from gateway.domain.errors import GatewayError
from gateway.domain.places import PlaceKind
from gateway.storage.people import PersonCriteria
from gateway.storage.person_json import Out, Prepared, person_statement, persons_statement, prepare
from schema.context import RequestContext
from schema.fields import FIELDS
from schema.limits import LimitChecks, Lru
from schema.query import PersonFilter, page_request, person_lookup

# GraphQL type → field → (column, how it is written into the JSON: person_json.CONVERSIONS).
# Each must serialise exactly as the getter in ``schema.fields`` does (checked at import).
COLUMNS: dict[str, dict[str, tuple[str, str]]] = {
    "Person": {
        "id": ("id", "text"),
        "regionCode": ("region_code", "as_is"),
        "idNumber": ("id_number_ct", "hex"),
        "name": ("name_ct", "hex"),
        "phone": ("phone_ct", "hex"),
        "address": ("address_ct", "hex"),
        "gender": ("gender", "as_is"),
        "birthDate": ("birth_date", "as_is"),
        "underVerification": ("under_verification", "open_anomaly"),
    },
    "ReliefStatus": {
        "category": ("category", "as_is"),
        "sourceDepartment": ("source_department", "upper"),  # Department(value) → its name
        "recognizedOn": ("recognized_on", "as_is"),
        "validFrom": ("valid_from", "as_is"),
        "validTo": ("valid_to", "as_is"),
    },
    "Enrollment": {
        "year": ("year", "as_is"),
        "insuranceType": ("insurance_type", "as_is"),
        "status": ("status", "as_is"),
        "regionCode": ("region_code", "as_is"),
        "subsidyCategory": ("subsidy_category", "empty_null"),
        "subsidyAmount": ("subsidy_amount", "text"),  # Decimal → its text
    },
    "CostBurden": {
        "year": ("year", "as_is"),
        "totalCost": ("total_cost", "text"),
        "basicInsurancePaid": ("basic_insurance_paid", "text"),
        "criticalIllnessPaid": ("critical_illness_paid", "text"),
        "medicalAssistancePaid": ("medical_assistance_paid", "text"),
        "personalBurden": ("personal_burden", "text"),
        "inpatientCount": ("inpatient_count", "as_is"),
    },
}
if {t: set(f) for t, f in COLUMNS.items()} != {t: set(f) for t, f in FIELDS.items()}:
    raise RuntimeError("schema.compiled.COLUMNS and schema.fields.FIELDS disagree")

# Person relation field → (relation key, its argument, the argument's check, record type)
RELATIONS: dict[str, tuple[str, str, str | None, str]] = {
    "reliefStatuses": ("relief", "activeOn", "Person.reliefStatuses.activeOn", "ReliefStatus"),
    "enrollments": ("enrollment", "year", None, "Enrollment"),
    "costBurdens": ("cost", "year", None, "CostBurden"),
}

_COMPILABLE: dict[str, frozenset[str]] = {
    "Query": frozenset({"person", "persons"}),
    "PersonConnection": frozenset({"edges", "pageInfo", "totalCount"}),
    "PersonEdge": frozenset({"cursor", "node"}),
    "PageInfo": frozenset({"hasNextPage", "endCursor"}),
    "Person": frozenset(COLUMNS["Person"]) | frozenset(RELATIONS),
    **{name: frozenset(COLUMNS[name]) for name in ("ReliefStatus", "Enrollment", "CostBurden")},
}


class _Fallback(Exception):
    """This request is answered by the executor instead."""


# ------------------------------------------------------------------ the document, read once


@dataclass(frozen=True, slots=True)
class _Field:
    """A collected field: its response key, name, nodes and collected sub-fields."""

    key: str
    name: str
    nodes: tuple[FieldNode, ...]
    definition: GraphQLField | None  # None for __typename
    children: tuple[_Field, ...] = ()


@dataclass(slots=True)
class _Document:
    document: DocumentNode
    fragments: dict[str, FragmentDetails]
    # the variables @include / @skip read (their values shape the selection)
    directive_variables: tuple[str, ...]


class _DirectiveVariables(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_directive(self, node: DirectiveNode, *_args: object) -> None:
        for argument in node.arguments or ():
            if isinstance(argument.value, VariableNode):
                self.names.add(argument.value.name.value)


def _directive_variables(document: DocumentNode) -> tuple[str, ...]:
    found = _DirectiveVariables()
    visit(document, found)
    return tuple(sorted(found.names))


# ------------------------------------------------------------------ plans


STRUCTURAL, PLAIN, SEALED, RELATION = range(4)


@dataclass(frozen=True, slots=True)
class _Site:
    """Where the guard acts on an object of the response (a person or one of its records)."""

    key: str
    kind: int
    policy: str | None
    nodes: tuple[FieldNode, ...]
    effect: Effect = Effect.READ  # the decision's, before fields follow the place
    column: str | None = None  # a sealed column's name for the vault
    argument: str | None = None  # a relation argument's check, when the argument is given
    children: _ObjectPlan | None = None
    order: int = 0  # its place among the object's sites: errors are listed in field order


@dataclass(frozen=True, slots=True)
class _ObjectPlan:
    """What the guard does on each object of one selection: ``sites`` all of it, in field
    order (a person seen through a place); ``work`` what a person seen whole needs — sealed
    fields, denied fields, relations — and ``notes`` / ``adds_person`` the rest, once."""

    sites: tuple[_Site, ...]
    work: tuple[_Site, ...]
    notes: tuple[tuple[str, Effect], ...]
    adds_person: bool
    denied: tuple[_Site, ...]  # on a record: the denied fields (an error per record)


@dataclass(frozen=True, slots=True)
class _Root:
    key: str
    kind: str  # person, persons, typename
    nodes: tuple[FieldNode, ...]
    prepared: Prepared | None = None
    # persons: (edges key, (node key, person plan) …) per edges entry; person: its plan
    edges: tuple[tuple[str, tuple[tuple[str, _ObjectPlan], ...]], ...] = ()
    person: _ObjectPlan | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    decision: AccessDecision  # held so their ids in the cache key stay theirs
    predicate: object
    roots: tuple[_Root, ...]


@dataclass(slots=True)
class _Inputs:
    """One request's values: per root, what its checks produced; per relation, its argument."""

    roots: list[tuple[bytes | None, PersonCriteria | None, int, uuid.UUID | None]]
    relation_arguments: list[Any]
    shape: tuple[Hashable, ...] = ()


@dataclass(slots=True)
class _Run:
    guard: FieldGuard
    context: RequestContext
    # each error with its place in the response (root, edge, node, site, record, child site):
    # listed in that order, the order the executor's depth-first walk meets them
    errors: list[tuple[tuple[int, ...], GraphQLError]] = field(default_factory=list)
    seen_whole: set[int] = field(default_factory=set)  # ids of plans with notes to apply
    noted: list[_ObjectPlan] = field(default_factory=list)
    # sealed fields released to people seen whole, a column at a time: site → the objects,
    # person ids, paths and places in the response
    sealed: dict[int, tuple[_Site, list[_Cell]]] = field(default_factory=dict)


# a sealed field's cell: the object holding it, the person, its path and place
_Cell = tuple[dict[str, Any], Any, list[Any], tuple[int, ...]]


class CompiledReads:
    """Answers the compilable queries of one schema (see the module docstring)."""

    def __init__(self, schema: GraphQLSchema, checks: LimitChecks, *, cache_size: int = 1024):
        self._schema = schema
        self._checks = checks
        # negative entries (False): not compilable, answered by the executor
        self._documents: Lru[_Document | bool] = Lru(512)
        self._selections: Lru[tuple[_Field, ...] | bool] = Lru(1024)
        self._plans: Lru[_Plan] = Lru(cache_size)
        self.compiled = 0  # requests answered here, for tests and metrics
        self.fallbacks = 0

    def preload(self, texts: Sequence[str]) -> int:
        """Read documents ahead (the trusted documents of pinned departments: their first
        request is then as cheap as the next); how many will compile."""
        return sum(1 for text in texts if self._document(text) is not None)

    # -------------------------------------------------------------- entry point
    async def execute(
        self,
        text: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: RequestContext,
    ) -> ExecutionResult | None:
        """The result, or None when the executor must answer (nothing was done then)."""
        try:
            result = await self._execute(text, variables or {}, operation_name, context)
        except _Fallback:
            result = None
        if result is None:
            self.fallbacks += 1
        else:
            self.compiled += 1
        return result

    async def _execute(
        self,
        text: str,
        raw_variables: dict[str, Any],
        operation_name: str | None,
        context: RequestContext,
    ) -> ExecutionResult | None:
        if not context.people.embeds:  # PostgreSQL only: SQLite has no json_agg of this kind
            return None
        document = self._document(text)
        if document is None:
            return None
        operation = _operation(document.document, operation_name)
        if operation is None or operation.operation is not OperationType.QUERY:
            return None
        if self._checks.cost_refusals(
            self._schema, document.document, text, operation_name, raw_variables
        ):
            return None
        variables = get_variable_values(
            self._schema, operation.variable_definitions or (), raw_variables
        )
        if isinstance(variables, list):
            return None
        directive_values = tuple(
            variables.coerced.get(name) for name in document.directive_variables
        )
        selection_key = (text, operation_name, directive_values)
        roots = self._selections.get(
            selection_key, lambda: self._collect(document, operation, variables) or False
        )
        if not isinstance(roots, tuple):
            return None
        guard = FieldGuard(context.guard.decision)
        inputs = self._inputs(roots, variables, guard, context)
        plan = self._plan(selection_key, roots, inputs, context)
        run = _Run(guard, context)
        data = await self._run(plan, inputs, run)
        _merge(guard, context.guard)
        errors = [error for _, error in sorted(run.errors, key=lambda entry: entry[0])]
        return ExecutionResult(data, errors or None)

    # -------------------------------------------------------------- reading the document
    def _document(self, text: str) -> _Document | None:
        found = self._documents.get(text, lambda: self._read(text) or False)
        return found if isinstance(found, _Document) else None

    def _read(self, text: str) -> _Document | None:
        """The document when the executor would run it: parsed within the limits, valid."""
        try:
            document = self._checks.parse(text)
        except GraphQLError:
            return None
        if self._checks.shape_refusal(document, text) is not None:
            return None
        if validate(self._schema, document):
            return None
        fragments: dict[str, FragmentDetails] = {}
        for definition in document.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                if definition.variable_definitions:  # fragment arguments: experimental
                    return None
                fragments[definition.name.value] = FragmentDetails(definition)
        return _Document(document, fragments, _directive_variables(document))

    def _collect(
        self, document: _Document, operation: OperationDefinitionNode, variables: VariableValues
    ) -> tuple[_Field, ...] | None:
        query = self._schema.query_type
        assert query is not None
        collected = collect_fields(self._schema, document.fragments, variables, query, operation)
        if collected.new_defer_usages or collected.forbidden_directive_instances:
            return None
        roots = self._fields(collected.grouped_field_set, query, document, operation, variables)
        if roots is None or not any(f.name in ("person", "persons") for f in roots):
            return None
        return roots

    def _fields(
        self,
        grouped: dict[str, list[FieldDetails]],
        parent: GraphQLObjectType,
        document: _Document,
        operation: OperationDefinitionNode,
        variables: VariableValues,
    ) -> tuple[_Field, ...] | None:
        fields: list[_Field] = []
        allowed = _COMPILABLE.get(parent.name, frozenset())
        for key, details in grouped.items():
            if any(d.defer_usage is not None or d.fragment_variable_values for d in details):
                return None
            nodes = tuple(d.node for d in details)
            name = nodes[0].name.value
            if name == "__typename":
                fields.append(_Field(key, name, nodes, None))
                continue
            if name not in allowed:
                return None
            definition = parent.fields[name]
            named = get_named_type(definition.type)
            children: tuple[_Field, ...] = ()
            if isinstance(named, GraphQLObjectType):
                sub = collect_subfields(
                    self._schema, document.fragments, variables, operation, named, list(details)
                )
                if sub.new_defer_usages or sub.forbidden_directive_instances:
                    return None
                found = self._fields(sub.grouped_field_set, named, document, operation, variables)
                if found is None:
                    return None
                children = found
            fields.append(_Field(key, name, nodes, definition, children))
        return tuple(fields)

    # -------------------------------------------------------------- one request's values
    def _inputs(
        self,
        roots: tuple[_Field, ...],
        variables: VariableValues,
        guard: FieldGuard,
        context: RequestContext,
    ) -> _Inputs:
        """Each root's checks, as its resolver runs them (``schema.query``): a refusal or a bad
        argument is the executor's to report."""
        inputs = _Inputs([], [])
        shape: list[Hashable] = []
        try:
            for root in roots:
                if root.definition is None:
                    inputs.roots.append((None, None, 0, None))
                    shape.append("typename")
                    continue
                arguments = get_argument_values(root.definition, root.nodes[0], variables)
                if root.name == "person":
                    index = person_lookup(guard, context, arguments["idNumber"])
                    inputs.roots.append((index, None, 0, None))
                    shape.append("person")
                    self._relation_arguments(root.children, variables, inputs, shape)
                else:
                    given = arguments.get("filter")
                    person_filter = None if given is None else _person_filter(given)
                    first = arguments["first"]
                    criteria, after = page_request(
                        guard, context, person_filter, first, arguments.get("after")
                    )
                    inputs.roots.append((None, criteria, first, after))
                    shape.append(("persons", criteria, after is not None))
                    for part in root.children:
                        if part.name == "edges":
                            for node in part.children:
                                if node.name == "node":
                                    self._relation_arguments(
                                        node.children, variables, inputs, shape
                                    )
        except (GatewayError, GraphQLError):
            raise _Fallback from None
        inputs.shape = tuple(shape)
        return inputs

    @staticmethod
    def _relation_arguments(
        fields: tuple[_Field, ...], variables: VariableValues, inputs: _Inputs, shape: list[Any]
    ) -> None:
        for f in fields:
            if f.name in RELATIONS and f.definition is not None:
                argument_name = RELATIONS[f.name][1]
                value = get_argument_values(f.definition, f.nodes[0], variables).get(argument_name)
                inputs.relation_arguments.append(value)
                shape.append(value is not None)

    # -------------------------------------------------------------- compiling
    def _plan(
        self,
        selection_key: tuple[Hashable, ...],
        roots: tuple[_Field, ...],
        inputs: _Inputs,
        context: RequestContext,
    ) -> _Plan:
        decision = context.guard.decision
        predicate = context.people.predicate
        key = (selection_key, id(decision), id(predicate), context.narrowing, inputs.shape)
        plan = self._plans.peek(key)
        if plan is not None and plan.decision is decision and plan.predicate is predicate:
            return plan
        return self._plans.put(key, self._compile(roots, inputs, context))

    def _compile(
        self, roots: tuple[_Field, ...], inputs: _Inputs, context: RequestContext
    ) -> _Plan:
        decision = context.guard.decision
        people = context.people
        places = None if context.narrowing is None else context.narrowing.kinds_held()
        arguments = iter(inputs.relation_arguments)
        parameters = _Parameters()
        compiled: list[_Root] = []
        for root, (_index, criteria, _first, after) in zip(roots, inputs.roots, strict=True):
            if root.definition is None:
                compiled.append(_Root(root.key, "typename", root.nodes))
            elif root.name == "person":
                outs, plan = _object("Person", root.children, decision, arguments, parameters)
                stmt = person_statement(people, outs, places)
                prepared = prepare(stmt, people.dialect)
                compiled.append(_Root(root.key, "person", root.nodes, prepared, person=plan))
            else:
                assert criteria is not None
                outs_list: list[Out] = []
                edges: list[tuple[str, tuple[tuple[str, _ObjectPlan], ...]]] = []
                for part in root.children:
                    if part.name == "edges":
                        edge_outs, nodes = _edge(part.children, decision, arguments, parameters)
                        outs_list.append(Out(part.key, "edges", fields=edge_outs))
                        edges.append((part.key, nodes))
                    elif part.name == "pageInfo":
                        outs_list.append(Out(part.key, "page_info", fields=_page_info(part)))
                    elif part.name == "totalCount":
                        outs_list.append(Out(part.key, "total_count"))
                    else:
                        outs_list.append(Out(part.key, "typename", "PersonConnection"))
                stmt = persons_statement(
                    people,
                    criteria,
                    after=after is not None,
                    fields=tuple(outs_list),
                    places=places,
                )
                prepared = prepare(stmt, people.dialect)
                compiled.append(
                    _Root(root.key, "persons", root.nodes, prepared, edges=tuple(edges))
                )
        return _Plan(decision, people.predicate, tuple(compiled))

    # -------------------------------------------------------------- running
    async def _run(self, plan: _Plan, inputs: _Inputs, run: _Run) -> dict[str, Any]:
        context = run.context
        data: dict[str, Any] = {}
        arguments = inputs.relation_arguments
        values: dict[str, Any] = {f"relation_{i}": v for i, v in enumerate(arguments)}
        for r, (root, (index, _criteria, first, after)) in enumerate(
            zip(plan.roots, inputs.roots, strict=True)
        ):
            if root.kind == "typename":
                data[root.key] = "Query"
                continue
            assert root.prepared is not None
            if root.kind == "person":
                row = await context.people.execute_driver_sql(
                    root.prepared.sql, root.prepared.arguments({**values, "bidx": index})
                )
                if row is None:
                    data[root.key] = None
                    continue
                person_id = row[1]
                _narrow(run, [(person_id, row[2])])
                person = orjson.loads(row[0])
                assert root.person is not None
                _person_sites(run, person, person_id, root.person, [root.key], (r,))
                data[root.key] = person
            else:
                given = {**values, "limit": first + 1, "first": first}
                if after is not None:
                    given["after"] = after
                row = await context.people.execute_driver_sql(
                    root.prepared.sql, root.prepared.arguments(given)
                )
                connection = orjson.loads(row[0])
                ids = row[1] or []
                if row[2] is not None:
                    _narrow(run, list(zip(ids, orjson.loads(row[2]), strict=True)))
                for e, (edges_key, nodes) in enumerate(root.edges):
                    for i, edge in enumerate(connection[edges_key]):
                        for n, (node_key, person_plan) in enumerate(nodes):
                            path: list[str | int] = [root.key, edges_key, i, node_key]
                            person = edge[node_key]
                            _person_sites(run, person, ids[i], person_plan, path, (r, e, i, n))
                data[root.key] = connection
        for noted in run.noted:
            for policy, effect in noted.notes:
                run.guard.released.setdefault(policy, effect)
        _release_columns(run)
        return data


# ------------------------------------------------------------------ compiling, per object


class _Parameters:
    """Names the bind parameters of relation arguments in the order ``_Inputs`` lists them."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> str:
        name = f"relation_{self.count}"
        self.count += 1
        return name


def _object(
    type_name: str,
    fields: tuple[_Field, ...],
    decision: AccessDecision,
    arguments: Any,
    parameters: _Parameters,
) -> tuple[tuple[Out, ...], _ObjectPlan]:
    outs: list[Out] = []
    sites: list[_Site] = []
    guarded = FIELDS[type_name]
    for f in fields:
        if f.definition is None:
            outs.append(Out(f.key, "typename", type_name))
            continue
        if f.name in RELATIONS:
            relation, _argument, check, record_type = RELATIONS[f.name]
            policy = f"Person.{f.name}"
            given = next(arguments)
            parameter = parameters.next()
            record_outs, records = _object(record_type, f.children, decision, iter(()), parameters)
            argument_check = check if given is not None else None
            follows = decision.effect(policy) is Effect.READ and (
                argument_check is None or _permits_argument(decision, argument_check)
            )
            if follows:
                outs.append(
                    Out(
                        f.key,
                        "records",
                        relation,
                        param=parameter if given is not None else None,
                        fields=record_outs,
                    )
                )
            else:
                outs.append(Out(f.key, "null"))
            sites.append(
                _Site(
                    f.key,
                    RELATION,
                    policy,
                    f.nodes,
                    decision.effect(policy),
                    argument=argument_check,
                    children=records,
                    order=len(sites),
                )
            )
            continue
        column, convert = COLUMNS[type_name][f.name]
        policy_name = guarded[f.name][0]
        if policy_name is None:
            outs.append(Out(f.key, "column", column, convert))
            sites.append(_Site(f.key, STRUCTURAL, None, f.nodes, order=len(sites)))
            continue
        effect = decision.effect(policy_name)
        kind = SEALED if convert == "hex" else PLAIN
        if effect is Effect.DENY:
            outs.append(Out(f.key, "null"))
        else:
            outs.append(Out(f.key, "column", column, convert))
        sealed = column.removesuffix("_ct") if kind == SEALED else None
        sites.append(
            _Site(f.key, kind, policy_name, f.nodes, effect, column=sealed, order=len(sites))
        )
    work = tuple(
        s
        for s in sites
        if s.kind in (SEALED, RELATION) or (s.kind == PLAIN and s.effect is Effect.DENY)
    )
    notes = tuple(
        (s.policy, s.effect)
        for s in sites
        if s.kind == PLAIN and s.effect is not Effect.DENY and s.policy is not None
    )
    adds = any(
        s.kind == STRUCTURAL or (s.kind in (PLAIN, SEALED) and s.effect is not Effect.DENY)
        for s in sites
    )
    denied = tuple(s for s in sites if s.kind == PLAIN and s.effect is Effect.DENY)
    return tuple(outs), _ObjectPlan(tuple(sites), work, notes, adds, denied)


def _permits_argument(decision: AccessDecision, check: str) -> bool:
    return FieldGuard(decision).permits_argument(check)


def _edge(
    fields: tuple[_Field, ...],
    decision: AccessDecision,
    arguments: Any,
    parameters: _Parameters,
) -> tuple[tuple[Out, ...], tuple[tuple[str, _ObjectPlan], ...]]:
    outs: list[Out] = []
    nodes: list[tuple[str, _ObjectPlan]] = []
    for f in fields:
        if f.name == "cursor":
            outs.append(Out(f.key, "cursor"))
        elif f.name == "node":
            person_outs, plan = _object("Person", f.children, decision, arguments, parameters)
            outs.append(Out(f.key, "node", fields=person_outs))
            nodes.append((f.key, plan))
        else:
            outs.append(Out(f.key, "typename", "PersonEdge"))
    return tuple(outs), tuple(nodes)


def _page_info(part: _Field) -> tuple[Out, ...]:
    kinds = {"hasNextPage": "has_next_page", "endCursor": "end_cursor"}
    return tuple(
        Out(f.key, "typename", "PageInfo") if f.definition is None else Out(f.key, kinds[f.name])
        for f in part.children
    )


# ------------------------------------------------------------------ running, per object


def _narrow(run: _Run, people: Sequence[tuple[uuid.UUID, Sequence[str] | None]]) -> None:
    """Fields follow the place, as ``schema.scope``'s ``narrow`` decides them: a person living
    outside the caller's region is seen through the places it holds there. A person seen only
    through the caller's own report is the executor's (the report's view)."""
    narrowing = run.context.narrowing
    outside = [(person_id, kinds) for person_id, kinds in people if kinds is not None]
    if narrowing is None or not outside:
        return
    held = [(person_id, kind) for person_id, kinds in outside for kind in kinds]
    for person_id, kinds in narrowing.narrowed([p for p, _ in outside], held).items():
        if kinds == {PlaceKind.REPORTED}:
            raise _Fallback
        run.guard.narrow(person_id, kinds)


def _person_sites(
    run: _Run,
    person: dict[str, Any],
    person_id: uuid.UUID,
    plan: _ObjectPlan,
    path: list[Any],
    order: tuple[int, ...],
) -> None:
    guard = run.guard
    if guard.narrowed(person_id) is None:  # seen whole: the decision's fields
        if plan.adds_person:
            guard.people.add(person_id)
        if plan.notes and id(plan) not in run.seen_whole:
            run.seen_whole.add(id(plan))
            run.noted.append(plan)
        for site in plan.work:
            if site.kind == SEALED and site.effect is not Effect.DENY:
                column = run.sealed.get(id(site))
                if column is None:
                    column = run.sealed[id(site)] = (site, [])
                column[1].append((person, person_id, path, order))
            else:
                _site(run, person, person_id, site, path, order, whole=True)
    else:  # seen through a place: every field through the guard, as the executor does
        for site in plan.sites:
            _site(run, person, person_id, site, path, order, whole=False)


def _site(
    run: _Run,
    obj: dict[str, Any],
    person_id: uuid.UUID,
    site: _Site,
    path: list[Any],
    order: tuple[int, ...],
    *,
    whole: bool,
) -> None:
    guard = run.guard
    key = site.key
    if site.kind == STRUCTURAL:
        guard.people.add(person_id)
        return
    if site.kind == RELATION:
        try:
            assert site.policy is not None
            guard.relation(site.policy, person_id)
            if site.argument is not None:
                guard.require_argument(site.argument)
        except Exception as error:  # as the executor: an error at the path
            obj[key] = None
            run.errors.append(
                ((*order, site.order), located_error(error, list(site.nodes), [*path, key]))
            )
            return
        records = obj[key]
        children = site.children
        if not records or children is None:
            return
        if whole:
            if children.notes and id(children) not in run.seen_whole:
                run.seen_whole.add(id(children))
                run.noted.append(children)
            if children.denied:
                for i, record in enumerate(records):
                    for child in children.denied:
                        where = [*path, key, i]
                        _release(run, record, person_id, child, where, (*order, site.order, i))
        else:
            for i, record in enumerate(records):
                for child in children.sites:
                    where = [*path, key, i]
                    inside = (*order, site.order, i)
                    _site(run, record, person_id, child, where, inside, whole=False)
        return
    _release(run, obj, person_id, site, path, order)


def _release_columns(run: _Run) -> None:
    """The sealed fields of the people seen whole, a column at a time (``release_many``: the
    same values, masks and notes as one ``release`` each). A value that fails to open is
    ``null`` with its error at its path, as in the executor."""
    guard, vault = run.guard, run.context.vault
    for site, cells in run.sealed.values():
        key, column, policy = site.key, site.column, site.policy
        assert column is not None
        assert policy is not None
        person_ids = [person_id for _obj, person_id, _path, _order in cells]
        sealed = [obj[key] for obj, _person_id, _path, _order in cells]

        def reveal(i: int) -> Any:
            value = sealed[i]  # noqa: B023 - used at once, inside this iteration
            opened = None if value is None else bytes.fromhex(value)
            return vault.open_sealed(opened, column, person_ids[i])  # noqa: B023

        released = guard.release_many(policy, person_ids, reveal)
        for (obj, _person_id, path, order), value in zip(cells, released, strict=True):
            if isinstance(value, Exception):
                obj[key] = None
                error = located_error(value, list(site.nodes), [*path, key])
                run.errors.append(((*order, site.order), error))
            else:
                obj[key] = value


def _release(
    run: _Run,
    obj: dict[str, Any],
    person_id: uuid.UUID,
    site: _Site,
    path: list[Any],
    order: tuple[int, ...],
) -> None:
    key = site.key
    value = obj[key]
    assert site.policy is not None
    reveal: Callable[[], Any]
    if site.kind == SEALED:
        vault, column = run.context.vault, site.column
        assert column is not None

        def reveal() -> Any:
            sealed = None if value is None else bytes.fromhex(value)
            return vault.open_sealed(sealed, column, person_id)

    else:

        def reveal() -> Any:
            return value

    try:
        obj[key] = run.guard.release(site.policy, person_id, reveal)
    except Exception as error:  # as the executor: an error at the path
        obj[key] = None
        run.errors.append(
            ((*order, site.order), located_error(error, list(site.nodes), [*path, key]))
        )


# ------------------------------------------------------------------ small helpers


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    for operation in operations:
        if operation.name is not None and operation.name.value == name:
            return operation
    return None


def _person_filter(given: Any) -> PersonFilter:
    return PersonFilter(
        region_prefix=given.get("regionPrefix"),
        category=given.get("category"),
        active_on=given.get("activeOn"),
        enrolled_in=given.get("enrolledIn"),
    )


def _merge(guard: FieldGuard, into: FieldGuard) -> None:
    """What the compiled read released and whom it saw, into the request's guard (the audit
    entry is written from that one)."""
    for name, effect in guard.released.items():
        into.released.setdefault(name, effect)
    into.people.update(guard.people)
    into.touched_person_data = into.touched_person_data or guard.touched_person_data
