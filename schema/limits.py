"""Query-shape limits against query-shaped denial of service, all on by default
(RELIEF_MAX_QUERY_*; docs/security.md "Hardening"):

    limit              refused when                                       checked
    tokens             the document has more lexer tokens                 while parsing (stops)
    operations         more operation definitions in one document         after parsing
    depth              fields nested deeper                               after parsing
    aliases            more aliased fields                                after parsing
    directives         more directives (anywhere in the document)         after parsing
    cost               more objects could be returned (``schema.cost``)   after validation

Every refusal happens before anything executes and is ONE error, ``QUERY_TOO_COMPLEX`` with the
figures and the limits. The shape limits are checked before validation: validation reports
each unknown directive, field or fragment separately (2,000 unknown directives made 100
errors, graphql-core's cap, and the work of finding them), and a limit exists to bound that
work. The cost needs a valid document (field types), so it comes after validation.

strawberry's own limiters add validation rules built per request, which defeats the validation
cache; here each distinct query text is walked once and its shape remembered (keyed by the
text: hashing a parsed document walks the whole tree). Depth follows fragments, each fragment
measured once (a chain of fragments each spreading the next twice is 2^n paths, not n). The
cost depends on page-size variables (``first: $n``), so it is remembered per text, operation
and the values of those variables only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Generic, TypeVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Visitor,
    get_operation_ast,
    parse,
    visit,
)
from graphql.language import DirectiveNode
from strawberry.extensions import SchemaExtension

from gateway.domain.errors import BadUserInput, QueryTooComplex
from gateway.domain.settings import Settings
from schema.cost import DEFAULT_LIST_ESTIMATE, DEFAULT_LIST_ESTIMATES, CostModel, estimate_cost
from schema.cost import page_variables as find_page_variables

# graphql-core's parser, when it aborts at max_tokens
TOKEN_LIMIT_MESSAGE = "Document contains more than"  # noqa: S105 - an error text, not a token


@dataclass(frozen=True)
class QueryLimits:
    """The limits one schema enforces (``QueryLimits.from_settings``)."""

    max_depth: int = 10
    max_aliases: int = 50
    max_tokens: int = 5000
    max_directives: int = 50
    max_operations: int = 5
    max_cost: int = 50_000
    max_page_size: int = 200
    list_estimates: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIST_ESTIMATES))
    default_list_estimate: int = DEFAULT_LIST_ESTIMATE

    @classmethod
    def from_settings(cls, settings: Settings) -> QueryLimits:
        """RELIEF_MAX_QUERY_* and friends; cost estimates on top of the defaults."""
        return cls(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_tokens=settings.max_query_tokens,
            max_directives=settings.max_query_directives,
            max_operations=settings.max_operations,
            max_cost=settings.max_query_cost,
            max_page_size=settings.max_page_size,
            list_estimates={**DEFAULT_LIST_ESTIMATES, **settings.query_cost_estimates},
        )

    @property
    def cost_model(self) -> CostModel:
        return CostModel(self.max_page_size, self.list_estimates, self.default_list_estimate)


@dataclass(frozen=True)
class Shape:
    depth: int
    aliases: int
    directives: int
    operations: int
    page_variables: frozenset[str]


def measure(document: DocumentNode) -> Shape:
    """Depth (following fragments), aliases, directives and operations of ``document``, which
    need not be valid (unknown fragments add nothing; a cycle is counted once round)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    fragment_depths: dict[str, int] = {}

    def depth(selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value.startswith("__"):
                    # Introspection (GraphiQL's schema query nests ~13 levels of ofType) reads
                    # the schema, not data; production turns it off altogether.
                    continue
                deepest = max(deepest, 1 + depth(selection.selection_set))
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, depth(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                deepest = max(deepest, fragment_depth(selection.name.value))
        return deepest

    def fragment_depth(name: str) -> int:
        if name not in fragment_depths:
            fragment_depths[name] = 0  # a cycle (a validation error) ends here
            if name in fragments:
                fragment_depths[name] = depth(fragments[name].selection_set)
        return fragment_depths[name]

    counts = _Counts()
    visit(document, counts)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return Shape(
        depth=max((depth(o.selection_set) for o in operations), default=0),
        aliases=counts.aliases,
        directives=counts.directives,
        operations=len(operations),
        page_variables=find_page_variables(document),
    )


class _Counts(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.aliases = 0
        self.directives = 0

    def enter_field(self, node: FieldNode, *_args: object) -> None:
        if node.alias is not None:
            self.aliases += 1

    def enter_directive(self, _node: DirectiveNode, *_args: object) -> None:
        self.directives += 1


V = TypeVar("V")


class Lru(Generic[V]):
    """A small LRU for what reading documents computes (keyed by query text — a ``str`` caches
    its own hash — or by tuples of it); compiled reads keep their plans in one too."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.entries: OrderedDict[object, V] = OrderedDict()

    def get(self, key: object, compute: Callable[[], V]) -> V:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        return self.put(key, compute())

    def peek(self, key: object) -> V | None:
        """The entry, most recently used now, or None."""
        if key not in self.entries:
            return None
        self.entries.move_to_end(key)
        return self.entries[key]

    def put(self, key: object, value: V) -> V:
        self.entries[key] = value
        if len(self.entries) > self.maxsize:
            self.entries.popitem(last=False)
        return value


def shape_refusals(shape: Shape, limits: QueryLimits) -> list[str]:
    checks = (
        (shape.operations, limits.max_operations, "文档中的操作过多: {} 个, 上限 {} 个"),
        (shape.depth, limits.max_depth, "查询嵌套过深: {} 层, 上限 {} 层"),
        (shape.aliases, limits.max_aliases, "别名过多: {} 个, 上限 {} 个"),
        (shape.directives, limits.max_directives, "指令过多: {} 个, 上限 {} 个"),
    )
    return [message.format(found, limit) for found, limit, message in checks if found > limit]


def _refusal(message: str) -> GraphQLError:
    return GraphQLError(message, original_error=QueryTooComplex(message))


def _shape_refusal(refusals: list[str]) -> GraphQLError:
    """One error however many shape limits the document exceeds."""
    return _refusal("; ".join(refusals))


def _bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, original_error=BadUserInput(message))


class LimitChecks:
    """The checks of one schema's limits, with their caches: used by the two extensions below
    and by compiled reads (``schema.compiled``), which admit a document exactly when the
    executor would run it."""

    def __init__(self, limits: QueryLimits) -> None:
        self.limits = limits
        self._parse = lru_cache(maxsize=512)(self._parse_uncached)
        self._shapes: Lru[Shape] = Lru(1024)
        self._costs: Lru[int] = Lru(4096)

    @staticmethod
    def _parse_uncached(text: str, max_tokens: int) -> DocumentNode:
        return parse(text, max_tokens=max_tokens)

    def parse(self, text: str) -> DocumentNode:
        """The document (cached by text); a ``GraphQLError`` for a syntax error or a document
        over the token limit (refusals are not cached)."""
        try:
            # graphql-core's parser stops after max_tokens: an oversized document costs no more
            # than a legal one to refuse.
            return self._parse(text, self.limits.max_tokens)
        except GraphQLSyntaxError as error:
            if TOKEN_LIMIT_MESSAGE not in error.message:
                raise
            raise _refusal(f"查询文本过长: 超过 {self.limits.max_tokens} 个词法单元") from None

    def shape(self, document: DocumentNode, text: str | None) -> Shape:
        return self._shapes.get(text, lambda: measure(document)) if text else measure(document)

    def shape_refusal(self, document: DocumentNode, text: str | None) -> GraphQLError | None:
        refusals = shape_refusals(self.shape(document, text), self.limits)
        return _shape_refusal(refusals) if refusals else None

    def cost_refusals(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        text: str | None,
        name: str | None,
        variables: Mapping[str, object],
    ) -> list[GraphQLError]:
        """What the request named (``name``: strawberry's operation_name falls back to the
        first operation's, and would run it where the GraphQL spec requires an error) and the
        cost of that operation with these page sizes."""
        shape = self.shape(document, text)
        if name is None and shape.operations > 1:
            return [_bad_input("文档包含多个操作时必须提供 operationName")]
        operation = get_operation_ast(document, name)
        if operation is None:
            return []  # an unknown operationName is refused before validation
        page_values = tuple(_page_value(variables, v) for v in sorted(shape.page_variables))
        limits = self.limits

        def compute() -> int:
            return estimate_cost(schema, document, operation, variables, limits.cost_model)

        key = (text, name, page_values)
        cost = self._costs.get(key, compute) if text else compute()
        if cost <= limits.max_cost:
            return []
        return [
            _refusal(
                f"查询过于复杂: 预计最多返回 {cost} 个对象, 上限 {limits.max_cost}; "
                "请减小每页条数 (first) 或减少嵌套的关联字段"
            )
        ]


def query_limits(
    limits: QueryLimits,
) -> tuple[type[SchemaExtension], type[SchemaExtension], LimitChecks]:
    """Two extensions: ``CachedParse`` parses within the token limit (in place of strawberry's
    ParserCache), ``ShapeLimits`` goes after the validation cache; and their checks."""
    checks = LimitChecks(limits)

    class CachedParse(SchemaExtension):
        """strawberry's ParserCache, with the token limit and the shape limits (one refusal in
        Chinese, raised here so that strawberry answers it without validating)."""

        def on_parse(self) -> Iterator[None]:
            context = self.execution_context
            if context.query is not None:
                context.graphql_document = checks.parse(context.query)
            document = context.graphql_document
            if document is not None:
                refusal = checks.shape_refusal(document, context.query)
                if refusal is not None:
                    raise refusal
            yield

    class ShapeLimits(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            # Runs after the validation cache has put its result in pre_execution_errors
            # (extension order in build_schema); strawberry checks them before this yields back.
            context = self.execution_context
            document = context.graphql_document
            if document is not None and not context.pre_execution_errors:
                errors = checks.cost_refusals(
                    context.schema._schema,
                    document,
                    context.query,
                    context._provided_operation_name,
                    context.variables or {},
                )
                if errors:
                    context.pre_execution_errors = errors
            yield

    return CachedParse, ShapeLimits, checks


def _page_value(variables: Mapping[str, object], name: str) -> object:
    """A page-size variable's value as part of a cache key: the int given, else what stands
    for "absent", "null" or "not an int" (each estimated alike whatever the exact value)."""
    if name not in variables:
        return ("absent",)
    value = variables[name]
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return ("not an int",)
