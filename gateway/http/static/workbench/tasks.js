// 待办: the tasks pushed to the clerk's department, most urgent first, answered in place.

import { graphql, fieldProblems } from "./api.js";
import { ACKNOWLEDGE_TASKS, OPEN_TASKS, TASKS, ANSWER_TASK } from "./queries.js";
import {
  $,
  busy,
  choice,
  daysLeftText,
  department,
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
  ANSWERS_BY_KIND,
  CATEGORIES,
  RECOGNISES,
  TASK_KINDS,
  TASK_STATES,
  departmentName,
  name,
} from "./words.js";

const PAGE = 50;
// The filters: 未办结 (every unanswered state), each state, and everything.
const FILTERS = [
  ["UNANSWERED", "未办结"],
  ["OVERDUE", "已超期"],
  ["DUE_SOON", "临期 (2 个工作日内到期)"],
  ["OPEN", "待办 (期限未临近)"],
  ["WAITING", "待补充材料"],
  ["ANSWERED", "已答复"],
  ["ALL", "全部"],
];
const UNANSWERED = ["overdue", "dueSoon", "open", "waiting"];

let filter = "UNANSWERED";
let after = null;
let shown = [];

export function init() {
  fill(
    $("#task-states"),
    FILTERS.map(([value, text]) =>
      h(
        "span",
        { class: "radio" },
        h("input", {
          type: "radio",
          name: "task-state",
          id: `task-state-${value}`,
          value,
          checked: value === filter,
          onchange: () => {
            filter = value;
            refresh();
          },
        }),
        h(
          "label",
          { for: `task-state-${value}`, class: "inline" },
          text,
          " ",
          h("span", { class: "count", dataset: { state: value }, hidden: true }),
        ),
      ),
    ),
  );
  $("#tasks-form").addEventListener("submit", (event) => {
    event.preventDefault();
    refresh();
  });
  $("#tasks-more").addEventListener("click", () => page(true));
}

export function signedIn() {
  filter = "UNANSWERED";
  $("#task-state-UNANSWERED").checked = true;
}

/** detail.taskId / detail.state: open the tab on one task (from 预警). */
export async function load(detail = {}) {
  if (detail.taskId) {
    // From 预警 (the task's state is known) or from the chain (it is not: look in all).
    filter = !detail.state ? "ALL" : detail.state === "ANSWERED" ? "ANSWERED" : "UNANSWERED";
    $(`#task-state-${filter}`).checked = true;
  }
  await refresh();
  if (detail.taskId) {
    const card = document.querySelector(`article.task[data-task-id="${CSS.escape(detail.taskId)}"]`);
    if (card) {
      card.classList.add("highlight");
      card.scrollIntoView({ block: "center" });
      card.focus();
    } else {
      message($("#tasks-message"), "info", "该任务不在当前列表中 (可能已答复或不在本部门)。");
    }
  }
}

async function refresh() {
  after = null;
  shown = [];
  await page(false);
}

function setCount(state, count) {
  const badge = document.querySelector(`#task-states .count[data-state="${state}"]`);
  if (!badge) return;
  badge.hidden = count === null || count === undefined;
  fill(badge, String(count ?? ""));
}

