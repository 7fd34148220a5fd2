// The workbench's only connections, as a department's own frontend would make them:
// POST /graphql (with X-Purpose), POST /ingest/upload (a file, progress streamed back) and
// GET /ingest/batches/<id>/report (a rejection report). The token lives in this tab's
// sessionStorage and nowhere else; every request carries it as a bearer token.

const TOKEN_KEY = "relief-workbench-token";
const PURPOSE_KEY = "relief-workbench-purpose";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || "",
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// The purpose declared on reads (X-Purpose); chosen by the clerk among the allowed ones.
export const purpose = {
  get: () => sessionStorage.getItem(PURPOSE_KEY) || "",
  set: (value) => sessionStorage.setItem(PURPOSE_KEY, value),
};

export class ApiError extends Error {
  constructor(messages, code = "") {
    super(messages.join("; "));
    this.messages = messages;
    this.code = code;
  }
}

const CJK = /[\u4e00-\u9fff]/;

// Messages the gateway leaves in English (GraphQL syntax and validation errors) get a
// Chinese lead so a clerk knows what kind of problem it is.
const CODE_LEADS = {
  GRAPHQL_PARSE_FAILED: "查询语句有语法错误",
  GRAPHQL_VALIDATION_FAILED: "查询语句无效",
  BAD_USER_INPUT: "输入有误",
  UNAUTHENTICATED: "身份验证失败",
  FORBIDDEN: "无权执行",
  RATE_LIMITED: "请求过于频繁, 请稍后再试",
};

export function chineseMessage(error) {
  const text = typeof error?.message === "string" ? error.message : "";
  if (CJK.test(text)) return text;
  const code = error?.extensions?.code || "";
  const lead = CODE_LEADS[code] || "请求失败";
  return text ? `${lead}: ${text}` : lead;
}

/** The one JSON error shape ({errors: [{message, extensions: {code}}]}) → ApiError. */
function refusal(body, status) {
  const errors = Array.isArray(body?.errors) ? body.errors : [];
  if (!errors.length) return new ApiError([`网关返回了错误 (HTTP ${status})`]);
  const messages = [...new Set(errors.map(chineseMessage))];
  const code = errors[0]?.extensions?.code || "";
  if (code === "UNAUTHENTICATED" && token.get()) {
    // An expired or revoked token: back to the sign-in form, saying why.
    document.dispatchEvent(new CustomEvent("workbench:unauthenticated", { detail: messages }));
  }
  return new ApiError(messages, code);
}

function headers(extra = {}) {
  // The declared purpose goes with the file requests too (optional there, as on /graphql).
  const declared = purpose.get();
  return {
    Authorization: `Bearer ${token.get()}`,
    ...(declared ? { "X-Purpose": declared } : {}),
    ...extra,
  };
}

/**
 * Run one GraphQL document under a purpose (default: the chosen one). Resolves to `data`;
 * errors at a field's path (a denied field: FORBIDDEN) leave that field null and the rest is
 * served, so they are returned in `data.__fieldErrors` instead of thrown. A refusal of the
 * whole request throws ApiError with Chinese messages.
 */
// Requests in flight, on <html data-pending="n"> (the live stream is not one of them): the
// screen is settled at 0, which assistive tools and the browser tests can wait for.
let pending = 0;
function inFlight(change) {
  pending += change;
  document.documentElement.dataset.pending = String(pending);
}

export async function graphql(query, variables = {}, declared = purpose.get()) {
  inFlight(+1);
  try {
    return await graphqlOnce(query, variables, declared);
  } finally {
    inFlight(-1);
  }
}

async function graphqlOnce(query, variables, declared) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", "X-Purpose": declared }),
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
  const data = body && typeof body.data === "object" ? body.data : null;
  const whole = errors.filter((e) => !Array.isArray(e.path) || !e.path.length);
  if (!response.ok || data === null || whole.length) throw refusal(body, response.status);
  // A mutation refused at its root (no task, wrong answer) has a path but no data there.
  const roots = errors.filter((e) => e.path.length === 1 && data[e.path[0]] == null);
  if (roots.length) throw refusal({ errors: roots }, response.status);
  Object.defineProperty(data, "__fieldErrors", { value: errors, enumerable: false });
  return data;
}

