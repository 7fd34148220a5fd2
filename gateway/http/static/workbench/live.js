// 实时更新: the workbench hears its department's new tasks, answers, warnings and anomalies
// (subscription worklistEvents over Server-Sent Events, the GraphQL over SSE protocol) and the
// open list updates without a reload. EventSource cannot send the bearer token, so the stream
// is read with fetch and a ReadableStream, as a department's own frontend would. The event
// carries only ids: the lists are read again through the usual queries (same rules, audited).
// A lost connection is resumed with Last-Event-ID; an expired token signs the clerk out.

import { chineseMessage, openEventStream, token } from "./api.js";

const SUBSCRIPTION = `
subscription WorkbenchLive {
  worklistEvents { id kind occurredAt task { id } warning { id } anomaly { id } }
}`;

const RETRY_MS = [1_000, 2_000, 5_000, 10_000, 30_000];

let controller = null; // the open stream's AbortController
let lastEventId = "";
let generation = 0; // a restart (new purpose, sign-out) makes older loops stop

/**
 * Start listening; `onEvent(event)` gets each worklist event ({id, kind, occurredAt, …}),
 * `onStatus(kind, text)` the connection's state in Chinese ("info" / "error" / "").
 */
export function start({ onEvent, onStatus }) {
  stop();
  const mine = ++generation;
  run(mine, onEvent, onStatus ?? (() => {}));
}

export function stop() {
  generation += 1;
  if (controller) controller.abort();
  controller = null;
}

async function run(mine, onEvent, onStatus) {
  let failures = 0;
  while (mine === generation && token.get()) {
    const outcome = await listen(mine, onEvent, onStatus);
    if (mine !== generation || outcome === "stop") return;
    if (outcome === "opened") failures = 0;
    const wait = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
    failures += 1;
    onStatus("info", `实时更新连接中断, ${Math.round(wait / 1000)} 秒后重新连接…`);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** One connection: resolves "stop" (do not reconnect), "opened" or "failed". */
async function listen(mine, onEvent, onStatus) {
  controller = new AbortController();
  let response;
  try {
    response = await openEventStream(SUBSCRIPTION, "WorkbenchLive", lastEventId, controller.signal);
  } catch {
    return "failed";
  }
  if (!response.ok || !response.body) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    const error = body?.errors?.[0];
    if (response.status === 401) {
      signedOut(error);
      return "stop";
    }
    onStatus("error", `实时更新未开启: ${error ? chineseMessage(error) : `HTTP ${response.status}`}`);
    return response.status === 429 || response.status >= 500 ? "failed" : "stop";
  }
  onStatus("live", "实时更新已开启: 新推送的任务会自动出现在列表中");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "opened";
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (mine !== generation) return "stop";
        const outcome = handle(block, onEvent, onStatus);
        if (outcome) return outcome;
      }
    }
  } catch {
    return mine === generation ? "opened" : "stop";
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** One SSE message; returns "stop"/"opened" when the stream is over, else undefined. */
function handle(block, onEvent, onStatus) {
  const fields = {};
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a comment: the heartbeat
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    fields[name] = fields[name] === undefined ? value : `${fields[name]}\n${value}`;
  }
  if (fields.event === "complete") return "opened"; // the server ended it: reconnect
  if (fields.event !== "next" || !fields.data) return undefined;
  let payload;
  try {
    payload = JSON.parse(fields.data);
  } catch {
    return undefined;
  }
  const event = payload?.data?.worklistEvents;
  if (event) {
    if (fields.id) lastEventId = fields.id;
    onEvent(event);
    return undefined;
  }
  const error = Array.isArray(payload?.errors) ? payload.errors[0] : null;
  if (!error) return undefined;
  const code = error.extensions?.code;
  if (code === "UNAUTHENTICATED") {
    signedOut(error);
    return "stop";
  }
  if (code === "RESUME_TRUNCATED") {
    // More was missed than the server replays: the lists are read again in full.
    onEvent({ kind: "RESUME_TRUNCATED" });
    return undefined;
  }
  onStatus("error", `实时更新已停止: ${chineseMessage(error)}`);
  return code === "FORBIDDEN" || code === "GRAPHQL_VALIDATION_FAILED" ? "stop" : "opened";
}

function signedOut(error) {
  stop();
  const text = error ? chineseMessage(error) : "令牌已失效";
  document.dispatchEvent(new CustomEvent("workbench:unauthenticated", { detail: [text] }));
}
