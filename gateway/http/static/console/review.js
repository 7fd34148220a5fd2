// 审批: pending proposals with their diff (each line's 期限), the change of the policy
// expectations and the expectations the proposal breaks (it cannot be approved while any), the
// field changes, a simulation of the proposed policy next to the current one, and the decision
// (four-eyes: never one's own proposal).

import { graphql } from "./api.js";
import { $, busy, fill, h, message } from "./dom.js";
import {
  DEPARTMENTS,
  LEVELS,
  PURPOSES,
  USUAL_PURPOSE,
  effectLabel,
  fieldName,
  formatTime,
  parseSubject,
  rowConditionName,
  shortId,
  subjectName,
} from "./labels.js";
import { failureItem, lineItem } from "./lines.js";
import { APPROVE, PROPOSALS, REJECT, ROLLBACK, SIMULATE, VERSIONS } from "./queries.js";

// The pending proposals as review needs them: lines with their 期限, the proposed expectations
// next to those of the base version, and the expectations the change breaks (issue 16).
const REVIEW_LINE = "subject object action purpose region editable validTo expired";
const REVIEW_PROPOSALS = `
query ConsoleReviewProposals($status: ProposalStatus, $first: Int) {
  policyProposals(status: $status, first: $first) {
    totalCount
    edges { node {
      id status title note proposedBy proposedAt baseVersion
      decidedBy decidedAt decisionNote resultingVersion canApprove
      added { ${REVIEW_LINE} }
      removed { ${REVIEW_LINE} }
      fieldChanges { subject field before after }
      expectations expectationsBefore
      expectationFailures { line expectation purpose actual expected message }
    } }
  }
}`;

// Person fields a simulation answer holds, by the record type they belong to (column headers).
const RELATION_TYPES = {
  household: "Household",
  members: "Person",
  reliefStatuses: "ReliefStatus",
  enrollments: "Enrollment",
  costBurdens: "CostBurden",
};
import { session, setVersion } from "./state.js";

const PAGE = 50;
const REGION_LENGTH = { province: 2, city: 4, county: 6 };
const REGION_EXAMPLE = { province: "如 37", city: "如 3701", county: "如 370102 (6 位县级代码)" };

export function init() {
  $("#proposals-refresh").addEventListener("click", () => load());
}

export async function load() {
  await Promise.all([loadProposals(), loadVersions()]);
}

export async function refreshPendingCount() {
  try {
    const data = await graphql(PROPOSALS, { status: "PENDING", first: 1 });
    showPendingCount(data.policyProposals.totalCount);
  } catch {
    // the count is a hint; the tab itself shows any error
  }
}

function showPendingCount(count) {
  const badge = $("#pending-count");
  badge.hidden = !count;
  fill(badge, count ? String(count) : "");
  badge.setAttribute("aria-label", `${count} 个待审批`);
}

async function loadProposals() {
  const target = $("#proposals");
  await busy(null, $("#review-message"), async () => {
    const data = await graphql(REVIEW_PROPOSALS, { status: "PENDING", first: PAGE });
    const proposals = data.policyProposals.edges.map((edge) => edge.node);
    showPendingCount(data.policyProposals.totalCount);
    if (!proposals.length) {
      fill(target, h("p", { class: "hint empty" }, "目前没有待审批的变更申请。"));
      return;
    }
    fill(target, proposals.map(proposalCard));
  });
}

// ------------------------------------------------------------------ one proposal

