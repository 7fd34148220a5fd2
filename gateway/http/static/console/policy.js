// 策略表: the grid of departments × levels × fields, the lines behind a cell, and the draft
// of a change (additions and removals, a line's 期限, the policy expectations) that becomes a
// proposal. Above the grid: the grants that stop within 30 days (即将到期), the lines already
// past their end, and the expectations the policy in force no longer meets.

import { graphql } from "./api.js";
import { $, busy, fill, h, message } from "./dom.js";
import {
  MASKABLE,
  PURPOSES,
  TYPES,
  departmentName,
  effectLabel,
  fieldName,
  grantAction,
  groupOf,
  isRowScope,
  parseSubject,
  shortId,
  subjectName,
  typeOf,
} from "./labels.js";
import {
  EXPIRING_DAYS,
  endOfDay,
  failureItem,
  lineInput,
  lineItem,
  lineKey,
  lineWords,
  linesForCell,
} from "./lines.js";
import { MATRIX, PROPOSALS } from "./queries.js";
import { isProvinceOfficer, onVersion, session, setVersion } from "./state.js";

const DRAFT_KEY = "relief-console-draft";

// The policy in force with each line's 期限, its expectations and those it no longer meets;
// and the lines that stop granting within 30 days (issue 16).
const LINE_FIELDS = "subject object action purpose region editable validTo expired";
const FAILURE_FIELDS = "line expectation purpose actual expected message";
const POLICY_LINES = `
query ConsolePolicyLines($days: Int) {
  policies { version expectations lines { ${LINE_FIELDS} }
             expectationFailures { ${FAILURE_FIELDS} } }
  expiring: policies(expiringWithinDays: $days) { lines { ${LINE_FIELDS} } }
}`;
const PROPOSE = `
mutation ConsoleProposeChange($title: String!, $note: String, $add: [PolicyLineInput!]!,
                              $remove: [PolicyLineInput!]!, $expectations: String) {
  proposePolicyChange(title: $title, note: $note, add: $add, remove: $remove,
                      expectations: $expectations) {
    id status title baseVersion expectationFailures { ${FAILURE_FIELDS} }
  }
}`;
const SHORT_LEVEL = { province: "省", city: "市", county: "县" };

// Reading a child record's field presupposes the relation to it (authz/resources.py).
const PARENT_RELATION = {
  Household: "Person.household",
  ReliefStatus: "Person.reliefStatuses",
  Enrollment: "Person.enrollments",
  CostBurden: "Person.costBurdens",
};

let matrix = null;
let lines = [];
let previewing = null; // a proposal id while the grid shows that proposal's outcome
let selected = null; // {subject, field}
let loaded = false;
let proposedLines = []; // the added and removed lines of every open (pending) proposal
let expectationsInForce = ""; // the policy expectations of the version in force

// ------------------------------------------------------------------ draft (sessionStorage)

function readDraft() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(DRAFT_KEY) || "null");
    if (saved && Array.isArray(saved.add) && Array.isArray(saved.remove)) {
      if (typeof saved.expectations !== "string") saved.expectations = null;
      return saved;
    }
  } catch {
    // a damaged draft is dropped
  }
  return { add: [], remove: [], expectations: null };
}

const draft = readDraft();

function saveDraft() {
  sessionStorage.setItem(DRAFT_KEY, JSON.stringify(draft));
  renderDraft();
  if (matrix) renderGrid(); // the cells the draft changes carry its mark
  if (selected) renderCell();
}

function draftChangesExpectations() {
  return draft.expectations !== null && draft.expectations !== undefined;
}

function inDraft(kind, line) {
  return draft[kind].some((item) => lineKey(item) === lineKey(line));
}

// ------------------------------------------------------------------ loading

export function init() {
  $("#draft-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitDraft();
  });
  $("#draft-clear").addEventListener("click", () => {
    draft.add = [];
    draft.remove = [];
    draft.expectations = null;
    const editor = document.getElementById("draft-expectations");
    if (editor) editor.value = expectationsInForce;
    saveDraft();
    message($("#draft-message"), "info", "");
  });
  $("#grid-extras").addEventListener("change", () => {
    if (matrix) renderGrid();
  });
  onVersion(() => {
    if (loaded && !previewing) load();
  });
  renderDraft();
}

