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
import * as live from "./live.js";

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
  startLive();
}

// 实时更新 (live.js): which list each event kind changes.
const LIVE_TABS = {
  TASK_PUSHED: "tasks",
  TASK_ANSWERED: "tasks",
  WARNING_RAISED: "warnings",
  ANOMALY_OPENED: "anomalies",
  ANOMALY_CLOSED: "anomalies",
};
const liveReloads = {};
let livePushed = 0;

function startLive() {
  livePushed = 0;
  $("#live-notice").hidden = true;
  live.start({ onEvent: liveEvent, onStatus: liveStatus });
}

function liveStatus(kind, text) {
  const status = $("#live-status");
  status.hidden = !text;
  status.dataset.state = kind;
  fill(status, kind === "live" ? "● 实时更新" : text);
  status.title = text;
}

/** An answer being typed in the list: it is not re-rendered under the clerk's hands. */
function draftInTasks() {
  return [...document.querySelectorAll("#tasks form select, #tasks form input")].some(
    (field) => field.value,
  );
}

function liveEvent(event) {
  // More was missed than a reconnection replays: every list is read again.
  const names =
    event.kind === "RESUME_TRUNCATED" ? ["tasks", "warnings", "anomalies"] : [LIVE_TABS[event.kind]];
  if (event.kind === "TASK_PUSHED") {
    livePushed += 1;
    const later = draftInTasks() ? ", 您正在填写答复, 提交后点击“刷新”查看" : ", 列表已更新";
    const notice = $("#live-notice");
    fill($("#live-notice-text"), `新推送 ${livePushed} 条${later}`);
    notice.hidden = false;
  }
  for (const name of names) {
    const tab = TABS[name];
    if (!tab) continue;
    tab.loaded = false; // read again when next opened
    if ($(`#panel-${name}`).hidden || (name === "tasks" && draftInTasks())) continue;
    // A warning run pushes many at once: one reload after the burst.
    clearTimeout(liveReloads[name]);
    liveReloads[name] = setTimeout(() => {
      if ($(`#panel-${name}`).hidden) return;
      tab.loaded = true;
      tab.module.load({});
    }, 300);
  }
}

function signOut() {
  live.stop();
  // Drop the token and everything the previous clerk saw.
  sessionStorage.clear();
  session.me = null;
  window.location.reload();
}

function signedOut(messages) {
  live.stop();
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
    startLive(); // the stream declares the purpose too
  });
  $("#live-notice-dismiss").addEventListener("click", () => {
    livePushed = 0;
    $("#live-notice").hidden = true;
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
