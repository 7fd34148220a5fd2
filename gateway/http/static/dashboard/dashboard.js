// The dashboard's entry: sign-in, the region and year selectors (drill-down), the view tabs.

import { graphql, token } from "./api.js";
import { disposeAll } from "./charts.js";
import { $, busy, fill, h, message } from "./dom.js";
import { departmentName, levelName } from "./labels.js";
import { ME } from "./queries.js";
import { children, loadRegions, path, regionName } from "./regions.js";
import * as views from "./views.js";

const TABS = ["coverage", "warnings", "tasks", "sharing", "anomalies"];
const state = { me: null, code: null, year: new Date().getFullYear(), tab: "coverage" };

// ------------------------------------------------------------------ sign-in
async function signIn(value) {
  token.set(value);
  let me;
  try {
    [me] = await Promise.all([graphql(ME).then((data) => data.me), loadRegions()]);
  } catch (error) {
    token.clear();
    throw error;
  }
  if (String(me.level).toUpperCase() === "COUNTY" && me.department !== "BIG_DATA") {
    // Still allowed (the figures are the same for everyone), but say what the page is for.
    message($("#login-message"), "info", "本页面面向省、市级监督; 县级令牌只能查看本县。");
  }
  state.me = me;
  state.code = me.region;
  fill($("#whoami-text"), `${me.subject} · ${departmentName(me.department)} ${levelName(me.level)} · 辖区 ${regionName(me.region)} (${me.region})`);
  $("#whoami").hidden = false;
  $("#login").hidden = true;
  $("#app").hidden = false;
  fillYears();
  showRegion();
}

function signOut() {
  sessionStorage.clear();
  window.location.reload();
}

function signedOut(messages) {
  token.clear();
  state.me = null;
  $("#app").hidden = true;
  $("#whoami").hidden = true;
  $("#login").hidden = false;
  message($("#login-message"), "error", `${messages.join("; ")}; 请重新登录`);
}

// ------------------------------------------------------------------ region and year
function fillYears() {
  const select = $("#year");
  const now = new Date().getFullYear();
  fill(select, [0, 1, 2, 3].map((back) => h("option", { value: String(now - back) }, `${now - back}年`)));
  select.value = String(state.year);
}

/** The options of one selector: the jurisdiction's own level is fixed, below it free. */
function fillRegionSelect(select, level, parentCode) {
  const home = state.me.region;
  const selected = state.code.length >= level ? state.code.slice(0, level) : "";
  if (home.length >= level) {
    // Above or at the caller's own level: only its own region.
    fill(select, h("option", { value: home.slice(0, level) }, regionName(home.slice(0, level))));
    select.disabled = true;
    return;
  }
  select.disabled = !parentCode;
  const options = parentCode ? children(parentCode) : [];
  fill(select, h("option", { value: "" }, level === 4 ? "全部市" : "全部县 (市、区)"), options.map((code) => h("option", { value: code }, regionName(code))));
  select.value = selected;
}

function showRegion() {
  const code = state.code;
  const cityParent = code.length >= 2 ? code.slice(0, 2) : null;
  fillRegionSelect($("#city"), 4, cityParent);
  fillRegionSelect($("#county"), 6, code.length >= 4 ? code.slice(0, 4) : null);
  const home = state.me.region;
  fill(
    $("#crumbs"),
    path(code)
      .filter((c) => c.length >= home.length)
      .map((c, i, all) =>
        i === all.length - 1
          ? h("span", { "aria-current": "page" }, regionName(c))
          : [h("button", { type: "button", class: "link", onclick: () => drill(c) }, regionName(c)), h("span", { class: "sep", "aria-hidden": "true" }, " › ")],
      ),
  );
  loadTab();
}

function drill(code) {
  if (!code || !code.startsWith(state.me.region)) return;
  state.code = code;
  showRegion();
}

// ------------------------------------------------------------------ tabs
function selectTab(name, focus = false) {
  state.tab = name;
  for (const key of TABS) {
    const button = $(`#tab-${key}`);
    const selected = key === name;
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`#panel-${key}`).hidden = !selected;
  }
  if (focus) $(`#tab-${name}`).focus();
  loadTab();
}

function loadTab() {
  const panel = $(`#panel-${state.tab}`);
  disposeAll(document.body);
  for (const key of TABS) if (key !== state.tab) $(`#panel-${key}`).replaceChildren();
  const ctx = {
    code: state.code,
    year: state.year,
    drill,
    setMinCell: (value) => fill($("#min-cell"), String(value)),
  };
  panel.setAttribute("aria-busy", "true");
  views[state.tab](panel, ctx).finally(() => panel.removeAttribute("aria-busy"));
}

function wireTabs() {
  TABS.forEach((name, index) => {
    const button = $(`#tab-${name}`);
    button.addEventListener("click", () => selectTab(name));
    button.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) selectTab(TABS[(index + step + TABS.length) % TABS.length], true);
    });
  });
}

// ------------------------------------------------------------------ start
function start() {
  wireTabs();
  document.addEventListener("dashboard:unauthenticated", (event) => signedOut(event.detail));
  $("#filters").addEventListener("submit", (event) => event.preventDefault());
  $("#year").addEventListener("change", (event) => {
    state.year = Number(event.target.value);
    loadTab();
  });
  $("#city").addEventListener("change", (event) => drill(event.target.value || state.code.slice(0, 2)));
  $("#county").addEventListener("change", (event) => drill(event.target.value || state.code.slice(0, 4)));

  const output = $("#login-message");
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token").value.trim().replace(/^Bearer\s+/i, "");
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
  if (!window.echarts || !window.writeXlsxFile) {
    message(output, "error", "图表或导出组件未能加载 (完整性校验失败或文件缺失), 请联系运维");
  }
  const saved = token.get();
  if (saved) busy(null, output, () => signIn(saved));
}

start();