export async function load(proposalId = null) {
  loaded = true;
  previewing = proposalId;
  const output = $("#policy-message");
  await busy(null, output, async () => {
    const [matrixData, policyData, proposalData] = await Promise.all([
      graphql(MATRIX, { proposalId }),
      graphql(POLICY_LINES, { days: EXPIRING_DAYS }),
      graphql(PROPOSALS, { status: "PENDING", first: 100 }),
    ]);
    matrix = matrixData.policyMatrix;
    lines = policyData.policies.lines;
    expectationsInForce = policyData.policies.expectations;
    renderValidity(policyData);
    renderExpectationsEditor();
    proposedLines = openProposalLines(proposalData);
    if (!proposalId) setVersion(matrix.version);
    renderPreviewBanner();
    renderGrid();
    if (selected) renderCell();
  });
}

function openProposalLines(data) {
  return data.policyProposals.edges.flatMap(({ node }) => [...node.added, ...node.removed]);
}

/** Re-read the open proposals (one was submitted, approved, rejected or withdrawn). */
export async function refreshPending() {
  if (!matrix) return;
  try {
    proposedLines = openProposalLines(
      await graphql(PROPOSALS, { status: "PENDING", first: 100 }),
    );
  } catch {
    return; // the marks are a hint; the review tab shows any error
  }
  renderGrid();
}

function renderPreviewBanner() {
  const output = $("#policy-message");
  if (!previewing) {
    message(output, "info", "");
    return;
  }
  message(output, "info", "");
  fill(
    output,
    `正在预览申请 #${shortId(previewing)} 通过后的策略表 (有变化的格子加粗框)。`,
    h("button", { type: "button", class: "link", onclick: () => load(null) }, "返回当前策略"),
  );
  output.hidden = false;
}

// ------------------------------------------------------------------ the grid

function groupBy(items, keyOf) {
  const groups = [];
  for (const item of items) {
    const key = keyOf(item);
    const last = groups[groups.length - 1];
    if (last && last.key === key) last.items.push(item);
    else groups.push({ key, items: [item] });
  }
  return groups;
}

// A column: the 8 departments × 3 levels province-wide, then (on request) the region-limited
// subjects and roles that policy lines mention.
function column(subject) {
  const parsed = parseSubject(subject);
  if (!parsed) {
    return { subject, group: subject, groupLabel: subjectName(subject), short: "—", extra: true };
  }
  const extra = Boolean(parsed.region) || parsed.level === "*";
  return {
    subject,
    group: parsed.region ? `${parsed.department}@${parsed.region}` : parsed.department,
    groupLabel: parsed.region
      ? `${departmentName(parsed.department)} (限 ${parsed.region})`
      : departmentName(parsed.department),
    short: SHORT_LEVEL[parsed.level] || parsed.level,
    title: `${subjectName(subject)} (${subject})`,
    extra,
  };
}

