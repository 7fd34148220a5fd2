// The console's only connection: POST /graphql with the administrator's token and the purpose
// "supervision", and GET /readyz for the system administrator's status line. The token lives
// in this tab's sessionStorage and nowhere else.

const TOKEN_KEY = "relief-console-token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || "",
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(messages, code = "") {
    super(messages.join("; "));
    this.messages = messages;
    this.code = code;
  }
}

const CJK = /[\u4e00-\u9fff]/;

// Messages the gateway leaves in English (GraphQL syntax and validation errors) get a Chinese
// lead so an officer knows what kind of problem it is.
const CODE_LEADS = {
  GRAPHQL_PARSE_FAILED: "查询语句有语法错误",
  GRAPHQL_VALIDATION_FAILED: "查询语句无效",
  BAD_USER_INPUT: "输入有误",
  UNAUTHENTICATED: "身份验证失败",
  FORBIDDEN: "无权执行",
};

export function chineseMessage(error) {
  const text = typeof error?.message === "string" ? error.message : "";
  if (CJK.test(text)) return text;
  const code = error?.extensions?.code || "";
  const lead = CODE_LEADS[code] || "请求失败";
  return text ? `${lead}: ${text}` : lead;
}

/** Run one GraphQL document; resolve to `data`, or throw ApiError with Chinese messages. */
export async function graphql(query, variables = {}) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Authorization: `Bearer ${token.get()}`,
        "X-Purpose": "supervision",
      },
      body: JSON.stringify({ query, variables }),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(["无法连接网关, 请检查网络后重试"]);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError([`网关返回了无法识别的响应 (HTTP ${response.status})`]);
  }
  const errors = Array.isArray(body?.errors) ? body.errors : [];
  if (errors.length) {
    const messages = [...new Set(errors.map(chineseMessage))];
    const code = errors[0]?.extensions?.code || "";
    if (code === "UNAUTHENTICATED" && token.get()) {
      // An expired or revoked token: back to the sign-in form, saying why.
      document.dispatchEvent(new CustomEvent("console:unauthenticated", { detail: messages }));
    }
    throw new ApiError(messages, code);
  }
  if (!response.ok || !body || typeof body.data !== "object" || body.data === null) {
    throw new ApiError([`网关返回了错误 (HTTP ${response.status})`]);
  }
  return body.data;
}

/** The gateway's readiness (GET /readyz, no token): {ready, policyVersion} or {ready, reason}. */
export async function readiness() {
  let response;
  try {
    response = await fetch("/readyz", { credentials: "omit", cache: "no-store" });
  } catch {
    throw new ApiError(["无法连接网关, 请检查网络后重试"]);
  }
  try {
    return await response.json();
  } catch {
    throw new ApiError([`网关返回了无法识别的响应 (HTTP ${response.status})`]);
  }
}