async function page(more) {
  const output = $("#tasks-message");
  await busy(more ? $("#tasks-more") : $("#tasks-refresh"), output, async () => {
    let tasks;
    let hasNext = false;
    let problems;
    if (filter === "UNANSWERED") {
      const data = await graphql(OPEN_TASKS, { first: 100 });
      problems = fieldProblems(data);
      tasks = UNANSWERED.flatMap((key) => data[key].edges.map((edge) => edge.node));
      tasks.sort((a, b) => (a.dueOn < b.dueOn ? -1 : a.dueOn > b.dueOn ? 1 : 0));
      const total = UNANSWERED.reduce((sum, key) => sum + data[key].totalCount, 0);
      setCount("UNANSWERED", total);
      setCount("OVERDUE", data.overdue.totalCount);
      setCount("DUE_SOON", data.dueSoon.totalCount);
      setCount("OPEN", data.open.totalCount);
      setCount("WAITING", data.waiting.totalCount);
      setCount("ANSWERED", data.answered.totalCount);
      const badge = $("#tasks-count");
      badge.hidden = total === 0;
      fill(badge, String(total));
      if (UNANSWERED.some((key) => data[key].pageInfo.hasNextPage)) {
        problems.push(`未办结任务共 ${total} 条, 此处显示最紧急的 ${tasks.length} 条; 按状态筛选可逐页查看全部`);
      }
    } else {
      const variables = { first: PAGE, after: more ? after : null };
      if (filter !== "ALL") variables.filter = { state: filter };
      const data = await graphql(TASKS, variables);
      problems = fieldProblems(data);
      tasks = data.tasks.edges.map((edge) => edge.node);
      hasNext = data.tasks.pageInfo.hasNextPage;
      after = data.tasks.pageInfo.endCursor;
      setCount(filter, data.tasks.totalCount);
    }
    shown = more ? shown.concat(tasks) : tasks;
    message(output, "info", problems.join("; "));
    render();
    $("#tasks-more").hidden = !hasNext;
    await acknowledge(tasks);
  });
}

// Shown to a clerk of the department that must answer: the tasks are read (已阅回执). The hub
// viewing other departments' tasks leaves no receipt (the server refuses it anyway).
async function acknowledge(tasks) {
  const unread = tasks.filter((t) => !t.readAt && t.department === department().toUpperCase());
  if (!unread.length) return;
  try {
    const data = await graphql(ACKNOWLEDGE_TASKS, { ids: unread.map((t) => t.id) });
    const read = new Map(data.acknowledgeTasks.tasks.map((t) => [t.id, t]));
    shown = shown.map((t) => (read.has(t.id) ? { ...t, ...read.get(t.id) } : t));
    render();
  } catch {
    // a receipt that could not be written is written the next time the list is shown
  }
}

function receiptsText(task) {
  const when = (iso) => (iso ? beijing(iso) : null);
  const parts = [];
  // a department without a system of its own (no webhook) reads its tasks here: no "delivered"
  if (task.deliveredAt) parts.push(`已送达业务系统 ${when(task.deliveredAt)}`);
  parts.push(task.readAt ? `已阅 ${when(task.readAt)}${task.readBy ? ` (${task.readBy})` : ""}` : "未阅");
  if (task.answeredOn) parts.push(`已答复 ${task.answeredOn}`);
  return `回执: ${parts.join(" · ")}`;
}

function beijing(iso) {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return iso;
  const shifted = new Date(moment.getTime() + 8 * 3600 * 1000);
  return shifted.toISOString().slice(0, 16).replace("T", " ");
}

function render() {
  const list = $("#tasks");
  if (!shown.length) {
    fill(list, h("p", { class: "hint empty" }, "没有符合条件的任务。"));
    return;
  }
  fill(list, shown.map(taskCard));
}

function stateBadge(task) {
  return h(
    "span",
    { class: `state state-${task.state.toLowerCase()}` },
    name(TASK_STATES, task.state),
  );
}

function taskCard(task) {
  const id = lookupId(task.person);
  const chainButton = h(
    "button",
    {
      type: "button",
      class: "link",
      disabled: !id,
      title: id ? null : "身份证号码不可见 (脱敏或无权查看), 无法查询救助链",
      onclick: () => goTo("chain", { idNumber: id }),
    },
    "查看救助链",
  );
  return h(
    "article",
    { class: "task card", dataset: { taskId: task.id, state: task.state }, tabindex: "-1" },
    h(
      "header",
      { class: "task-head" },
      stateBadge(task),
      h("strong", {}, name(TASK_KINDS, task.kind)),
      h("span", { class: "person" }, personText(task.person)),
      chainButton,
    ),
    h(
      "p",
      { class: "meta" },
      `推送日期 ${task.openedOn} · 答复期限 ${task.dueOn}`,
      task.workingDaysLeft !== null && task.workingDaysLeft !== undefined
        ? h("span", { class: task.overdue ? "days overdue" : "days" }, ` · ${daysLeftText(task)}`)
        : null,
      ` · 县区 ${task.regionCode} · 承办 ${departmentName(task.department)}`,
      task.category ? ` · 待核查身份 ${name(CATEGORIES, task.category)}` : null,
    ),
    h("p", { class: "receipts", dataset: { read: task.readAt ? "yes" : "no" } }, receiptsText(task)),
    task.warning
      ? h(
          "p",
          { class: "rule" },
          `预警 (${task.warning.month}): ${task.warning.ruleDescription} `,
          h("code", {}, task.warning.rule),
        )
      : null,
    answerPart(task),
  );
}

