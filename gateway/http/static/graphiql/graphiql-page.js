// GraphiQL for developers (gateway/http/graphiql.py): strawberry's page, with the example query
// chosen for the caller. Opened without a query (or with the demo's generic example, whose
// first line is "# 示例查询"), the page asks `me` which fields the token may read under its
// X-Purpose (fieldAccess: READ or MASK) and prefills a query with only those: a department
// never starts from a wall of FORBIDDEN errors. The query is built here, from the API.

(function () {
  "use strict";

  const DEMO_MARK = "# 示例查询";

  const parameters = {};
  for (const entry of window.location.search.slice(1).split("&")) {
    const eq = entry.indexOf("=");
    if (eq >= 0) {
      parameters[decodeURIComponent(entry.slice(0, eq))] = decodeURIComponent(entry.slice(eq + 1));
    }
  }

  function updateURL(data) {
    Object.assign(parameters, data);
    const search = Object.keys(parameters)
      .filter((key) => Boolean(parameters[key]))
      .map((key) => `${encodeURIComponent(key)}=${encodeURIComponent(parameters[key])}`)
      .join("&");
    history.replaceState(null, "", `?${search}`);
  }

  const fetchURL = window.location.href.split("?")[0];

  // ------------------------------------------------------------------ the caller's example

  const ME = "{ me { department level region purpose fieldAccess { field effect } } }";

  // Relations of a person: the record type their fields are granted as, and the key fields
  // every caller reads once the relation is granted (authz/resources.py: structural fields).
  const RELATIONS = [
    ["reliefStatuses", "ReliefStatus", ["category"]],
    ["enrollments", "Enrollment", ["year"]],
    ["costBurdens", "CostBurden", ["year"]],
  ];
  const PERSON_SCALARS = [
    "idNumber", "name", "gender", "birthDate", "phone", "address", "underVerification",
  ];
  // Fields that need arguments or describe sources: left to the developer.
  const SKIPPED = new Set(["provenance", "effectiveRelief"]);

  function headerObject() {
    try {
      const parsed = JSON.parse(parameters.headers || "{}");
      return parsed && typeof parsed === "object" ? parsed : {};
    } catch {
      return {};
    }
  }

  /** The example query for a caller that may read `readable` (a Set of "Type.field"). */
  function exampleFor(me) {
    const readable = new Set(me.fieldAccess.map((access) => access.field));
    const lines = [];
    const person = ["id", "regionCode"];
    for (const field of PERSON_SCALARS) {
      if (readable.has(`Person.${field}`)) person.push(field);
    }
    for (const [relation, type, keys] of RELATIONS) {
      if (!readable.has(`Person.${relation}`)) continue;
      const fields = [...keys];
      for (const access of me.fieldAccess) {
        const [owner, field] = access.field.split(".");
        if (owner === type && !SKIPPED.has(field)) fields.push(field);
      }
      person.push(`${relation} { ${fields.join(" ")} }`);
    }
    if (readable.has("Person.household")) {
      const member = ["id"];
      if (readable.has("Person.name")) member.push("name");
      person.push(
        readable.has("Household.members")
          ? `household { id members { ${member.join(" ")} } }`
          : "household { id }",
      );
    }
    lines.push(
      `# 示例 (本部门): ${me.department} / ${me.level} / ${me.region}, 用途 ${me.purpose || "未声明"}`,
      "# 只含当前策略允许本令牌读取的字段 (me.fieldAccess); 按 Ctrl-Enter (或上方 ▶) 运行",
      "query MyDepartment {",
    );
    if (readable.size) {
      lines.push(
        "  persons(first: 5) {",
        "    totalCount",
        "    edges {",
        "      node {",
        ...person.map((field) => `        ${field}`),
        "      }",
        "    }",
        "  }",
      );
    }
    lines.push("  me { department level region purpose policyVersion rowScope operations }", "}");
    return `${lines.join("\n")}\n`;
  }

  const NO_TOKEN = [
    "# 请在下方 Headers 中填写令牌和用途, 如:",
    '#   {"Authorization": "Bearer <令牌>", "X-Purpose": "relief_recognition"}',
    "# 然后刷新本页, 即按本部门可读的字段生成示例查询。",
    "query Me {",
    "  me { department level region purpose }",
    "}",
    "",
  ].join("\n");

  async function initialQuery() {
    const given = parameters.q;
    if (given && !given.trimStart().startsWith(DEMO_MARK)) return given;
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    Object.assign(headers, headerObject());
    if (!headers.Authorization) return NO_TOKEN;
    try {
      const response = await fetch(fetchURL, {
        method: "POST",
        headers,
        body: JSON.stringify({ query: ME }),
        credentials: "omit",
      });
      const body = await response.json();
      if (!body || !body.data || !body.data.me) return given || NO_TOKEN;
      return exampleFor(body.data.me);
    } catch {
      return given || NO_TOKEN;
    }
  }

  // ------------------------------------------------------------------ GraphiQL

  const fetcher = GraphiQL.createFetcher({ url: fetchURL, headers: {} });

  function Page(props) {
    const [query, setQuery] = React.useState(props.query);
    const [variables, setVariables] = React.useState(parameters.variables);
    const [headers, setHeaders] = React.useState(parameters.headers);
    const explorer = GraphiQLPluginExplorer.explorerPlugin();
    return React.createElement(GraphiQL, {
      fetcher,
      defaultEditorToolsVisibility: true,
      plugins: [explorer],
      query,
      variables,
      headers,
      onEditQuery: (text) => {
        setQuery(text);
        updateURL({ q: text });
      },
      onEditVariables: (text) => {
        setVariables(text);
        updateURL({ variables: text });
      },
      onEditHeaders: (text) => setHeaders(text),
      inputValueDeprecation: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
    });
  }

  initialQuery().then((query) => {
    document.getElementById("graphiql").dataset.prefilled = "true";
    if (query !== parameters.q) updateURL({ q: query });
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(Page, { query }),
    );
  });
})();