function renderGrid() {
  const effects = new Map(matrix.cells.map((cell) => [`${cell.subject}|${cell.field}`, cell]));
  const all = matrix.subjects.map(column);
  const extras = all.filter((c) => c.extra);
  const toggle = $("#grid-extras");
  toggle.closest(".extras").hidden = extras.length === 0;
  // A proposal for a region or a role changes only those columns: show them.
  const changedExtra = matrix.cells.some(
    (c) => c.changed && extras.some((e) => e.subject === c.subject),
  );
  if (previewing && changedExtra) toggle.checked = true;
  const columns = toggle.checked
    ? [...all.filter((c) => !c.extra), ...extras]
    : all.filter((c) => !c.extra);
  const groups = groupBy(columns, (c) => c.group);
  for (const group of groups) group.items[group.items.length - 1].groupEnd = true;
  const table = $("#grid");
  const caption = h(
    "caption",
    {},
    previewing ? `策略表 (申请 #${shortId(previewing)} 通过后)` : `策略表 (版本 ${matrix.version})`,
  );

  const top = h(
    "tr",
    {},
    h("th", { scope: "col", rowspan: "2", class: "corner" }, "字段 / 操作 / 人员范围"),
    groups.map((group) =>
      h(
        "th",
        { scope: "colgroup", colspan: String(group.items.length), class: "department" },
        group.items[0].groupLabel,
      ),
    ),
  );
  const second = h(
    "tr",
    {},
    columns.map((c) =>
      h(
        "th",
        { scope: "col", class: c.groupEnd ? "level group-end" : "level", title: c.title },
        c.short,
      ),
    ),
  );
  const head = h("thead", {}, top, second);

  const bodies = groupBy(matrix.fields, groupOf).map((group) => {
    const groupRow = h(
      "tr",
      { class: "group" },
      h(
        "th",
        { scope: "rowgroup", colspan: String(columns.length + 1) },
        `${TYPES[group.key] || group.key} `,
        group.key === "rows" ? null : h("code", {}, group.key),
      ),
    );
    const rows = group.items.map((field) =>
      h(
        "tr",
        {},
        h(
          "th",
          { scope: "row", class: "field", title: field },
          h("span", {}, fieldName(field)),
          " ",
          h("code", {}, isRowScope(field) ? "" : field.slice(typeOf(field).length + 1)),
        ),
        columns.map((c) => gridCell(effects.get(`${c.subject}|${field}`), c, field)),
      ),
    );
    return h("tbody", {}, groupRow, rows);
  });
  table.replaceChildren(caption, head, ...bodies);
  if (previewing) {
    table.querySelector("td.changed")?.scrollIntoView({ block: "nearest", inline: "center" });
  }
}

// A cell a pending change touches: the officer's own unsaved draft, or an open proposal
// (anyone's) waiting for approval. Shown by a dashed frame AND a word, and read out.
const PENDING_MARKS = {
  draft: { className: "pending-draft", word: "草稿", spoken: "草稿中有改动, 尚未提交" },
  proposal: { className: "pending-proposal", word: "待审批", spoken: "有待审批的变更申请" },
};

function touches(changeLines, subject, field) {
  return linesForCell(changeLines, subject, field).length > 0;
}

function pendingOf(subject, field) {
  if (touches([...draft.add, ...draft.remove], subject, field)) return PENDING_MARKS.draft;
  if (touches(proposedLines, subject, field)) return PENDING_MARKS.proposal;
  return null;
}

function gridCell(cell, subject, field) {
  const effect = cell ? cell.effect : "DENY";
  const label = effectLabel(effect, field);
  const isSelected = selected && selected.subject === subject.subject && selected.field === field;
  const pending = pendingOf(subject.subject, field);
  const classes = ["cell", label.className];
  if (subject.groupEnd) classes.push("group-end");
  if (cell?.changed) classes.push("changed");
  if (isSelected) classes.push("selected");
  if (pending) classes.push(pending.className);
  const changed = cell?.changed ? " (将变化)" : "";
  const spoken = pending ? `; ${pending.spoken}` : "";
  return h(
    "td",
    { class: classes.join(" ") },
    h(
      "button",
      {
        type: "button",
        dataset: { subject: subject.subject, field, effect },
        "aria-label": `${subjectName(subject.subject)} · ${fieldName(field)}: ${label.text}${changed}${spoken}`,
        "aria-pressed": isSelected ? "true" : "false",
        onclick: () => selectCell(subject.subject, field),
      },
      h("span", { class: "symbol", "aria-hidden": "true" }, label.symbol),
      label.text,
      pending ? h("span", { class: "pending-mark", "aria-hidden": "true" }, pending.word) : null,
    ),
  );
}

