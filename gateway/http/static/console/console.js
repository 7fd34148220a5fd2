// The console's entry: sign-in, who-am-I, and the screens of the signed-in administrator's role.
//
// Separation of duties (三权分立): the security administrator sees the policy grid and the
// review (proposals, simulation, versions); the audit administrator the audit log and its
// explanations; the system administrator a page saying its work is on the command line, with
// the gateway's status. A role's screens live in <template> elements of index.html and are
// copied into the document only for that role: another role's screen is never rendered (and
// the gateway refuses its data anyway). A token without an administrator role is refused here.

import { setUpSignIn } from "/auth/signin.js";
import { ApiError, graphql, readiness, token } from "./api.js";
import { $, busy, fill, h, message } from "./dom.js";
import { departmentName, levelName, roleName } from "./labels.js";
import { ME } from "./queries.js";
import { session, onVersion } from "./state.js";
import * as policy from "./policy.js";
import * as review from "./review.js";
import * as audit from "./audit.js";
import * as deliveries from "./deliveries.js";

const system = {
  init() {
    $("#system-refresh").addEventListener("click", () => system.load());
  },
  async load() {
    const output = $("#system-status");
    await busy($("#system-refresh"), output, async () => {
      const status = await readiness();
      if (status.ready) {
        message(output, "ok", `✓ 网关就绪: 数据库可用, 生效的策略版本 ${status.policyVersion}`);
      } else {
        message(output, "error", `✕ 网关未就绪: ${status.reason || "原因未知"}`);
      }
    });
  },
};

// Each administrator role and its screens, in tab order (roles as the gateway resolves them:
// the deprecated security_officer arrives as security_admin).
export const ROLE_SCREENS = {
  security_admin: { policy, review },
  audit_admin: { audit },
  system_admin: { system, deliveries },
};

let mounted = null; // the role whose screens are in the document
let tabs = {};

/** The one administrator role of `me` (the gateway refuses tokens holding two), or null. */
export function adminRole(me) {
  return Object.keys(ROLE_SCREENS).find((role) => me.roles.includes(role)) || null;
}

async function signIn(value) {
  token.set(value);
  let me;
  try {
    me = (await graphql(ME)).me;
  } catch (error) {
    token.clear();
    throw error;
  }
  const role = adminRole(me);
  if (!role) {
    token.clear();
    throw new ApiError([
      `该令牌 (${me.subject}) 没有管理员角色, 不能使用本控制台: 请使用带有安全管理员 ` +
        "(security_admin)、审计管理员 (audit_admin) 或系统管理员 (system_admin) 角色的令牌登录",
    ]);
  }
  if (mounted && mounted !== role) {
    // Another administrator in the same tab: start from a clean page (the token is kept).
    window.location.reload();
    return;
  }
  session.me = me;
  session.role = role;
  if (!mounted) mount(role);
  showApp();
}

/** Copy the role's tabs and screens into the document and start their modules. */
function mount(role) {
  fill($("#tabs"), $(`#tabs-${role}`).content.cloneNode(true));
  const screens = $("#screens");
  tabs = {};
  for (const [name, module] of Object.entries(ROLE_SCREENS[role])) {
    screens.append($(`#screen-${name}`).content.cloneNode(true));
    tabs[name] = { module, loaded: false };
  }
  for (const tab of Object.values(tabs)) tab.module.init();
  wireTabs();
  mounted = role;
}

function showApp() {
  const me = session.me;
  fill(
    $("#whoami-text"),
    h("code", { class: "subject" }, me.subject),
    ` · ${departmentName(me.department)} ${levelName(me.level)} · 辖区 ${me.region} · `,
    h("strong", { class: "role" }, roleName(session.role)),
  );
  $("#whoami").hidden = false;
  $("#login").hidden = true;
  $("#app").hidden = false;
  for (const tab of Object.values(tabs)) tab.loaded = false;
  selectTab(Object.keys(tabs)[0]);
  if (tabs.review) review.refreshPendingCount();
}

function signOut() {
  // Drop the token, the draft and everything the previous administrator saw.
  sessionStorage.clear();
  session.me = null;
  session.version = null;
  window.location.reload();
}

function signedOut(messages) {
  token.clear();
  session.me = null;
  $("#app").hidden = true;
  $("#whoami").hidden = true;
  $("#login").hidden = false;
  message($("#login-message"), "error", `${messages.join("; ")}; 请重新登录`);
}

function selectTab(name) {
  for (const [key, tab] of Object.entries(tabs)) {
    const selected = key === name;
    const button = $(`#tab-${key}`);
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`#panel-${key}`).hidden = !selected;
    if (selected && !tab.loaded) {
      tab.loaded = true;
      tab.module.load();
    }
  }
}

function wireTabs() {
  const names = Object.keys(tabs);
  for (const name of names) {
    const button = $(`#tab-${name}`);
    button.addEventListener("click", () => selectTab(name));
    button.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = names[(names.indexOf(name) + step + names.length) % names.length];
      selectTab(next);
      $(`#tab-${next}`).focus();
    });
  }
}

function start() {
  onVersion((version) => {
    const shown = $("#current-version");
    if (shown) fill(shown, String(version));
  });
  document.addEventListener("console:proposals-changed", () => {
    if (!tabs.review) return;
    tabs.review.loaded = false; // reloaded when next opened
    review.refreshPendingCount();
    policy.refreshPending(); // the grid marks the cells an open proposal would change
  });
  document.addEventListener("console:unauthenticated", (event) => signedOut(event.detail));
  document.addEventListener("console:preview", (event) => {
    if (!tabs.policy) return;
    tabs.policy.loaded = true;
    selectTab("policy");
    policy.load(event.detail.proposalId);
  });

  const form = $("#login-form");
  const output = $("#login-message");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token")
      .value.trim()
      .replace(/^Bearer\s+/i, "");
    if (!value) {
      message(output, "error", "请先粘贴访问令牌");
      return;
    }
    message(output, "info", "");
    busy($("#login-submit"), output, () => signIn(value)).then(() => {
      $("#token").value = "";
    });
  });
  $("#logout").addEventListener("click", signOut);

  // 统一身份认证 when the gateway trusts a platform (/auth/signin.js), the token form where
  // allowed. A reload in the same tab keeps the administrator signed in (the token is in
  // sessionStorage).
  setUpSignIn({
    box: $("#signin"),
    tokenForm: form,
    show: (kind, text) => message(output, kind, text),
    signIn: (value) => busy(null, output, () => signIn(value)),
    token,
    expired: signedOut,
  });
}

start();
