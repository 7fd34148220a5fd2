// 审计 (the audit administrator's screen): the audit log with filters and paging, the
// hash-chain check, and "解释" for an entry (which policy lines released or denied each field
// and row condition). The gateway leaves out the reader's own entries (三权分立).

import { graphql } from "./api.js";
import { $, busy, fill, h, message } from "./dom.js";
import {
  DEPARTMENTS,
  departmentName,
  effectLabel,
  fieldName,
  formatTime,
  levelName,
  operationName,
  purposeName,
  rowConditionName,
  withCode,
} from "./labels.js";
import { lineItem } from "./lines.js";
import { AUDIT_CHAIN, AUDIT_LOG, EXPLAIN } from "./queries.js";

const PAGE = 20;
const RELEASED = { read: "明文", mask: "脱敏" };

let filter = {};
let cursors = [null]; // cursors[k] starts page k
let page = 0;

export function init() {
  const departments = $("#audit-department");
  for (const [code, name] of Object.entries(DEPARTMENTS)) {
    departments.append(h("option", { value: code.toUpperCase() }, name));
  }
  $("#audit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("#audit-form").addEventListener("reset", () => {
    setTimeout(search, 0); // after the browser has cleared the inputs
  });
  $("#audit-prev").addEventListener("click", () => showPage(page - 1));
  $("#audit-next").addEventListener("click", () => showPage(page + 1));
  $("#chain-verify").addEventListener("click", verifyChain);
}

export function load() {
  search();
}

function readFilter() {
  const id = $("#audit-id").value.trim().toUpperCase();
  if (id && !/^\d{17}[\dX]$/.test(id)) {
    throw new Error("身份证号码须为 18 位 (最后一位可为 X)");
  }
  const from = $("#audit-from").value;
  const to = $("#audit-to").value;
  if (from && to && from > to) throw new Error("开始日期不能晚于结束日期");
  const chosen = {
    idNumber: id || null,
    department: $("#audit-department").value || null,
    subject: $("#audit-subject").value.trim() || null,
    from: from || null,
    to: to || null,
  };
  return Object.fromEntries(Object.entries(chosen).filter(([, value]) => value !== null));
}

function search() {
  try {
    filter = readFilter();
  } catch (error) {
    message($("#audit-message"), "error", error.message);
    return;
  }
  message($("#audit-message"), "info", "");
  cursors = [null];
  showPage(0);
}

async function showPage(index) {
  if (index < 0 || index >= cursors.length) return;
  const output = $("#audit-message");
  await busy(null, output, async () => {
    const data = await graphql(AUDIT_LOG, { filter, first: PAGE, after: cursors[index] });
    const log = data.auditLog;
    page = index;
    if (log.pageInfo.hasNextPage) cursors[index + 1] = log.pageInfo.endCursor;
    else cursors = cursors.slice(0, index + 1);
    message(output, "info", "");
    renderRows(log.edges.map((edge) => edge.node));
    const pages = Math.max(1, Math.ceil(log.totalCount / PAGE));
    fill($("#audit-page"), `共 ${log.totalCount} 条 · 第 ${index + 1} / ${pages} 页`);
    $("#audit-prev").disabled = index === 0;
    $("#audit-next").disabled = !log.pageInfo.hasNextPage;
  });
}

// An administrator's own action releases no person field: named without "明文".
const OWN_ACTIONS = new Set([
  "AuditLog.entries",
  "AuditLog.explanation",
  "AuditLog.chain",
  "Policy.change",
  "Webhook.change",
  "Simulation.shapes",
]);

function releasedField(f) {
  if (OWN_ACTIONS.has(f.field)) return fieldName(f.field);
  // A command run on the server: its role and details, as recorded.
  if (f.field.startsWith("Admin.")) return `${fieldName(f.field)}: ${f.effect}`;
  return `${fieldName(f.field)} (${RELEASED[String(f.effect).toLowerCase()] || f.effect})`;
}

function releasedFields(fields) {
  if (!fields.length) return "—";
  return fields.map(releasedField).join("、");
}