function selectCell(subject, field) {
  selected = { subject, field };
  for (const button of document.querySelectorAll("#grid td.selected")) {
    button.classList.remove("selected");
    button.firstElementChild.setAttribute("aria-pressed", "false");
  }
  const button = document.querySelector(
    `#grid button[data-subject="${CSS.escape(subject)}"][data-field="${CSS.escape(field)}"]`,
  );
  if (button) {
    button.parentElement.classList.add("selected");
    button.setAttribute("aria-pressed", "true");
  }
  renderCell();
}

// ------------------------------------------------------------------ the cell panel

function renderCell() {
  const panel = $("#cell-panel");
  const { subject, field } = selected;
  const cell = matrix.cells.find((c) => c.subject === subject && c.field === field);
  const effect = cell ? cell.effect : "DENY";
  const label = effectLabel(effect, field);
  const behind = linesForCell(lines, subject, field);
  const parsed = parseSubject(subject);

  const list = behind.length
    ? h(
        "ul",
        { class: "lines" },
        behind.map((line) => lineItem(line, "line", removeControl(line))),
      )
    : h("p", { class: "hint" }, "没有任何策略行授予该格: 默认拒绝。");

  const notes = [];
  const parent = PARENT_RELATION[typeOf(field)];
  if (parent && effect === "DENY" && behind.length) {
    notes.push(`读取该字段还需要关系 ${fieldName(parent)} (${parent}) 也被授予。`);
  }
  if (behind.some((line) => line.region)) {
    notes.push("带区划的策略行只对该区划内的调用方生效; 本格显示的是全省范围的效果。");
  }

  fill(
    panel,
    h("button", { type: "button", class: "close", "aria-label": "关闭", onclick: closeCell }, "×"),
    h("h3", {}, `${subjectName(subject)} · ${fieldName(field)}`),
    h("p", {}, h("code", {}, `${subject} × ${field}`)),
    h(
      "p",
      {},
      previewing ? "申请通过后: " : "当前效果: ",
      h("span", { class: `effect ${label.className}` }, `${label.symbol} ${label.text}`),
    ),
    h("h4", {}, "决定该格的策略行 (当前生效)"),
    list,
    notes.map((note) => h("p", { class: "hint" }, note)),
    h("h4", {}, "授予 (加入草稿)"),
    grantForm(subject, parsed, field),
  );
  panel.hidden = false;
}

function closeCell() {
  selected = null;
  $("#cell-panel").hidden = true;
  for (const td of document.querySelectorAll("#grid td.selected")) td.classList.remove("selected");
}

function removeControl(line) {
  if (inDraft("remove", line)) {
    return h("span", { class: "reason" }, "已加入草稿的删除");
  }
  if (!line.editable) {
    return h(
      "span",
      { class: "control" },
      h("button", { type: "button", class: "danger", disabled: true }, "删除此行"),
      h("span", { class: "reason" }, "超出您的管辖范围, 不能删除"),
    );
  }
  return h(
    "button",
    {
      type: "button",
      class: "danger",
      onclick: () => {
        draft.remove.push(lineInput(line));
        saveDraft();
      },
    },
    "删除此行",
  );
}