/**
 * Open a subscription's event stream (GraphQL over SSE: POST /graphql, Accept:
 * text/event-stream), resuming after `lastEventId` when given. Resolves to the fetch
 * Response (its body is the stream; live.js reads it); rejects when the gateway is unreachable
 * or `signal` aborts. The live stream is not counted in data-pending: it never ends by itself.
 */
export function openEventStream(query, operationName, lastEventId, signal) {
  const extra = { Accept: "text/event-stream", "Content-Type": "application/json" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  return fetch("/graphql", {
    method: "POST",
    headers: headers(extra),
    body: JSON.stringify({ query, operationName }),
    credentials: "omit",
    cache: "no-store",
    signal,
  });
}

/** Field errors other than FORBIDDEN (which means "absent"), in Chinese, for a notice. */
export function fieldProblems(data) {
  const errors = (data && data.__fieldErrors) || [];
  const other = errors.filter((e) => e?.extensions?.code !== "FORBIDDEN");
  return [...new Set(other.map(chineseMessage))];
}

/**
 * Upload a department file: POST /ingest/upload?feed=…&dryRun=0|1 with the raw bytes.
 * `onBytes(loaded, total)` follows the upload, `onRows(rows)` the server's progress lines;
 * resolves to the final {"type":"result"} line, throws ApiError on a refusal or an error line.
 */
export function upload(feed, file, dryRun, { onBytes, onRows }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const query = new URLSearchParams({ feed, dryRun: dryRun ? "1" : "0" });
    xhr.open("POST", `/ingest/upload?${query}`);
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("X-Relief-Filename", encodeURIComponent(file.name));
    xhr.responseType = "text";
    let seen = 0; // characters of the response already read as lines
    let result = null;
    let failed = null;
    const readLines = (final) => {
      const text = xhr.responseText || "";
      const end = final ? text.length : text.lastIndexOf("\n") + 1;
      if (end <= seen) return;
      for (const line of text.slice(seen, end).split("\n")) {
        if (!line.trim()) continue;
        let item;
        try {
          item = JSON.parse(line);
        } catch {
          continue; // a partial line is read again when complete
        }
        if (item.type === "progress" && onRows) onRows(item.rows);
        else if (item.type === "result") result = item;
        else if (item.type === "error") failed = refusal({ errors: [item.error] }, xhr.status);
      }
      seen = end;
    };
    xhr.upload.onprogress = (event) => {
      if (onBytes) onBytes(event.loaded, event.lengthComputable ? event.total : file.size);
    };
    xhr.onprogress = () => {
      if (xhr.status === 200) readLines(false);
    };
    xhr.onerror = () => reject(new ApiError(["无法连接网关, 上传未完成, 请检查网络后重试"]));
    xhr.onload = () => {
      if (xhr.status !== 200) {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        reject(refusal(body, xhr.status));
        return;
      }
      readLines(true);
      if (failed) reject(failed);
      else if (result) resolve(result);
      else reject(new ApiError(["上传的响应不完整 (没有导入结果), 请到批次列表查看后重试"]));
    };
    xhr.send(file);
  });
}

/** Fetch a batch's rejection report with the bearer token and hand it to the browser. */
export async function downloadReport(url, fallbackName) {
  let response;
  try {
    response = await fetch(url, { headers: headers(), credentials: "omit", cache: "no-store" });
  } catch {
    throw new ApiError(["无法连接网关, 请检查网络后重试"]);
  }
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    throw refusal(body, response.status);
  }
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = reportName(response.headers.get("Content-Disposition")) || fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  return link.download;
}

/** The file name a Content-Disposition header gives (RFC 6266 filename* first). */
function reportName(disposition) {
  if (!disposition) return "";
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      return "";
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1].trim() : "";
}
