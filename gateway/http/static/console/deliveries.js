// 推送投递 (the system administrator's screen, issue 18 item 2): the department's webhook
// endpoints (register, rotate a secret, disable) and their deliveries, dead letters (死信)
// first, with 重新投递 per row and for a selection.
//
// A secret is shown once, in the answer to the registration or rotation that made it, and only
// in this page's memory: it is never stored by the page and the gateway never returns it again.
// Everything from the API is inserted as text (dom.js), never as markup.

import { graphql } from "./api.js";
import { $, busy, fill, h, message } from "./dom.js";
import { departmentName, formatTime, levelName } from "./labels.js";

const PAGE = 20;

const ENDPOINT_FIELDS = `
  id name department level region url algorithm eventKinds secretId previousSecretId
  previousSecretExpiresAt deadAfterHours consecutiveFailures pausedUntil enabled createdAt
  createdBy disabledAt disabledBy`;
const ENDPOINTS = `query ConsoleWebhookEndpoints { webhookEndpoints { ${ENDPOINT_FIELDS} } }`;
const DELIVERIES = `
query ConsoleWebhookDeliveries($status: DeliveryStatus, $endpointId: ID, $first: Int!,
                               $after: String) {
  webhookDeliveries(status: $status, endpointId: $endpointId, first: $first, after: $after) {
    edges { node {
      id endpointId endpointName eventId eventKind occurredAt status attempts nextAttemptAt
      lastStatus lastError deliveredAt deadAt cancelReason
    } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const REGISTER = `