function proposalCard(proposal) {
  const own = proposal.proposedBy === session.me?.subject;
  const card = h(
    "article",
    { class: "card proposal", dataset: { proposalId: proposal.id } },
    h(
      "h3",
      {},
      h("span", { class: "id", title: proposal.id }, `#${shortId(proposal.id)}`),
      ` ${proposal.title}`,
    ),
    h(
      "p",
      { class: "meta" },
      "提出人 ",
      h("code", { class: "subject" }, proposal.proposedBy),
      `${own ? " (您本人)" : ""} · ${formatTime(proposal.proposedAt)}`,
      ` · 基于策略版本 ${proposal.baseVersion}`,
    ),
    proposal.note ? h("p", { class: "note" }, proposal.note) : null,
    h("h4", {}, "变更内容"),
    h(
      "ul",
      { class: "diff" },
      proposal.added.map((line) => lineItem(line, "added")),
      proposal.removed.map((line) => lineItem(line, "removed")),
    ),
    expectationsChange(proposal),
    expectationsCheck(proposal),
    h("h4", {}, "字段效果变化"),
    fieldChangesTable(proposal.fieldChanges),
    h(
      "p",
      {},
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () =>
            document.dispatchEvent(
              new CustomEvent("console:preview", { detail: { proposalId: proposal.id } }),
            ),
        },
        "在策略表中预览通过后的效果",
      ),
    ),
    simulationSection(proposal),
    decisionSection(proposal, own),
  );
  return card;
}

function expectationLines(text) {
  return (text || "")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.startsWith("e,"));
}

/** The proposed complete set of expectations, as a diff against the base version's. */
function expectationsChange(proposal) {
  if (proposal.expectations === null || proposal.expectations === undefined) return null;
  const before = expectationLines(proposal.expectationsBefore);
  const after = expectationLines(proposal.expectations);
  const added = after.filter((line) => !before.includes(line));
  const removed = before.filter((line) => !after.includes(line));
  return [
    h("h4", {}, "策略期望的修改 (与策略行一并审批)"),
    added.length || removed.length
      ? h(
          "ul",
          { class: "diff expectations" },
          added.map((line) => h("li", { class: "added" }, h("code", {}, line))),
          removed.map((line) => h("li", { class: "removed" }, h("code", {}, line))),
        )
      : h("p", { class: "hint" }, "期望的内容不变 (仅顺序或格式不同)。"),
  ];
}

/** The policy tests: the expectations the proposed policy breaks, or that it meets them. */
function expectationsCheck(proposal) {
  const failures = proposal.expectationFailures || [];
  const count = expectationLines(proposal.expectations ?? proposal.expectationsBefore).length;
  if (!failures.length) {
    return h(
      "p",
      { class: "hint expectations-ok" },
      count ? `策略期望检查: 全部 ${count} 条成立。` : "策略期望检查: 没有策略期望。",
    );
  }
  return [
    h("h4", {}, "策略期望检查: 不成立"),
    h(
      "p",
      { class: "reason" },
      `该申请不满足 ${failures.length} 项策略期望, 不能批准; 如确需变更, 须在同一申请中修改相应的期望 (仍须另一位安全管理员批准)。`,
    ),
    h(
      "ul",
      { class: "expectation-failures" },
      failures.map(failureItem),
    ),
  ];
}

function effectBadge(effect, field) {
  const label = effectLabel(effect, field);
  return h("span", { class: `effect ${label.className}` }, `${label.symbol} ${label.text}`);
}

