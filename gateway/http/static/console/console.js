// The console's entry: sign-in, who-am-I, tabs. Each tab lives in its own module.

import { ApiError, graphql, token } from "./api.js";
import { $, busy, fill, h, message } from "./dom.js";
import { departmentName, levelName, roleName } from "./labels.js";
import { ME } from "./queries.js";
import { session, onVersion } from "./state.js";
import * as policy from "./policy.js";
import * as review from "./review.js";
import * as audit from "./audit.js";

const OFFICER_ROLE = "security_officer";

const TABS = {
  policy: { module: policy, loaded: false },
  review: { module: review, loaded: false },
  audit: { module: audit, loaded: false },
};

async function signIn(value) {
  token.set(value);
  let me;
  try {
    me = (await graphql(ME)).me;
  } catch (error) {
    token.clear();
    throw error;
  }
  if (!me.roles.includes(OFFICER_ROLE)) {
    token.clear();
    throw new ApiError([
      `该令牌 (${me.subject}) 没有安全管理员 (security_officer) 角色, 不能使用本控制台; ` +
        "请使用带有该角色的令牌登录",
    ]);
  }
  session.me = me;
  showApp();
}

function showApp() {
  const me = session.me;
  fill(
    $("#whoami-text"),
    h("code", { class: "subject" }, me.subject),
    ` · ${departmentName(me.department)} ${levelName(me.level)} · 辖区 ${me.region} · ${roleName(OFFICER_ROLE)}`,
  );
  $("#whoami").hidden = false;
  $("#login").hidden = true;
  $("#app").hidden = false;
  for (const tab of Object.values(TABS)) tab.loaded = false;
  selectTab("policy");
  review.refreshPendingCount();
}

function signOut() {
  // Drop the token, the draft and everything the previous officer saw.
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
  for (const [key, tab] of Object.entries(TABS)) {
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
  const names = Object.keys(TABS);
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
  wireTabs();
  policy.init();
  review.init();
  audit.init();
  onVersion((version) => fill($("#current-version"), String(version)));
  document.addEventListener("console:proposals-changed", () => {
    TABS.review.loaded = false; // reloaded when next opened
    review.refreshPendingCount();
    policy.refreshPending(); // the grid marks the cells an open proposal would change
  });
  document.addEventListener("console:unauthenticated", (event) => signedOut(event.detail));
  document.addEventListener("console:preview", (event) => {
    TABS.policy.loaded = true;
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

  // A reload in the same tab keeps the officer signed in (the token is in sessionStorage).
  const saved = token.get();
  if (saved) busy(null, output, () => signIn(saved));
}

start();
