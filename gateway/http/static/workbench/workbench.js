// The workbench's entry: sign-in, who-am-I, the purpose, tabs. Each tab lives in its own module.

import { setUpSignIn } from "/auth/signin.js";
import { ApiError, graphql, purpose, token } from "./api.js";
import { ME, ME_PURPOSE } from "./queries.js";
import { $, busy, fill, h, message, session } from "./ui.js";
import { PURPOSES, departmentName, levelName, purposeName } from "./words.js";
import * as tasks from "./tasks.js";
import * as warnings from "./warnings.js";
import * as anomalies from "./anomalies.js";
import * as batches from "./batches.js";
import * as chain from "./chain.js";

const TABS = {
  tasks: { module: tasks, loaded: false },
  warnings: { module: warnings, loaded: false },
  anomalies: { module: anomalies, loaded: false },
  batches: { module: batches, loaded: false },
  chain: { module: chain, loaded: false },
};

// The purpose a clerk of each department usually declares, when it is allowed.
const USUAL_PURPOSE = {
  medical_insurance: "benefit_settlement",
  civil_affairs: "relief_recognition",
  rural_revitalization: "relief_recognition",
  health: "enrollment_verification",
};

/** The purposes under which the caller reads person data (asked of `me`, one per purpose). */
async function allowedPurposes() {
  const codes = Object.keys(PURPOSES);
  const answers = await Promise.all(
    codes.map((code) => graphql(ME_PURPOSE, {}, code).then((data) => data.me)),
  );
  return answers
    .filter((me) => me.rowScope.length && me.fieldAccess.some((f) => f.effect !== "DENY"))
    .map((me) => me.purpose);
}

async function signIn(value) {
  token.set(value);
  let me;
  let purposes;
  try {
    [me, purposes] = await Promise.all([graphql(ME, {}, "").then((d) => d.me), allowedPurposes()]);
  } catch (error) {
    token.clear();
    throw error;
  }
  if (!["COUNTY", "CITY", "PROVINCE"].includes(me.level)) {
    token.clear();
    throw new ApiError([`该令牌 (${me.subject}) 不是县级、市级或省级部门的令牌, 不能使用本工作台`]);
  }
  session.me = me;
  session.purposes = purposes;
  showApp();
}

function fillPurposes() {
  const select = $("#purpose");
  const usual = USUAL_PURPOSE[String(session.me.department).toLowerCase()];
  const saved = purpose.get();
  let chosen = session.purposes.includes(saved) ? saved : "";
  if (!chosen) chosen = session.purposes.includes(usual) ? usual : session.purposes[0] || "";
  purpose.set(chosen);
  fill(
    select,
    session.purposes.length
      ? session.purposes.map((code) =>
          h("option", { value: code, selected: code === chosen }, purposeName(code)),
        )
      : h("option", { value: "" }, "无 (本部门无权读取人员数据)"),
  );
}

function showApp() {
  const me = session.me;
  fill(
    $("#whoami-text"),
    `${me.subject} · ${departmentName(me.department)} ${levelName(me.level)} · 辖区 ${me.region}`,
  );
  fillPurposes();
  $("#whoami").hidden = false;
  $("#login").hidden = true;
  $("#app").hidden = false;
  for (const tab of Object.values(TABS)) tab.loaded = false;
  for (const tab of Object.values(TABS)) tab.module.signedIn?.();
  selectTab("tasks");
}

function signOut() {
  // Drop the token and everything the previous clerk saw.
  sessionStorage.clear();
  session.me = null;
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

function selectTab(name, detail = {}) {
  for (const [key, tab] of Object.entries(TABS)) {
    const selected = key === name;
    const button = $(`#tab-${key}`);
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`#panel-${key}`).hidden = !selected;
    if (selected && (!tab.loaded || Object.keys(detail).length)) {
      tab.loaded = true;
      tab.module.load(detail);
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
      let next = null;
      if (step) next = names[(names.indexOf(name) + step + names.length) % names.length];
      if (event.key === "Home") next = names[0];
      if (event.key === "End") next = names[names.length - 1];
      if (!next) return;
      event.preventDefault();
      selectTab(next);
      $(`#tab-${next}`).focus();
    });
  }
}

function start() {
  wireTabs();
  for (const tab of Object.values(TABS)) tab.module.init();
  document.addEventListener("workbench:unauthenticated", (event) => signedOut(event.detail));
  document.addEventListener("workbench:go", (event) => {
    const { tab, ...detail } = event.detail;
    selectTab(tab, detail);
    $(`#tab-${tab}`).focus();
  });
  $("#purpose").addEventListener("change", (event) => {
    purpose.set(event.target.value);
    // Lists are read again under the new purpose when next opened; the open one at once.
    for (const [key, tab] of Object.entries(TABS)) {
      tab.loaded = key === "batches" ? tab.loaded : false;
      if (!$(`#panel-${key}`).hidden && !tab.loaded) {
        tab.loaded = true;
        tab.module.load({});
      }
    }
    chain.purposeChanged();
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

  // 统一身份认证 when the gateway trusts a platform (the button; back from it, the code traded
  // for the token), the token form where allowed. A reload in the same tab keeps the clerk
  // signed in (the token is in sessionStorage).
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
