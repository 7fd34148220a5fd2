// Policy lines (subject, object, action, purpose): how they read, match a grid cell and key.

import { h } from "./dom.js";
import {
  ACTIONS,
  fieldName,
  isRowScope,
  parseSubject,
  purposeName,
  subjectName,
} from "./labels.js";

export function lineKey(line) {
  return [line.subject, line.object, String(line.action).toUpperCase(), line.purpose || "*"].join(
    "|",
  );
}

/** The form the mutations take (PolicyLineInput). */
export function lineInput(line) {
  return {
    subject: line.subject,
    object: line.object,
    action: String(line.action).toUpperCase(),
    purpose: line.purpose || "*",
  };
}

/** As written in the policy file: "civil_affairs:county, Person.phone, read, *". */
export function lineCode(line) {
  return [line.subject, line.object, String(line.action).toLowerCase(), line.purpose || "*"].join(
    ", ",
  );
}

/** In words: "民政 县级 · 联系电话 · 可读 · 全部用途". */
export function lineWords(line) {
  const object = fieldName(line.object);
  const action = ACTIONS[String(line.action).toUpperCase()] || line.action;
  return `${subjectName(line.subject)} · ${object} · ${action} · ${purposeName(line.purpose)}`;
}

/** A list item for a line: words, then the code; `extra` nodes (buttons) after. */
export function lineItem(line, className, ...extra) {
  return h(
    "li",
    { class: className },
    h("span", { class: "line-words" }, lineWords(line)),
    " ",
    h("code", { class: "line-code" }, lineCode(line)),
    ...extra,
  );
}

function globMatches(pattern, value) {
  if (!pattern.includes("*")) return pattern === value;
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`).test(value);
}

/** The lines behind one cell of the grid: subject "dept:level" and a field or operation. */
export function linesForCell(lines, subject, field) {
  const cell = parseSubject(subject);
  if (!cell) return [];
  return lines.filter((line) => {
    const parsed = parseSubject(line.subject);
    if (!parsed || parsed.department !== cell.department) return false;
    if (parsed.level !== "*" && parsed.level !== cell.level) return false;
    const rows = String(line.action).toUpperCase() === "ROWS";
    if (rows !== isRowScope(field)) return false;
    return rows ? line.object === field : globMatches(line.object, field);
  });
}