function grantForm(subject, parsed, field) {
  const output = h("p", { class: "message", hidden: true });
  const purpose = h(
    "select",
    { id: "grant-purpose" },
    h("option", { value: "*" }, "全部用途 (*)"),
    Object.entries(PURPOSES).map(([code, name]) =>
      h("option", { value: code }, `${name} (${code})`),
    ),
  );
  // A role line has no region; a region-limited column keeps its region.
  const ownRegion = isProvinceOfficer() ? "" : session.me?.region || "";
  const region = parsed
    ? h("input", {
        id: "grant-region",
        type: "text",
        inputmode: "numeric",
        maxlength: "6",
        autocomplete: "off",
        placeholder: "留空 = 全省",
        value: parsed.region || ownRegion,
      })
    : null;

  const until = h("input", { id: "grant-valid-to", type: "date", autocomplete: "off" });

  function grant(action) {
    const code = region ? region.value.trim() : "";
    if (code && !/^(\d{2}|\d{4}|\d{6})$/.test(code)) {
      message(output, "error", "区划代码须为 2 位 (省)、4 位 (市) 或 6 位 (县) 数字");
      return;
    }
    if (parsed && !isProvinceOfficer() && !code) {
      message(output, "error", "市、县级安全管理员只能授予本辖区内的访问, 请填写区划代码");
      return;
    }
    let lineSubject = subject;
    if (parsed) {
      lineSubject = code
        ? `${parsed.department}@${code}:${parsed.level}`
        : `${parsed.department}:${parsed.level}`;
    }
    const line = { subject: lineSubject, object: field, action, purpose: purpose.value };
    if (until.value) {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(until.value)) {
        message(output, "error", "期限应为日期 (年-月-日)");
        return;
      }
      line.validTo = endOfDay(until.value);
      if (Date.parse(line.validTo) <= Date.now()) {
        message(output, "error", "期限已过: 请选择今天或以后的日期");
        return;
      }
    }
    if (inDraft("add", line)) {
      message(output, "error", "草稿中已有这一行");
      return;
    }
    draft.add.push(line);
    saveDraft();
    message($("#draft-message"), "ok", `已加入草稿: ${lineWords(line)}`);
  }

  const button = (action, text) =>
    h("button", { type: "button", class: "grant", onclick: () => grant(action) }, text);
  let buttons;
  if (grantAction(field) === "ROWS") buttons = [button("ROWS", "授予 该人员范围")];
  else if (grantAction(field) === "CALL") buttons = [button("CALL", "授予 调用")];
  else {
    buttons = [
      button("READ", "授予 可读"),
      MASKABLE.has(field)
        ? button("MASK", "授予 脱敏")
        : h(
            "span",
            { class: "control" },
            h("button", { type: "button", class: "grant", disabled: true }, "授予 脱敏"),
            h("span", { class: "reason" }, "该字段没有脱敏形式"),
          ),
    ];
  }

  return h(
    "div",
    { class: "grant-form" },
    h("label", { for: "grant-purpose" }, "用途"),
    purpose,
    region ? h("label", { for: "grant-region" }, "只限区划 (可选: 市 4 位或县 6 位)") : null,
    region,
    h("label", { for: "grant-valid-to" }, "期限 (可选: 授予至该日北京时间 24:00 止, 到期自动失效)"),
    until,
    h("div", { class: "buttons" }, buttons),
    output,
  );
}

// ------------------------------------------------------------------ the draft

function renderDraft() {
  const items = [
    ...draft.add.map((line, index) => lineItem(line, "added", undoButton("add", index))),
    ...draft.remove.map((line, index) => lineItem(line, "removed", undoButton("remove", index))),
  ];
  if (draftChangesExpectations()) {
    items.push(
      h(
        "li",
        { class: "expectations-changed" },
        h("span", { class: "line-words" }, "策略期望已修改 (提交后与策略行一并审批)"),
      ),
    );
  }
  fill($("#draft-list"), items);
  $("#draft-empty").hidden = items.length > 0;
  $("#draft-submit").disabled = items.length === 0;
}

// ------------------------------------------------------------------ 期限 and expectations

function validitySection() {
  let section = document.getElementById("validity-panel");
  if (!section) {
    section = h("section", { id: "validity-panel", class: "card", "aria-live": "polite" });
    const layout = document.querySelector("#panel-policy .policy-layout");
    if (layout) layout.before(section);
    else $("#policy-message").after(section);
  }
  return section;
}

/** 即将到期: the grants that stop within 30 days; the lines already past their end (they
 * grant nothing, and can be removed); the expectations the policy no longer meets. */
function renderValidity(data) {
  const expiring = data.expiring.lines;
  const expired = data.policies.lines.filter((line) => line.expired);
  const failures = data.policies.expectationFailures;
  const section = validitySection();
  const parts = [h("h3", {}, `即将到期 (${EXPIRING_DAYS} 天内)`)];
  parts.push(
    expiring.length
      ? h("ul", { class: "lines expiring" }, expiring.map((line) => lineItem(line, "line")))
      : h("p", { class: "hint" }, `没有在 ${EXPIRING_DAYS} 天内到期的策略行。`),
  );
  if (expired.length) {
    parts.push(
      h("h4", {}, "已到期 (不再授予, 可提出删除)"),
      h(
        "ul",
        { class: "lines expired" },
        expired.map((line) => lineItem(line, "line", removeControl(line))),
      ),
    );
  }
  if (failures.length) {
    parts.push(
      h("h4", {}, "当前策略不满足的策略期望"),
      h(
        "ul",
        { class: "expectation-failures" },
        failures.map(failureItem),
      ),
    );
  }
  fill(section, parts);
}