mutation ConsoleRegisterWebhook($input: RegisterWebhookEndpointInput!) {
  registerWebhookEndpoint(input: $input) { secret endpoint { ${ENDPOINT_FIELDS} } }
}`;
const ROTATE = `
mutation ConsoleRotateWebhookSecret($id: ID!, $keep: Int!) {
  rotateWebhookSecret(id: $id, keepPreviousHours: $keep) { secret endpoint { ${ENDPOINT_FIELDS} } }
}`;
const DISABLE = `
mutation ConsoleDisableWebhook($id: ID!) { disableWebhookEndpoint(id: $id) { id enabled } }`;
const REPLAY = `
mutation ConsoleReplayDeliveries($ids: [ID!]) { replayDeliveries(ids: $ids) }`;

export const EVENT_KINDS = {
  TASK_PUSHED: "任务推送",
  TASK_ANSWERED: "任务答复",
  WARNING_RAISED: "高额费用预警",
  ANOMALY_OPENED: "异常回传",
  ANOMALY_CLOSED: "异常已处理",
  BATCH_ACCEPTED: "批次已接收",
  IDENTITY_RECOGNISED: "身份认定",
};
export const STATUSES = {
  DEAD: "死信",
  PENDING: "待推送",
  IN_FLIGHT: "推送中",
  DELIVERED: "已送达",
  CANCELLED: "已取消",
};
const ALGORITHMS = { HMAC_SHA256: "HMAC-SHA256", HMAC_SM3: "HMAC-SM3 (国密)" };
const CANCEL_REASONS = {
  endpoint_disabled: "端点已停用",
  out_of_scope: "人员已不在接收方范围内",
  gone: "接收方返回 410, 端点已停用",
};

let endpoints = [];
let cursors = [null]; // cursors[k] starts page k
let page = 0;
const selected = new Set();

export function init() {
  const kinds = $("#webhook-kinds");
  for (const [code, name] of Object.entries(EVENT_KINDS)) {
    kinds.append(
      h(
        "label",
        { class: "inline" },
        h("input", {
          type: "checkbox",
          name: "kind",
          value: code,
          checked: code === "TASK_PUSHED",
        }),
        ` ${name}`,
      ),
    );
  }
  const statuses = $("#delivery-status");
  for (const [code, name] of Object.entries(STATUSES)) {
    statuses.append(h("option", { value: code }, name));
  }
  statuses.append(h("option", { value: "" }, "全部状态"));
  $("#webhook-form").addEventListener("submit", (event) => {
    event.preventDefault();
    register();
  });
  $("#deliveries-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("#deliveries-refresh").addEventListener("click", () => load());
  $("#deliveries-prev").addEventListener("click", () => showPage(page - 1));
  $("#deliveries-next").addEventListener("click", () => showPage(page + 1));
  const replaySelected = $("#replay-selected");
  replaySelected.addEventListener("click", () => replay([...selected], replaySelected));
  $("#deliveries-all").addEventListener("change", (event) => {
    for (const box of document.querySelectorAll("#delivery-rows input[type=checkbox]")) {
      if (box.disabled) continue;
      box.checked = event.currentTarget.checked;
      toggle(box.value, box.checked);
    }
  });
}

export async function load() {
  await loadEndpoints();
  search();
}

// ---------------------------------------------------------------------------- endpoints
async function loadEndpoints() {
  const output = $("#webhook-message");
  await busy(null, output, async () => {
    endpoints = (await graphql(ENDPOINTS)).webhookEndpoints;
    renderEndpoints();
    const choice = $("#delivery-endpoint");
    const chosen = choice.value;
    fill(
      choice,
      h("option", { value: "" }, "全部端点"),
      endpoints.map((e) => h("option", { value: e.id }, `${e.name} (${e.region})`)),
    );
    choice.value = endpoints.some((e) => e.id === chosen) ? chosen : "";
  });
}

function endpointState(e) {
  if (!e.enabled) {
    return h("span", { class: "state state-off" }, `已停用 ${formatTime(e.disabledAt)}`);
  }
  if (e.pausedUntil && new Date(e.pausedUntil) > new Date()) {
    return h(
      "span",
      { class: "state state-paused" },
      `暂停至 ${formatTime(e.pausedUntil)} (连续失败 ${e.consecutiveFailures} 次)`,
    );
  }
  return h("span", { class: "state state-on" }, "启用");
}

function renderEndpoints() {
  const body = $("#endpoint-rows");
  if (!endpoints.length) {
    fill(body, h("tr", {}, h("td", { colspan: "8", class: "hint" }, "尚未登记推送端点。")));
    return;
  }
  fill(
    body,
    endpoints.map((e) =>
      h(
        "tr",
        { dataset: { endpointId: e.id }, class: e.enabled ? null : "disabled" },
        h("td", {}, e.name),
        h("td", {}, `${departmentName(e.department)} / ${levelName(e.level)} / ${e.region}`),
        h("td", {}, h("code", { class: "url" }, e.url)),
        h(
          "td",
          {},
          ALGORITHMS[e.algorithm] || e.algorithm,
          h("br"),
          h("small", {}, "密钥编号 ", h("code", {}, e.secretId)),
          e.previousSecretId
            ? h("small", {}, h("br"), `旧密钥签名至 ${formatTime(e.previousSecretExpiresAt)}`)
            : null,
        ),
        h("td", {}, e.eventKinds.map((k) => EVENT_KINDS[k] || k).join("、")),
        h("td", {}, e.deadAfterHours === null ? "网关默认" : `${e.deadAfterHours} 小时`),
        h(
          "td",
          {},
          endpointState(e),
          h("br"),
          h("small", {}, `${e.createdBy} 登记于 ${formatTime(e.createdAt)}`),
        ),
        h("td", { class: "actions" }, e.enabled ? endpointActions(e) : "—"),
      ),
    ),
  );
}

function endpointActions(e) {
  const rotate = h(
    "button",
    { type: "button", "aria-label": `轮换密钥: ${e.name}`, onclick: () => askRotate(e) },
    "轮换密钥",
  );
  const disable = h(
    "button",
    { type: "button", class: "danger", "aria-label": `停用: ${e.name}` },
    "停用",
  );
  // Two steps instead of a dialog: the first click asks, the second (within 5 s) disables.
  let armed = null;
  disable.addEventListener("click", async () => {
    if (!armed) {
      disable.textContent = "确认停用";
      armed = setTimeout(() => {
        armed = null;
        disable.textContent = "停用";
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    const output = $("#webhook-message");
    await busy(disable, output, async () => {
      await graphql(DISABLE, { id: e.id });
      message(output, "ok", `已停用推送端点「${e.name}」: 未完成的推送已取消, 推送记录保留`);
      await loadEndpoints();
      showPage(page);
    });
  });
  return [rotate, " ", disable];
}

function askRotate(e) {
  const panel = $("#secret-panel");
  const hours = h("input", {
    id: "rotate-hours",
    type: "number",
    min: "0",
    max: "168",
    value: "24",
  });
  const output = h("p", { class: "message", hidden: true });
  const confirm = h("button", { type: "button", class: "primary" }, "确认轮换");
  confirm.addEventListener("click", () =>
    busy(confirm, output, async () => {
      const keep = Number.parseInt(hours.value, 10);
      const issued = (await graphql(ROTATE, { id: e.id, keep: Number.isNaN(keep) ? -1 : keep }))
        .rotateWebhookSecret;
      showSecret(issued, "已轮换密钥");
      await loadEndpoints();
    }),
  );
  fill(
    panel,
    h("h3", {}, `轮换密钥: ${e.name}`),
    h(
      "label",
      { for: "rotate-hours" },
      "旧密钥继续签名的小时数 (0 到 168; 密钥泄露时填 0, 旧密钥立即失效)",
    ),
    hours,
    h(
      "div",
      { class: "buttons" },
      confirm,
      h("button", { type: "button", onclick: () => (panel.hidden = true) }, "取消"),
    ),
    output,
  );
  panel.hidden = false;
  panel.scrollIntoView({ block: "nearest" });
}

function showSecret(issued, lead) {
  const panel = $("#secret-panel");
  fill(
    panel,
    h("h3", {}, `${lead}: ${issued.endpoint.name}`),
    h(
      "p",
      { class: "message message-info", role: "status" },
      "签名密钥只显示这一次: 请立即复制并交给接收方系统保存。网关只保存其密文, 关闭后无法再次查看。",
    ),
    h("p", {}, "密钥编号 ", h("code", {}, issued.endpoint.secretId)),
    h("pre", { class: "secret", id: "issued-secret" }, issued.secret),
    h(
      "button",
      {
        type: "button",
        onclick: () => {
          fill(panel); // the secret leaves the page
          panel.hidden = true;
        },
      },
      "我已保存, 关闭",
    ),
  );
  panel.hidden = false;
  panel.scrollIntoView({ block: "nearest" });
}

async function register() {
  const output = $("#webhook-form-message");
  const kinds = [...document.querySelectorAll("#webhook-kinds input:checked")].map(
    (box) => box.value,
  );
  const region = $("#webhook-region").value.trim();
  const hours = $("#webhook-dead-after").value.trim();
  const input = {
    name: $("#webhook-name").value,
    url: $("#webhook-url").value.trim(),
    algorithm: $("#webhook-algorithm").value,
    eventKinds: kinds,
    regionPrefix: region || null,
    deadAfterHours: hours ? Number.parseInt(hours, 10) : null,
  };
  if (hours && Number.isNaN(input.deadAfterHours)) {
    message(output, "error", "死信时限应为整数小时");
    return;
  }
  await busy($("#webhook-submit"), output, async () => {
    const issued = (await graphql(REGISTER, { input })).registerWebhookEndpoint;
    message(output, "ok", `已登记推送端点「${issued.endpoint.name}」`);
    $("#webhook-form").reset();
    $("details.register").open = false;
    showSecret(issued, "已登记");
    await loadEndpoints();
  });
}

// ---------------------------------------------------------------------------- deliveries
function search() {
  cursors = [null];
  selected.clear();
  showPage(0);
}

async function showPage(index) {
  if (index < 0 || index >= cursors.length) return;
  const output = $("#deliveries-message");
  await busy(null, output, async () => {
    const variables = {
      status: $("#delivery-status").value || null,
      endpointId: $("#delivery-endpoint").value || null,
      first: PAGE,
      after: cursors[index],
    };
    const connection = (await graphql(DELIVERIES, variables)).webhookDeliveries;
    page = index;
    if (connection.pageInfo.hasNextPage) cursors[index + 1] = connection.pageInfo.endCursor;
    else cursors = cursors.slice(0, index + 1);
    renderDeliveries(connection.edges.map((edge) => edge.node));
    fill($("#deliveries-page"), `第 ${index + 1} 页`);
    $("#deliveries-prev").disabled = index === 0;
    $("#deliveries-next").disabled = !connection.pageInfo.hasNextPage;
  });
}

function toggle(id, on) {
  if (on) selected.add(id);
  else selected.delete(id);
  const button = $("#replay-selected");
  button.disabled = selected.size === 0;
  fill(button, selected.size ? `重新投递所选 (${selected.size} 条)` : "重新投递所选");
}

function statusCell(d) {
  const cell = h(
    "td",
    { class: `status status-${d.status.toLowerCase()}` },
    STATUSES[d.status] || d.status,
  );
  if (d.status === "CANCELLED" && d.cancelReason) {
    cell.append(h("br"), h("small", {}, CANCEL_REASONS[d.cancelReason] || d.cancelReason));
  }
  return cell;
}

function renderDeliveries(rows) {
  const body = $("#delivery-rows");
  $("#deliveries-all").checked = false;
  toggle("", false);
  if (!rows.length) {
    fill(body, h("tr", {}, h("td", { colspan: "10", class: "hint" }, "没有符合条件的推送记录。")));
    return;
  }
  fill(
    body,
    rows.map((d) => {
      const dead = d.status === "DEAD";
      const box = h("input", {
        type: "checkbox",
        value: d.id,
        disabled: !dead,
        "aria-label": `选择推送 ${d.id}`,
        onchange: (event) => toggle(d.id, event.currentTarget.checked),
      });
      const when = dead
        ? `转为死信 ${formatTime(d.deadAt)}`
        : d.deliveredAt
          ? `送达 ${formatTime(d.deliveredAt)}`
          : d.nextAttemptAt
            ? `下次尝试 ${formatTime(d.nextAttemptAt)}`
            : "—";
      return h(
        "tr",
        { dataset: { deliveryId: d.id, status: d.status, endpointId: d.endpointId } },
        h("td", {}, box),
        h("td", {}, d.id),
        h("td", {}, d.endpointName),
        h(
          "td",
          {},
          EVENT_KINDS[d.eventKind] || d.eventKind,
          h("br"),
          h("small", {}, h("code", {}, d.eventId)),
        ),
        h("td", {}, formatTime(d.occurredAt)),
        statusCell(d),
        h("td", {}, String(d.attempts)),
        h(
          "td",
          { class: "error-text" },
          d.lastStatus ? [h("code", { title: "HTTP 状态码" }, String(d.lastStatus)), " "] : null,
          d.lastError || (d.lastStatus ? "" : "—"),
        ),
        h("td", {}, when),
        h(
          "td",
          {},
          dead
            ? h(
                "button",
                {
                  type: "button",
                  "aria-label": `重新投递推送 ${d.id}`,
                  onclick: (event) => replay([d.id], event.currentTarget),
                },
                "重新投递",
              )
            : "",
        ),
      );
    }),
  );
}

/** The circuit breaker still holds an endpoint of these rows: say when they will be sent. */
function pausedNote(ids) {
  const names = new Set();
  for (const id of ids) {
    const row = document.querySelector(`#delivery-rows tr[data-delivery-id="${CSS.escape(id)}"]`);
    const endpoint = endpoints.find((e) => e.id === row?.dataset.endpointId);
    if (endpoint?.pausedUntil && new Date(endpoint.pausedUntil) > new Date()) {
      names.add(`「${endpoint.name}」暂停至 ${formatTime(endpoint.pausedUntil)}`);
    }
  }
  return names.size ? `; ${[...names].join("、")}, 届时再推送` : "";
}

async function replay(ids, button) {
  if (!ids.length) return;
  const output = $("#deliveries-message");
  await busy(button, output, async () => {
    const count = (await graphql(REPLAY, { ids })).replayDeliveries;
    // The rows stay where they are, showing their new status, until the next refresh.
    for (const id of ids) {
      const row = document.querySelector(`#delivery-rows tr[data-delivery-id="${CSS.escape(id)}"]`);
      if (!row) continue;
      row.dataset.status = "PENDING";
      const cells = row.children;
      const box = cells[0].querySelector("input");
      box.checked = false;
      box.disabled = true;
      cells[5].replaceWith(statusCell({ status: "PENDING" }));
      cells[6].textContent = "0";
      cells[8].textContent = "已重新投递, 等待推送";
      cells[9].textContent = "";
      selected.delete(id);
    }
    toggle("", false);
    const done =
      count === ids.length
        ? `已重新投递 ${count} 条, 将按顺序重新推送`
        : `已重新投递 ${count} 条; 其余 ${ids.length - count} 条已不是死信或端点已停用`;
    message(output, count === ids.length ? "ok" : "info", done + pausedNote(ids));
  });
}