function answerPart(task) {
  const shownAnswer = task.answer
    ? h(
        "p",
        { class: "answer", dataset: { answer: task.answer } },
        h("strong", {}, "答复: "),
        name(ANSWERS, task.answer),
        task.answerCategory ? ` (${name(CATEGORIES, task.answerCategory)})` : "",
        ` · ${task.answeredOn || ""} · ${task.answeredBy || ""}`,
        task.note ? h("span", { class: "note" }, ` · 说明: ${task.note}`) : null,
      )
    : null;
  if (task.state === "ANSWERED") return shownAnswer;
  return [shownAnswer, answerForm(task)];
}

function answerForm(task) {
  const key = task.id;
  const answers = ANSWERS_BY_KIND[task.kind] || Object.keys(ANSWERS);
  const categories = RECOGNISES[department()] || [];
  const [answerLabel, answerSelect] = choice(
    `answer-${key}`,
    "答复结果",
    [["", "请选择"], ...answers.map((code) => [code, name(ANSWERS, code)])],
  );
  const [categoryLabel, categorySelect] = choice(
    `category-${key}`,
    "认定类别",
    [["", "请选择"], ...categories.map((code) => [code, name(CATEGORIES, code)])],
  );
  const categoryField = h("div", { class: "field", hidden: true }, categoryLabel, categorySelect);
  const noteField = h(
    "div",
    { class: "field grow" },
    h("label", { for: `note-${key}` }, "答复说明"),
    h("input", {
      type: "text",
      id: `note-${key}`,
      maxlength: "500",
      autocomplete: "off",
      placeholder: "如: 已入户核实; 需补充材料时必填",
    }),
  );
  answerSelect.addEventListener("change", () => {
    categoryField.hidden = answerSelect.value !== "RECOGNIZED";
  });
  const output = h("p", { class: "message", hidden: true });
  const submit = h("button", { type: "submit", class: "primary" }, "提交答复");
  const form = h(
    "form",
    { class: "answer-form", "aria-label": `答复任务 ${personText(task.person)}` },
    h("div", { class: "field" }, answerLabel, answerSelect),
    categoryField,
    noteField,
    h("div", { class: "field" }, submit),
    output,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, output, async () => {
      const answer = answerSelect.value;
      const note = $(`#note-${CSS.escape(key)}`, form).value.trim();
      if (!answer) throw inputError("请选择答复结果");
      if (answer === "RECOGNIZED" && !categorySelect.value) throw inputError("请选择认定的救助类别");
      if (answer === "NEEDS_MORE_INFORMATION" && !note) throw inputError("需补充材料时请在答复说明中写明需要的材料");
      const result = await graphql(ANSWER_TASK, {
        taskId: task.id,
        answer,
        category: answer === "RECOGNIZED" ? categorySelect.value : null,
        note: note || null,
      });
      replace(result.answerTask.task, result.answerTask.reliefStatusCreated);
    });
  });
  return form;
}

/** The answer shows at once: the task's card is redrawn from the mutation's answer. */
function replace(task, created) {
  const index = shown.findIndex((t) => t.id === task.id);
  if (index >= 0) shown[index] = task;
  const old = document.querySelector(`article.task[data-task-id="${CSS.escape(task.id)}"]`);
  const card = taskCard(task);
  const done = task.state === "ANSWERED" ? "已答复" : `已记录, 新的答复期限 ${task.dueOn}`;
  const note = h("p", { class: "message message-ok", role: "status" }, `✓ ${done}`);
  if (created) note.append("; 已生成救助身份");
  card.append(note);
  if (old) old.replaceWith(card);
  card.focus();
}