/** The expectations editor of the draft: the complete set, as text (e lines). */
function renderExpectationsEditor() {
  let editor = document.getElementById("draft-expectations");
  if (!editor) {
    editor = h("textarea", {
      id: "draft-expectations",
      rows: "6",
      spellcheck: "false",
      placeholder: "e, civil_affairs:county@370102, -, Person.phone, mask",
    });
    const details = h(
      "details",
      { id: "draft-expectations-details" },
      h("summary", {}, "策略期望 (可选: 修改完整的期望, 与策略行一并审批)"),
      h(
        "p",
        { class: "hint" },
        "每行一条: ",
        h("code", {}, "e, 调用方, 用途, 对象, 期望"),
        "; 调用方写作 ",
        h("code", {}, "部门:层级@区划"),
        ", 用途 ",
        h("code", {}, "-"),
        " 为未声明、",
        h("code", {}, "*"),
        " 为任何情形; 字段的期望为 ",
        h("code", {}, "read / mask / deny"),
        ", 操作为 ",
        h("code", {}, "call / deny"),
        ", 对象 ",
        h("code", {}, "rows"),
        " 的期望为人员范围或 ",
        h("code", {}, "none"),
        "。每个变更申请都按期望检查, 不满足的申请不能批准。",
      ),
      h("label", { for: "draft-expectations" }, "完整的策略期望"),
      editor,
    );
    const buttons = document.querySelector("#draft-form .buttons");
    if (buttons) buttons.before(details);
    else $("#draft-form").append(details);
    editor.addEventListener("input", () => {
      draft.expectations = editor.value === expectationsInForce ? null : editor.value;
      saveDraft();
    });
  }
  editor.value = draftChangesExpectations() ? draft.expectations : expectationsInForce;
}

function undoButton(kind, index) {
  return h(
    "button",
    {
      type: "button",
      class: "link",
      "aria-label": "从草稿中撤销这一行",
      onclick: () => {
        draft[kind].splice(index, 1);
        saveDraft();
      },
    },
    "撤销",
  );
}

async function submitDraft() {
  const output = $("#draft-message");
  const title = $("#draft-title").value.trim();
  if (!draft.add.length && !draft.remove.length && !draftChangesExpectations()) {
    message(output, "error", "草稿为空: 请先在策略表中删除或授予, 或修改策略期望");
    return;
  }
  if (!title) {
    message(output, "error", "请填写申请标题");
    $("#draft-title").focus();
    return;
  }
  const note = $("#draft-note").value.trim() || null;
  await busy($("#draft-submit"), output, async () => {
    const data = await graphql(PROPOSE, {
      title,
      note,
      add: draft.add.map(lineInput),
      remove: draft.remove.map(lineInput),
      expectations: draftChangesExpectations() ? draft.expectations : null,
    });
    const proposal = data.proposePolicyChange;
    draft.add = [];
    draft.remove = [];
    draft.expectations = null;
    saveDraft();
    $("#draft-title").value = "";
    $("#draft-note").value = "";
    const broken = proposal.expectationFailures.length;
    message(
      output,
      broken ? "error" : "ok",
      `已提交申请 #${shortId(proposal.id)} (基于版本 ${proposal.baseVersion}), 等待另一位安全管理员审批` +
        (broken ? `; 注意: 该申请不满足 ${broken} 条策略期望, 在修改期望之前不能批准` : ""),
    );
    document.dispatchEvent(new CustomEvent("console:proposals-changed"));
  });
  renderDraft();
}
