// Policy lines (subject, object, action, purpose, and an optional validity end 期限): how they
// read, match a grid cell and key.

import { h } from "./dom.js";
import {
  ACTIONS,
  fieldName,
  isRowScope,
  parseSubject,
  purposeName,
  subjectName,
} from "./labels.js";

const DAY = 24 * 3600 * 1000;
const BEIJING = 8 * 3600 * 1000;
export const EXPIRING_DAYS = 30;

/** A validity end as an instant (ms), or null for a line without one. */
function endOf(line) {
  return line.validTo ? Date.parse(line.validTo) : null;
}

/** The end as the policy file writes it: "2027-03-31" when it is the end of that day in
 * Beijing time, else the moment in Beijing time ("2027-03-31T12:00:00+08:00"). */
export function endCode(validTo) {
  const local = new Date(Date.parse(validTo) + BEIJING);
  const iso = local.toISOString(); // the Beijing wall clock, labelled Z
  if (iso.slice(11, 23) === "00:00:00.000") {
    return new Date(local.getTime() - DAY).toISOString().slice(0, 10);
  }
  return `${iso.slice(0, 19)}+08:00`;
}

/** "2027-03-31 24:00 (北京时间)" for an end of day, else the minute it ends. */
export function endWords(validTo) {
  const local = new Date(Date.parse(validTo) + BEIJING).toISOString();
  if (local.slice(11, 23) === "00:00:00.000") {
    return `${endCode(validTo)} 24:00 (北京时间)`;
  }
  return `${local.slice(0, 10)} ${local.slice(11, 19)} (北京时间)`;
}

/** The validity end that ends the day ``date`` ("YYYY-MM-DD") in Beijing time, as an instant
 * the API takes (PolicyLineInput.validTo): midnight of the next day, +08:00. */
export function endOfDay(date) {
  const next = new Date(Date.parse(`${date}T00:00:00Z`) + DAY).toISOString().slice(0, 10);
  return `${next}T00:00:00+08:00`;
}

/** Days left before the line stops granting (rounded up), null without an end. */
export function daysLeft(line, now = Date.now()) {
  const end = endOf(line);
  return end === null ? null : Math.ceil((end - now) / DAY);
}

export function lineKey(line) {
  const end = endOf(line);
  return [
    line.subject,
    line.object,
    String(line.action).toUpperCase(),
    line.purpose || "*",
    end === null ? "" : String(end),
  ].join("|");
}

/** The form the mutations take (PolicyLineInput). */
export function lineInput(line) {
  const input = {
    subject: line.subject,
    object: line.object,
    action: String(line.action).toUpperCase(),
    purpose: line.purpose || "*",
  };
  if (line.validTo) input.validTo = line.validTo;
  return input;
}

/** As written in the policy file: "civil_affairs:county, Person.phone, read, *[, 2027-03-31]". */
export function lineCode(line) {
  const cells = [line.subject, line.object, String(line.action).toLowerCase(), line.purpose || "*"];
  if (line.validTo) cells.push(endCode(line.validTo));
  return cells.join(", ");
}

/** In words: "民政 县级 · 联系电话 · 可读 · 全部用途". */
export function lineWords(line) {
  const object = fieldName(line.object);
  const action = ACTIONS[String(line.action).toUpperCase()] || line.action;
  return `${subjectName(line.subject)} · ${object} · ${action} · ${purposeName(line.purpose)}`;
}

/** 期限 of a line: when it stops granting, expired, or expiring soon (within 30 days). */
export function validityBadge(line) {
  if (!line.validTo) return null;
  const left = daysLeft(line);
  const expired = line.expired || left <= 0;
  let text = `期限至 ${endWords(line.validTo)}`;
  let className = "validity";
  if (expired) {
    text = `已到期 (${endWords(line.validTo)}), 不再授予`;
    className += " expired";
  } else if (left <= EXPIRING_DAYS) {
    text += ` · 即将到期 (剩 ${left} 天)`;
    className += " expiring";
  }
  return h("span", { class: className }, text);
}

/** A list item for a line: words, then the code and its 期限; `extra` nodes (buttons) after. */
export function lineItem(line, className, ...extra) {
  const badge = validityBadge(line);
  return h(
    "li",
    { class: line.expired ? `${className} expired` : className },
    h("span", { class: "line-words" }, lineWords(line)),
    " ",
    h("code", { class: "line-code" }, lineCode(line)),
    badge ? [" ", badge] : null,
    ...extra,
  );
}

/** An expectation that fails: the expectation as written, then in words what the policy gives
 * (codes in <code>: the words around them are Chinese). */
export function failureItem(failure) {
  return h(
    "li",
    { title: failure.message },
    h("code", {}, failure.expectation),
    ` 不成立 (${failure.purpose ? "用途 " : "未声明用途"}`,
    failure.purpose ? h("code", {}, failure.purpose) : null,
    "): 实际 ",
    h("code", {}, failure.actual),
    ", 期望 ",
    h("code", {}, failure.expected),
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