function fieldChangesTable(changes) {
  if (!changes.length) {
    return h(
      "p",
      { class: "hint" },
      "按部门和层级的字段效果不变 (可能只影响带区划的行或人员范围)。",
    );
  }
  return h(
    "table",
    { class: "data changes" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "主体"),
        h("th", { scope: "col" }, "字段"),
        h("th", { scope: "col" }, "变更前"),
        h("th", { scope: "col" }, "变更后"),
      ),
    ),
    h(
      "tbody",
      {},
      changes.map((change) =>
        h(
          "tr",
          { dataset: { subject: change.subject, field: change.field } },
          h("td", {}, subjectName(change.subject), " ", h("code", {}, change.subject)),
          h("td", {}, fieldName(change.field), " ", h("code", {}, change.field)),
          h("td", {}, effectBadge(change.before, change.field)),
          h("td", {}, effectBadge(change.after, change.field)),
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------------ simulation

// Person fields a simulation query asks for, by the policy object they are granted as.
const RELATION_SELECTIONS = {
  Household: ["household", "id"],
  ReliefStatus: ["reliefStatuses", "category"],
  Enrollment: ["enrollments", "year"],
  CostBurden: ["costBurdens", "year"],
};
const SKIPPED = new Set(["provenance", "effectiveRelief"]);

/** A people query touching every field the proposal changes, plus who the people are. */
export function suggestedQuery(proposal) {
  const scalars = new Set(["idNumber", "name", "regionCode"]);
  const relations = new Map();
  const objects = [...proposal.added, ...proposal.removed].map((line) => line.object);
  for (const change of proposal.fieldChanges) objects.push(change.field);
  for (const object of objects) {
    const match = /^([A-Za-z]+)\.([A-Za-z]+)$/.exec(object);
    if (!match || SKIPPED.has(match[2])) continue;
    const [, type, field] = match;
    if (type === "Person") {
      const relation = Object.values(RELATION_SELECTIONS).find(([name]) => name === field);
      if (relation) {
        if (!relations.has(relation[0])) relations.set(relation[0], new Set([relation[1]]));
      } else {
        scalars.add(field);
      }
    } else if (type === "Household" && field === "members") {
      relations.set("household", new Set(["id", "members { id }"]));
    } else if (RELATION_SELECTIONS[type]) {
      const [name, key] = RELATION_SELECTIONS[type];
      const selection = relations.get(name) || new Set([key]);
      selection.add(field);
      relations.set(name, selection);
    }
  }
  const fields = [...scalars];
  for (const [name, selection] of relations) fields.push(`${name} { ${[...selection].join(" ")} }`);
  return [
    "{",
    "  persons(first: 20) {",
    "    totalCount",
    "    edges { node {",
    ...fields.map((field) => `      ${field}`),
    "    } }",
    "  }",
    "}",
  ].join("\n");
}

function simulationDefaults(proposal) {
  const line = proposal.added[0] || proposal.removed[0];
  const parsed = line ? parseSubject(line.subject) : null;
  const department = parsed ? parsed.department : "civil_affairs";
  const level = parsed && parsed.level !== "*" ? parsed.level : "county";
  // A subject's jurisdiction code has its level's length: the officer's own only if it fits.
  const own = session.me?.region || "";
  const region = parsed?.region || (own.length === REGION_LENGTH[level] ? own : "");
  const purpose =
    line && line.purpose !== "*" ? line.purpose : USUAL_PURPOSE[department] || "supervision";
  return { department, level, region, purpose };
}

function select(id, options, value) {
  return h(
    "select",
    { id },
    Object.entries(options).map(([code, name]) =>
      h("option", { value: code, selected: code === value }, name),
    ),
  );
}

function simulationSection(proposal) {
  const id = proposal.id;
  const defaults = simulationDefaults(proposal);
  const levels = Object.fromEntries(Object.entries(LEVELS).filter(([code]) => code !== "*"));
  const department = select(`sim-department-${id}`, DEPARTMENTS, defaults.department);
  const level = select(`sim-level-${id}`, levels, defaults.level);
  const region = h("input", {
    id: `sim-region-${id}`,
    type: "text",
    inputmode: "numeric",
    maxlength: "6",
    autocomplete: "off",
    value: defaults.region,
    placeholder: REGION_EXAMPLE[defaults.level],
  });
  level.addEventListener("change", () => {
    region.placeholder = REGION_EXAMPLE[level.value];
  });
  const purposes = Object.fromEntries(
    Object.entries(PURPOSES).map(([code, name]) => [code, `${name} (${code})`]),
  );
  const purpose = select(`sim-purpose-${id}`, purposes, defaults.purpose);
  const query = h("textarea", { id: `sim-query-${id}`, rows: "9", spellcheck: "false" });
  query.value = suggestedQuery(proposal);
  const output = h("p", { class: "message", hidden: true });
  const results = h("div", { class: "simulation-results", "aria-live": "polite" });
  const run = h("button", { type: "submit", class: "primary" }, "运行模拟");

  const form = h(
    "form",
    { class: "simulation-form" },
    h(
      "div",
      { class: "row" },
      h("div", {}, h("label", { for: department.id }, "部门"), department),
      h("div", {}, h("label", { for: level.id }, "层级"), level),
      h(
        "div",
        {},
        h("label", { for: region.id }, "辖区代码 (省 2 位 / 市 4 位 / 县 6 位)"),
        region,
      ),
      h("div", {}, h("label", { for: purpose.id }, "用途"), purpose),
    ),
    h("label", { for: query.id }, "查询 (GraphQL)"),
    query,
    h("div", { class: "buttons" }, run),
    output,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    message(output, "info", "");
    const subject = {
      department: department.value.toUpperCase(),
      level: level.value.toUpperCase(),
      region: region.value.trim(),
      purpose: purpose.value,
    };
    busy(run, output, async () => {
      fill(results, h("p", { class: "hint" }, "模拟中…"));
      const data = await graphql(SIMULATE, { proposalId: id, subject, query: query.value });
      renderSimulation(results, data.simulateAccess, subject);
    }).then(() => {
      if (!output.hidden) fill(results);
    });
  });

  return h(
    "section",
    { class: "simulation" },
    h("h4", {}, "模拟"),
    h(
      "p",
      { class: "hint" },
      "以下面的身份运行查询, 分别按当前策略和申请通过后的策略执行; 结果中的值已替换为",
      "“已读取” / “已脱敏”, 不显示真实数据。",
    ),
    form,
    results,
  );
}

function renderSimulation(target, simulation, subject) {
  const who = `${DEPARTMENTS[subject.department.toLowerCase()]} ${LEVELS[subject.level.toLowerCase()]} (辖区 ${subject.region})`;
  const summary = simulation.identical
    ? "两种策略下结果相同。"
    : `结果不同: 申请通过后可见人员 +${simulation.peopleGained} / −${simulation.peopleLost}, ` +
      `字段效果变化 ${simulation.fieldChanges.length} 项。`;
  const current = flattenOutcome(simulation.current);
  const proposed = flattenOutcome(simulation.proposed);
  const columns = [...new Set([...current.columns, ...proposed.columns])];
  fill(
    target,
    h("p", { class: simulation.identical ? "summary" : "summary differs" }, `${who}: ${summary}`),
    h(
      "div",
      { class: "side-by-side" },
      outcomeColumn("当前策略", simulation.current, current, columns, null, "current"),
      outcomeColumn("申请通过后", simulation.proposed, proposed, columns, current, "proposed"),
    ),
  );
}

/** The redacted response as table rows: the first list of records found, leaf paths as columns. */
function flattenOutcome(outcome) {
  const rows = [];
  const scalars = [];
  const list = findList(outcome.data);
  if (list) {
    for (const item of list.items) rows.push(flatten(item, ""));
  }
  if (outcome.data && typeof outcome.data === "object") {
    collectScalars(outcome.data, "", scalars, list ? list.items : null);
  }
  const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
  return { rows, columns, scalars };
}

function findList(value) {
  if (Array.isArray(value)) return { items: value };
  if (value && typeof value === "object") {
    for (const child of Object.values(value)) {
      const found = findList(child);
      if (found) return found;
    }
  }
  return null;
}

function flatten(value, prefix) {
  const out = {};
  if (value === null || typeof value !== "object") {
    out[prefix || "值"] = value;
    return out;
  }
  if (Array.isArray(value)) {
    // A nested list (a person's relief statuses…): one cell listing the distinct outcomes.
    const inner = value.map((item) => flatten(item, ""));
    const keys = new Set(inner.flatMap((row) => Object.keys(row)));
    for (const key of keys) {
      const seen = new Set(inner.map((row) => display(row[key])));
      out[prefix ? `${prefix}.${key}` : key] = `${[...seen].join(" / ")} (${value.length} 项)`;
    }
    if (!value.length) out[prefix] = "(无)";
    return out;
  }
  for (const [key, child] of Object.entries(value)) {
    // edges[].node.phone reads as "phone"
    const path = key === "node" && !prefix ? "" : prefix ? `${prefix}.${key}` : key;
    Object.assign(out, flatten(child, path));
  }
  return out;
}

function collectScalars(value, prefix, out, skip) {
  if (value === skip) return;
  for (const [key, child] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (child !== null && typeof child === "object") {
      if (!Array.isArray(child)) collectScalars(child, path, out, skip);
    } else {
      out.push([path, child]);
    }
  }
}

/** "reliefStatuses.category" → "救助身份 · 人员类别 " (the code follows in the header). */
function columnLabel(path) {
  if (path === "值") return "";
  let type = "Person";
  const words = [];
  for (const part of path.split(".")) {
    const field = `${type}.${part}`;
    const known = fieldName(field);
    if (known !== field) words.push(known);
    else if (part === "totalCount") words.push("总人数");
    else if (part === "category") words.push("人员类别");
    else if (part === "regionCode") words.push("行政区划");
    else if (part === "year") words.push("年度");
    else if (part === "id") words.push("编号");
    type = RELATION_TYPES[part] || type;
  }
  return words.length ? `${words.join(" · ")} ` : "";
}

function display(value) {
  if (value === null || value === undefined) return "空";
  return String(value);
}

function valueClass(value) {
  if (value === "已读取") return "value-read";
  if (value === "已脱敏") return "value-mask";
  return "value-empty";
}

function outcomeColumn(title, outcome, flat, columns, baseline, kind) {
  const errors = outcome.errors.length
    ? h(
        "ul",
        { class: "errors" },
        outcome.errors.map((error) =>
          h(
            "li",
            {},
            error.message,
            error.path.length ? [" ", h("code", {}, error.path.join("."))] : null,
          ),
        ),
      )
    : null;
  const scalars = flat.scalars.length
    ? h(
        "p",
        { class: "hint" },
        flat.scalars.map(([path, value], index) => [
          index ? " · " : "",
          columnLabel(path),
          h("code", {}, path),
          `: ${display(value)}`,
        ]),
      )
    : null;
  const table = flat.rows.length
    ? h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "data redacted", dataset: { outcome: kind } },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              columns.map((c) => h("th", { scope: "col" }, columnLabel(c), h("code", {}, c))),
            ),
          ),
          h(
            "tbody",
            {},
            flat.rows.map((row, index) =>
              h(
                "tr",
                {},
                columns.map((column) => {
                  const value = display(row[column]);
                  const before = baseline?.rows[index]
                    ? display(baseline.rows[index][column])
                    : null;
                  const changed = baseline && before !== null && before !== value;
                  return h(
                    "td",
                    {
                      class: `${valueClass(row[column])}${changed ? " changed" : ""}`,
                      dataset: { column },
                    },
                    value,
                  );
                }),
              ),
            ),
          ),
        ),
      )
    : h("p", { class: "hint" }, "查询没有返回记录。");
  return h(
    "section",
    { class: `outcome outcome-${kind}` },
    h("h5", {}, `${title} (版本 ${outcome.policyVersion})`),
    h("p", {}, `返回 ${outcome.people} 人`),
    outcome.rowScope.length
      ? h(
          "p",
          { class: "hint row-scope" },
          "人员范围: ",
          outcome.rowScope.map((condition, index) => [
            index ? "; " : "",
            rowConditionName(condition),
          ]),
        )
      : null,
    errors,
    scalars,
    table,
  );
}

