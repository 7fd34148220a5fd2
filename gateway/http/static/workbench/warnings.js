// 预警: high-cost warnings in the clerk's jurisdiction, this month and earlier, each with its
// rule, threshold and the figure that triggered it, linked to its tasks (answered in 待办).

import { fieldProblems, graphql } from "./api.js";
import { WARNINGS } from "./queries.js";
import {
  $,
  busy,
  daysLeftText,
  fill,
  goTo,
  h,
  inputError,
  lookupId,
  message,
  personText,
} from "./ui.js";
import {
  ANSWERS,
  MEASURES,
  TASK_STATES,
  departmentName,
  levelName,
  name,
} from "./words.js";

const PAGE = 50;
let filter = {};
let after = null;

export function init() {
  $("#warnings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("#warnings-form").addEventListener("reset", () => setTimeout(search, 0));
  $("#warnings-more").addEventListener("click", () => page(true));
}

export function load() {
  search();
}

function readFilter() {
  const month = $("#warnings-month").value.trim();
  const region = $("#warnings-region").value.trim();
  if (month && !/^\d{4}-(0[1-9]|1[0-2])$/.test(month)) {
    throw inputError("预警月份应为 YYYY-MM, 如 2026-10");
  }
  if (region && !/^\d{2}(\d{2}){0,2}$/.test(region)) {
    throw inputError("区划代码前缀应为 2、4 或 6 位数字");
  }
  const chosen = { month: month || null, regionPrefix: region || null };
  return Object.fromEntries(Object.entries(chosen).filter(([, value]) => value !== null));
}

function search() {
  try {
    filter = readFilter();
  } catch (error) {
    message($("#warnings-message"), "error", error.message);
    return;
  }
  after = null;
  page(false);
}

async function page(more) {
  const output = $("#warnings-message");
  await busy(more ? $("#warnings-more") : $("#warnings-search"), output, async () => {
    const data = await graphql(WARNINGS, { filter, first: PAGE, after: more ? after : null });
    const connection = data.warnings;
    after = connection.pageInfo.endCursor;
    const rows = connection.edges.map((edge) => row(edge.node));
    const body = $("#warnings-rows");
    if (more) body.append(...rows);
    else if (rows.length) fill(body, rows);
    else fill(body, h("tr", {}, h("td", { colspan: "8", class: "hint" }, "没有符合条件的预警。")));
    const shown = body.querySelectorAll("tr[data-warning-id]").length;
    const problems = fieldProblems(data);
    message(output, "info", [`共 ${connection.totalCount} 条预警, 已显示 ${shown} 条`, ...problems].join("; "));
    $("#warnings-more").hidden = !connection.pageInfo.hasNextPage;
  });
}

function amount(value, measure) {
  if (value === null || value === undefined) return h("span", { class: "hint" }, "无权查看");
  const unit = MEASURES[measure]?.unit || "";
  return `${value} ${unit}`;
}

function row(warning) {
  const id = lookupId(warning.person);
  return h(
    "tr",
    { dataset: { warningId: warning.id } },
    h("td", {}, warning.month),
    h(
      "td",
      {},
      personText(warning.person),
      id
        ? h(
            "button",
            {
              type: "button",
              class: "link",
              "aria-label": `查看救助链 ${personText(warning.person)}`,
              onclick: () => goTo("chain", { idNumber: id }),
            },
            "救助链",
          )
        : null,
    ),
    h("td", {}, warning.regionCode),
    h("td", {}, warning.ruleDescription, h("br"), h("code", {}, warning.rule)),
    h(
      "td",
      { class: "number" },
      `${MEASURES[warning.measure]?.name || warning.measure} 超过 `,
      amount(warning.threshold, warning.measure),
    ),
    h("td", { class: "number figure" }, amount(warning.figure, warning.measure)),
    h("td", {}, levelName(warning.attention)),
    h(
      "td",
      {},
      warning.tasks.length
        ? h("ul", { class: "task-links" }, warning.tasks.map((task) => taskLink(task, warning)))
        : h("span", { class: "hint" }, "无本部门任务"),
    ),
  );
}

function taskLink(task, warning) {
  const status = task.answer
    ? `${name(ANSWERS, task.answer)} (${task.answeredOn || ""})`
    : `${name(TASK_STATES, task.state)}, 期限 ${task.dueOn}, ${daysLeftText(task)}`;
  return h(
    "li",
    { dataset: { taskId: task.id } },
    `${departmentName(task.department)}: ${status} `,
    h(
      "button",
      {
        type: "button",
        class: "link",
        "aria-label": `${task.answer ? "查看任务" : "去办理"}: ${personText(warning.person)} ${warning.month} 预警`,
        onclick: () => goTo("tasks", { taskId: task.id, state: task.state }),
      },
      task.answer ? "查看任务" : "去办理",
    ),
  );
}
