// 救助链: one person's timeline, looked up by ID number under a purpose the clerk chooses among
// its allowed ones. What the policy masks stays masked; what it denies is simply not shown.

import { graphql, fieldProblems, purpose } from "./api.js";
import { RELIEF_CHAIN } from "./queries.js";
import { $, busy, fill, goTo, h, inputError, message, session } from "./ui.js";
import {
  CATEGORIES,
  CHAIN_EVENTS,
  GENDERS,
  departmentName,
  name,
  purposeName,
} from "./words.js";

export const NOT_FOUND = "未找到（不存在或不在本辖区）";

export function init() {
  $("#chain-form").addEventListener("submit", (event) => {
    event.preventDefault();
    lookUp();
  });
}

export function signedIn() {
  fill($("#chain"));
  message($("#chain-message"), "info", "");
  purposeChanged();
}

/** Offer the allowed purposes, the one chosen in the top bar first selected. */
export function purposeChanged() {
  const chosen = purpose.get();
  fill(
    $("#chain-purpose"),
    session.purposes.length
      ? session.purposes.map((code) =>
          h("option", { value: code, selected: code === chosen }, purposeName(code)),
        )
      : h("option", { value: "" }, "无 (本部门无权读取人员数据)"),
  );
}

/** detail.idNumber: look this person up at once (from 待办, 预警, 异常回传). */
export function load(detail = {}) {
  if (detail.idNumber) {
    $("#chain-id").value = detail.idNumber;
    lookUp();
  } else {
    $("#chain-id").focus();
  }
}

async function lookUp() {
  const output = $("#chain-message");
  const target = $("#chain");
  await busy($("#chain-search"), output, async () => {
    const idNumber = $("#chain-id").value.trim().toUpperCase();
    if (!/^\d{17}[\dX]$/.test(idNumber)) throw inputError("身份证号码须为 18 位 (最后一位可为 X)");
    message(output, "info", "");
    fill(target);
    const data = await graphql(RELIEF_CHAIN, { idNumber }, $("#chain-purpose").value);
    const chain = data.reliefChain;
    if (!chain) {
      message(output, "info", NOT_FOUND);
      return;
    }
    const problems = fieldProblems(data);
    if (problems.length) message(output, "info", problems.join("; "));
    fill(target, personCard(chain.person), timeline(chain.events));
  });
}

function personCard(person) {
  // Only what was released: a denied field is null (FORBIDDEN) and is left out entirely.
  const facts = [
    ["姓名", person.name],
    ["身份证号码", person.idNumber],
    ["性别", person.gender ? name(GENDERS, person.gender) : null],
    ["出生日期", person.birthDate],
    ["行政区划", person.regionCode],
    [
      "核实中",
      person.underVerification === null || person.underVerification === undefined
        ? null
        : person.underVerification
          ? "是 (有回传的异常正在核实, 相关待遇暂停)"
          : "否",
    ],
  ].filter(([, value]) => value !== null && value !== undefined);
  const statuses = person.reliefStatuses;
  return h(
    "section",
    { class: "card person-card", "aria-labelledby": "chain-person-title" },
    h("h2", { id: "chain-person-title" }, person.name || "人员"),
    h(
      "dl",
      { class: "facts" },
      facts.map(([label, value]) => [h("dt", {}, label), h("dd", { dataset: { fact: label } }, value)]),
    ),
    Array.isArray(statuses)
      ? [
          h("h3", {}, "救助身份"),
          statuses.length
            ? h(
                "ul",
                { class: "statuses" },
                statuses.map((s) =>
                  h(
                    "li",
                    {},
                    h("strong", {}, name(CATEGORIES, s.category)),
                    s.sourceDepartment ? ` · ${departmentName(s.sourceDepartment)}` : "",
                    s.validFrom ? ` · ${s.validFrom} 至 ${s.validTo || "今"}` : "",
                  ),
                ),
              )
            : h("p", { class: "hint" }, "无救助身份记录"),
        ]
      : null,
  );
}

function timeline(events) {
  if (!events.length) {
    return h("p", { class: "hint" }, "救助链上没有本部门可查看的事件。");
  }
  return h(
    "section",
    { "aria-labelledby": "chain-events-title" },
    h("h3", { id: "chain-events-title" }, `救助链 (${events.length} 个事件)`),
    h(
      "ol",
      { class: "timeline" },
      events.map((event) =>
        h(
          "li",
          { class: `event event-${event.kind.toLowerCase()}`, dataset: { kind: event.kind } },
          h("time", { datetime: event.date }, event.date),
          h(
            "div",
            { class: "event-body" },
            h("strong", {}, name(CHAIN_EVENTS, event.kind)),
            event.department ? h("span", { class: "dept" }, departmentName(event.department)) : null,
            event.category ? h("span", { class: "category" }, name(CATEGORIES, event.category)) : null,
            h("p", { class: "summary" }, event.summary),
            event.taskId
              ? h(
                  "button",
                  {
                    type: "button",
                    class: "link",
                    onclick: () => goTo("tasks", { taskId: event.taskId }),
                  },
                  "查看任务",
                )
              : null,
          ),
        ),
      ),
    ),
  );
}
