// 异常回传: anomalies sent back to the clerk's department (10 working days to verify),
// resolved in place with a resolution and a note.

import { fieldProblems, graphql } from "./api.js";
import { ANOMALIES, OPEN_ANOMALIES, RESOLVE_ANOMALY } from "./queries.js";
import {
  $,
  busy,
  choice,
  fill,
  goTo,
  h,
  inputError,
  lookupId,
  message,
  personText,
} from "./ui.js";
import {
  ANOMALY_KINDS,
  ANOMALY_STATUSES,
  CHOOSABLE_RESOLUTIONS,
  RESOLUTIONS,
  departmentName,
  name,
} from "./words.js";

const PAGE = 50;
let after = null;
let filter = {};

export function init() {
  const kinds = $("#anomalies-kind");
  for (const [code, text] of Object.entries(ANOMALY_KINDS)) {
    kinds.append(h("option", { value: code }, text));
  }
  $("#anomalies-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("#anomalies-more").addEventListener("click", () => page(true));
}

export function signedIn() {
  // The tab's badge: open anomalies, without opening the tab.
  graphql(OPEN_ANOMALIES)
    .then((data) => showOpenCount(data.anomalies.totalCount))
    .catch(() => showOpenCount(0));
}

function showOpenCount(count) {
  const badge = $("#anomalies-count");
  badge.hidden = !count;
  fill(badge, String(count));
}

export function load() {
  search();
}

function search() {
  const chosen = {
    status: $("#anomalies-status").value || null,
    kind: $("#anomalies-kind").value || null,
  };
  filter = Object.fromEntries(Object.entries(chosen).filter(([, value]) => value !== null));
  after = null;
  page(false);
}

async function page(more) {
  const output = $("#anomalies-message");
  await busy(more ? $("#anomalies-more") : $("#anomalies-search"), output, async () => {
    const data = await graphql(ANOMALIES, { filter, first: PAGE, after: more ? after : null });
    const connection = data.anomalies;
    after = connection.pageInfo.endCursor;
    const cards = connection.edges.map((edge) => card(edge.node));
    const list = $("#anomalies");
    if (more) list.append(...cards);
    else if (cards.length) fill(list, cards);
    else fill(list, h("p", { class: "hint empty" }, "没有符合条件的异常。"));
    if (filter.status === "OPEN" && !filter.kind) showOpenCount(connection.totalCount);
    const problems = fieldProblems(data);
    message(output, "info", [`共 ${connection.totalCount} 条`, ...problems].join("; "));
    $("#anomalies-more").hidden = !connection.pageInfo.hasNextPage;
  });
}

function card(anomaly) {
  const id = lookupId(anomaly.person);
  return h(
    "article",
    { class: "anomaly card", dataset: { anomalyId: anomaly.id, status: anomaly.status } },
    h(
      "header",
      { class: "task-head" },
      h(
        "span",
        { class: `state state-${anomaly.overdue ? "overdue" : anomaly.status.toLowerCase()}` },
        anomaly.overdue ? "已超期" : name(ANOMALY_STATUSES, anomaly.status),
      ),
      h("strong", {}, name(ANOMALY_KINDS, anomaly.kind)),
      h("span", { class: "person" }, personText(anomaly.person)),
      h(
        "button",
        {
          type: "button",
          class: "link",
          disabled: !id,
          title: id ? null : "身份证号码不可见, 无法查询救助链",
          onclick: () => goTo("chain", { idNumber: id }),
        },
        "查看救助链",
      ),
    ),
    h("p", {}, anomaly.description),
    h(
      "p",
      { class: "meta" },
      `发现日期 ${anomaly.openedOn} · 核实期限 ${anomaly.dueOn}`,
      anomaly.relatedDepartment ? ` · 数据不一致的另一方 ${departmentName(anomaly.relatedDepartment)}` : "",
      anomaly.batchId ? ` · 批次 ${anomaly.batchId}` : "",
    ),
    anomaly.status === "RESOLVED" ? resolved(anomaly) : resolveForm(anomaly),
  );
}

function resolved(anomaly) {
  return h(
    "p",
    { class: "answer", dataset: { resolution: anomaly.resolution || "" } },
    h("strong", {}, "处理结果: "),
    name(RESOLUTIONS, anomaly.resolution),
    ` · ${anomaly.resolvedOn || ""} · ${anomaly.resolvedBy || ""}`,
    anomaly.note ? ` · 说明: ${anomaly.note}` : "",
  );
}

function resolveForm(anomaly) {
  const key = anomaly.id;
  const [label, select] = choice(`resolution-${key}`, "处理结果", [
    ["", "请选择"],
    ...CHOOSABLE_RESOLUTIONS.map((code) => [code, name(RESOLUTIONS, code)]),
  ]);
  const note = h("input", {
    type: "text",
    id: `resolution-note-${key}`,
    maxlength: "500",
    autocomplete: "off",
    placeholder: "核实情况",
  });
  const output = h("p", { class: "message", hidden: true });
  const submit = h("button", { type: "submit", class: "primary" }, "提交处理结果");
  const form = h(
    "form",
    { class: "answer-form", "aria-label": `处理异常 ${name(ANOMALY_KINDS, anomaly.kind)}` },
    h("div", { class: "field" }, label, select),
    h("div", { class: "field grow" }, h("label", { for: `resolution-note-${key}` }, "处理说明"), note),
    h("div", { class: "field" }, submit),
    output,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, output, async () => {
      if (!select.value) throw inputError("请选择处理结果");
      const data = await graphql(RESOLVE_ANOMALY, {
        id: anomaly.id,
        resolution: select.value,
        note: note.value.trim() || null,
      });
      const updated = card(data.resolveAnomaly);
      updated.append(h("p", { class: "message message-ok", role: "status" }, "✓ 已处理"));
      form.closest("article").replaceWith(updated);
      signedIn(); // the badge
    });
  });
  return form;
}
