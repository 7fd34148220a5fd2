// 策略表: the grid of departments × levels × fields, the lines behind a cell, and the draft
// of a change (additions and removals) that becomes a proposal.

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
import { lineInput, lineItem, lineKey, lineWords, linesForCell } from "./lines.js";
import { MATRIX, POLICIES, PROPOSALS, PROPOSE } from "./queries.js";
import { isProvinceOfficer, onVersion, session, setVersion } from "./state.js";

const DRAFT_KEY = "relief-console-draft";
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

// ------------------------------------------------------------------ draft (sessionStorage)

function readDraft() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(DRAFT_KEY) || "null");
    if (saved && Array.isArray(saved.add) && Array.isArray(saved.remove)) return saved;
  } catch {
    // a damaged draft is dropped
  }
  return { add: [], remove: [] };
}

const draft = readDraft();

function saveDraft() {
  sessionStorage.setItem(DRAFT_KEY, JSON.stringify(draft));
  renderDraft();
  if (matrix) renderGrid(); // the cells the draft changes carry its mark
  if (selected) renderCell();
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
      graphql(POLICIES),
      graphql(PROPOSALS, { status: "PENDING", first: 100 }),
    ]);
    matrix = matrixData.policyMatrix;
    lines = policyData.policies.lines;
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
  fill($("#draft-list"), items);
  $("#draft-empty").hidden = items.length > 0;
  $("#draft-submit").disabled = items.length === 0;
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
  if (!draft.add.length && !draft.remove.length) {
    message(output, "error", "草稿为空: 请先在策略表中删除或授予");
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
    });
    const proposal = data.proposePolicyChange;
    draft.add = [];
    draft.remove = [];
    saveDraft();
    $("#draft-title").value = "";
    $("#draft-note").value = "";
    message(
      output,
      "ok",
      `已提交申请 #${shortId(proposal.id)} (基于版本 ${proposal.baseVersion}), 等待另一位安全管理员审批`,
    );
    document.dispatchEvent(new CustomEvent("console:proposals-changed"));
  });
  renderDraft();
}