// ------------------------------------------------------------------ decision

function refusalReason(proposal, own) {
  if (own) return "不能批准自己提出的变更 (四眼原则: 须由另一位安全管理员批准)";
  if (proposal.expectationFailures?.length) {
    return "该申请不满足策略期望 (见上方“策略期望检查”), 不能批准";
  }
  if (session.version !== null && proposal.baseVersion !== session.version) {
    return `该申请基于版本 ${proposal.baseVersion}, 当前为版本 ${session.version}; 须重新提出`;
  }
  return "该申请涉及超出您管辖范围的策略行, 您不能批准";
}

function decisionSection(proposal, own) {
  const id = proposal.id;
  const note = h("textarea", { id: `decision-note-${id}`, rows: "2" });
  const output = h("p", { class: "message", hidden: true });
  const approve = h("button", { type: "button", class: "primary approve" }, "批准");
  // The proposer withdraws its own proposal (撤回); another officer rejects it (驳回). The API
  // has one mutation for both: rejectPolicyChange by the proposer is recorded as a withdrawal.
  const decline = own
    ? h("button", { type: "button", class: "danger withdraw" }, "撤回")
    : h("button", { type: "button", class: "danger reject" }, "驳回");
  const children = [
    h("h4", {}, own ? "审批 (您是提出人: 只能撤回)" : "审批"),
    h("label", { for: note.id }, own ? "撤回说明 (可选)" : "审批意见 (驳回时必填)"),
    note,
    h("div", { class: "buttons" }, approve, decline),
  ];
  const approvable = proposal.canApprove && !proposal.expectationFailures?.length;
  if (!approvable) {
    approve.disabled = true;
    const reason = h(
      "p",
      { class: "reason", id: `approve-reason-${id}` },
      refusalReason(proposal, own),
    );
    approve.setAttribute("aria-describedby", reason.id);
    children.push(reason);
  }
  if (own) {
    children.push(
      h(
        "p",
        { class: "hint" },
        "撤回后该申请不再待审批, 策略不变; 系统将其记为“已驳回”, 审批意见注明“申请人撤回”。",
      ),
    );
  }
  children.push(output);

  approve.addEventListener("click", () =>
    busy(approve, output, async () => {
      const data = await graphql(APPROVE, { id, note: note.value.trim() || null });
      const result = data.approvePolicyChange;
      setVersion(result.resultingVersion);
      await load();
      message(
        $("#review-message"),
        "ok",
        `申请 #${shortId(result.id)} 已批准: 新策略版本 ${result.resultingVersion} 已生效`,
      );
      document.dispatchEvent(new CustomEvent("console:proposals-changed"));
    }).then(() => {
      if (!approvable) approve.disabled = true;
    }),
  );
  decline.addEventListener("click", () => {
    if (!own && !note.value.trim()) {
      message(output, "error", "驳回须填写审批意见");
      note.focus();
      return;
    }
    const text = note.value.trim() || "提出人撤回申请";
    busy(decline, output, async () => {
      const data = await graphql(REJECT, { id, note: text });
      await load();
      const done = own ? "已撤回" : "已驳回";
      message($("#review-message"), "ok", `申请 #${shortId(data.rejectPolicyChange.id)} ${done}`);
      document.dispatchEvent(new CustomEvent("console:proposals-changed"));
    });
  });
  return h("section", { class: "decision" }, children);
}

