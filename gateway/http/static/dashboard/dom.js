// Building the page without innerHTML: every text from the API (region names, codes, subjects)
// becomes a text node, so nothing from the data can turn into markup or script.

/**
 * h("button", {class: "primary", onclick: f}, "批准") → <button class="primary">批准</button>
 * Attributes: "class", "dataset" (object), "on<event>" (listener), true → empty attribute,
 * null/undefined/false → left out. Children: nodes, strings (as text), arrays, null (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Replace an element's content. */
export function fill(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** A status line: kind "error" (role=alert), "ok" or "info". */
export function message(element, kind, text) {
  element.className = `message message-${kind}`;
  element.setAttribute("role", kind === "error" ? "alert" : "status");
  element.hidden = !text;
  fill(element, text || "");
}

/** Run an async action with its button disabled and its errors shown in `target`. */
export async function busy(button, target, action) {
  const label = button ? button.textContent : "";
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
      button.textContent = label;
    }
  }
}

export function errorText(error) {
  if (error && Array.isArray(error.messages)) return error.messages.join("; ");
  // A bug in the page itself: say so in Chinese, details only in the browser console.
  console.error(error);
  return "页面出现内部错误, 请刷新页面后重试";
}