function renderRows(entries) {
  const body = $("#audit-rows");
  if (!entries.length) {
    fill(body, h("tr", {}, h("td", { colspan: "10", class: "hint" }, "没有符合条件的审计记录。")));
    return;
  }
  fill(
    body,
    entries.map((entry) =>
      h(
        "tr",
        { dataset: { entryId: entry.id } },
        h("td", {}, entry.id),
        h("td", {}, formatTime(entry.occurredAt)),
        h("td", {}, h("code", { class: "subject" }, entry.subject)),
        h(
          "td",
          {},
          `${departmentName(entry.department)} / ${levelName(entry.level)} / ${entry.region}`,
        ),
        h("td", {}, entry.purpose ? purposeName(entry.purpose) : "未声明"),
        h("td", {}, operationName(entry.operation), " ", h("code", {}, entry.operation)),
        h("td", {}, String(entry.policyVersion)),
        h("td", {}, String(entry.personCount)),
        h("td", { class: "fields" }, releasedFields(entry.fields)),
        h(
          "td",
          {},
          h(
            "button",
            {
              type: "button",
              class: "link",
              "aria-label": `解释审计记录 ${entry.id}`,
              onclick: (event) => explain(entry.id, event.currentTarget),
            },
            "解释",
          ),
        ),
      ),
    ),
  );
}

async function verifyChain() {
  const output = $("#chain-result");
  message(output, "info", "正在校验…");
  await busy($("#chain-verify"), output, async () => {
    const chain = (await graphql(AUDIT_CHAIN)).auditChain;
    if (chain.ok) {
      message(output, "ok", `✓ 哈希链完整: 共 ${chain.entries} 条记录, 未发现篡改、删除或重排`);
    } else {
      message(
        output,
        "error",
        `✕ 哈希链校验失败: 第一条异常记录为 #${chain.firstBadId}` +
          (chain.reason ? ` (${chain.reason})` : "") +
          `; 共 ${chain.entries} 条记录`,
      );
    }
  });
}

async function explain(entryId, button) {
  const panel = $("#explain-panel");
  const output = h("p", { class: "message", hidden: true });
  fill(panel, h("h3", {}, `审计记录 #${entryId} 的解释`), output);
  panel.hidden = false;
  await busy(button, output, async () => {
    const explanation = (await graphql(EXPLAIN, { id: entryId })).explainAccess;
    if (!explanation) {
      message(output, "error", `审计记录 #${entryId} 不存在`);
      return;
    }
    renderExplanation(panel, explanation);
  });
  panel.scrollIntoView({ block: "nearest" });
}

function renderExplanation(panel, e) {
  fill(
    panel,
    h(
      "button",
      {
        type: "button",
        class: "close",
        "aria-label": "关闭",
        onclick: () => {
          panel.hidden = true;
        },
      },
      "×",
    ),
    h("h3", {}, `审计记录 #${e.entryId} 的解释`),
    h(
      "p",
      { class: "meta" },
      `${formatTime(e.occurredAt)} · `,
      h("code", { class: "subject" }, e.subject),
      ` · ${departmentName(e.department)} `,
      `${levelName(e.level)} · 辖区 ${e.region} · 用途 ${purposeName(e.purpose)} · 策略版本 ${e.policyVersion}`,
    ),
    h("p", { class: "hint" }, "匹配的策略主体: ", h("code", {}, e.subjectKeys.join(", "))),
    h("h4", {}, "字段"),
    h(
      "table",
      { class: "data explain" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["字段", "效果", "本次释放", "原因", "依据的策略行"].map((t) =>
            h("th", { scope: "col" }, t),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        e.fields.map((f) => {
          const label = effectLabel(f.effect, f.field);
          return h(
            "tr",
            {},
            h("td", {}, fieldName(f.field), " ", h("code", {}, f.field)),
            h(
              "td",
              {},
              h("span", { class: `effect ${label.className}` }, `${label.symbol} ${label.text}`),
            ),
            h("td", {}, f.released ? RELEASED[String(f.released).toLowerCase()] || f.released : "未释放"),
            h("td", {}, withCode(f.reason, h)),
            h(
              "td",
              {},
              f.lines.length
                ? h(
                    "ul",
                    { class: "lines" },
                    f.lines.map((l) => lineItem(l, "line")),
                  )
                : "—",
            ),
          );
        }),
      ),
    ),
    h("h4", {}, "人员范围条件"),
    e.rows.length
      ? h(
          "ul",
          { class: "rows" },
          e.rows.map((row) =>
            h(
              "li",
              {},
              rowConditionName(row.condition),
              " ",
              h("code", {}, row.condition),
              row.lines.length
                ? h(
                    "ul",
                    { class: "lines" },
                    row.lines.map((l) => lineItem(l, "line")),
                  )
                : " (无策略行: 默认拒绝)",
            ),
          ),
        )
      : h("p", { class: "hint" }, "本次请求没有人员范围条件。"),
  );
}
