// Building the page without innerHTML: the console's helpers (every text from the API becomes
// a text node), plus the workbench's own busy/error wording and a few shared pieces.

import { $, append, fill, h, message } from "/console/dom.js";

export { $, append, fill, h, message };

/** What the signed-in page knows: who the clerk is and which purposes it may declare. */
export const session = { me: null, purposes: [] };

export function department() {
  return String(session.me?.department || "").toLowerCase();
}

/** Run an async action with its button disabled and its errors shown in `target`. */
export async function busy(button, target, action) {
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    return await action();
  } catch (error) {
    if (target) message(target, "error", errorText(error));
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }
}

export function errorText(error) {
  if (error && Array.isArray(error.messages)) return error.messages.join("; ");
  if (error && error.userMessage) return error.userMessage;
  // A bug in the page itself: say so in Chinese, details only in the browser console.
  console.error(error);
  return "工作台出现内部错误, 请刷新页面后重试";
}

/** An error a clerk made in a form (shown as is, never logged as a bug). */
export function inputError(text) {
  const error = new Error(text);
  error.userMessage = text;
  return error;
}

/** A person as the caller may see them: masked values stay masked, denied ones are left out. */
export function personText(person) {
  if (!person) return "(无权查看该人员)";
  const parts = [person.name, person.idNumber].filter((v) => v !== null && v !== undefined);
  return parts.length ? parts.join(" ") : `人员 ${person.id}`;
}

/** An 18-digit ID number in clear (not masked): only those can be looked up. */
export function lookupId(person) {
  const id = person?.idNumber || "";
  return /^\d{17}[\dX]$/.test(id) ? id : "";
}

/** "剩余 3 个工作日" / "今日到期" / "已超期 2 个工作日". */
export function daysLeftText(task) {
  const left = task.workingDaysLeft;
  if (left === null || left === undefined) return "";
  if (left < 0) return `已超期 ${-left} 个工作日`;
  if (left === 0) return "今日到期";
  return `剩余 ${left} 个工作日`;
}

/** A labelled select: [<label>, <select>]. */
export function choice(id, label, options, selected = "") {
  const select = h(
    "select",
    { id },
    options.map(([value, text]) => h("option", { value, selected: value === selected }, text)),
  );
  return [h("label", { for: id }, label), select];
}

/** Switch to a tab (workbench.js listens), optionally with a detail for the tab. */
export function goTo(tab, detail = {}) {
  document.dispatchEvent(new CustomEvent("workbench:go", { detail: { tab, ...detail } }));
}