// ------------------------------------------------------------------ versions and rollback

async function loadVersions() {
  const target = $("#versions");
  await busy(null, $("#versions-message"), async () => {
    const data = await graphql(VERSIONS, { first: 20 });
    const versions = data.policyVersions.edges.map((edge) => edge.node);
    if (versions.length) setVersion(Math.max(...versions.map((v) => v.version)));
    fill(
      target,
      h(
        "table",
        { class: "data versions" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["版本", "时间", "提出人", "批准人", "说明", "行数", ""].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        h("tbody", {}, versions.map(versionRow)),
      ),
    );
  });
}

function versionRow(version) {
  const current = version.version === session.version;
  const output = h("span", { class: "message", hidden: true });
  const rollback = h("button", { type: "button" }, "回滚到此版本");
  rollback.addEventListener("click", () =>
    busy(rollback, output, async () => {
      const data = await graphql(ROLLBACK, {
        version: version.version,
        note: `回滚到版本 ${version.version}`,
      });
      message(
        $("#review-message"),
        "ok",
        `已提出回滚申请 #${shortId(data.proposePolicyRollback.id)}, 等待另一位安全管理员审批`,
      );
      await loadProposals();
    }),
  );
  return h(
    "tr",
    {},
    h("td", {}, String(version.version), current ? " (当前)" : ""),
    h("td", {}, formatTime(version.createdAt)),
    h("td", {}, h("code", { class: "subject" }, version.createdBy)),
    h("td", {}, version.approvedBy ? h("code", { class: "subject" }, version.approvedBy) : "—"),
    h("td", {}, version.note),
    h("td", {}, version.lineCount === null ? "" : String(version.lineCount)),
    h("td", {}, current ? "" : rollback, output),
  );
}
