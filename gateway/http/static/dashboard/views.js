// The five views. Each reads one `statistics` document (queries.js) for the selected region
// and year and draws charts, tables and the XLSX sheets from the same cells (cells.js).

import { graphql } from "./api.js";
import { count, rate, text, plotted } from "./cells.js";
import { bars } from "./charts.js";
import { h } from "./dom.js";
import { departmentName, ruleName, taskKindName } from "./labels.js";
import { chartBox, scaffold, summary, table } from "./panel.js";
import { COVERAGE, SHARING, TASKS, WARNINGS } from "./queries.js";
import { childLevel, levelOf, regionName } from "./regions.js";

const LEVEL_WORD = { CITY: "市", COUNTY: "县 (市、区)", PROVINCE: "省" };

function variables(ctx) {
  return { prefix: ctx.code, own: levelOf(ctx.code), child: childLevel(ctx.code) };
}

function fileName(ctx, view) {
  return `运行监测-${view}-${regionName(ctx.code)}${ctx.code}-${ctx.year}.xlsx`;
}

/** A child region's chart label: its name, and a second line when its figure is hidden. */
function label(code, hidden) {
  return hidden ? `${regionName(code)}\n(已隐藏)` : regionName(code);
}

const drillable = (ctx, code) => (code.length > ctx.code.length ? code : null);

// ------------------------------------------------------------------ coverage (参保覆盖)
export async function coverage(panel, ctx) {
  const view = scaffold(panel, {
    title: `农村低收入人口和脱贫人口参保覆盖率 · ${regionName(ctx.code)} · ${ctx.year}年`,
    hint: "按居住地统计 (statistics.coverage): 应参保人数为统计日持有监测类别身份的人, 已参保为该年度正常参保; 目标 99% (002 §1)。红色为未达目标的地区。",
    fileName: () => fileName(ctx, "参保覆盖"),
  });
  let data;
  try {
    data = await graphql(COVERAGE, { ...variables(ctx), year: ctx.year });
  } catch (error) {
    view.fail(error);
    return;
  }
  ctx.setMinCell(data.total.minCellSize);
  const found = data.total.coverage;
  const target = Number(found.target);
  const row = (cell) => {
    const population = count(cell.population, cell.populationSuppressed);
    const enrolled = count(cell.enrolled, cell.enrolledSuppressed);
    // 未参保 = 应参保 - 已参保 only when both are published (then it reveals nothing more).
    const missing =
      population.suppressed || enrolled.suppressed ? { suppressed: true } : { value: population.value - enrolled.value };
    return {
      code: cell.regionCode,
      population,
      enrolled,
      missing,
      rate: rate(cell.rate),
      below: cell.meetsTarget === false,
      meetsTarget: cell.meetsTarget,
      meets: cell.meetsTarget === null ? { suppressed: true } : text(cell.meetsTarget ? "达标" : "未达标"),
    };
  };
  const total = found.regions.map(row)[0];
  const headers = ["地区", "应参保人数", "已参保人数", "未参保人数", "参保率", "是否达到99%"];
  const toCells = (r) => [text(regionName(r.code), drillable(ctx, r.code)), r.population, r.enrolled, r.missing, r.rate, r.meets];
  const sheets = [];
  const notes = [`统计日 ${found.referenceDate}; 目标参保率 ${(target * 100).toFixed(0)}%; 按居住地统计`, `“—（已隐藏）”: 少于 ${data.total.minCellSize} 人或为防推算而不发布`];

  if (total) {
    view.body.append(
      summary([
        ["应参保人数", total.population],
        ["已参保人数", total.enrolled],
        ["参保率", total.rate, { true: "meets-target", false: "below-target" }[total.meetsTarget] || null],
        ["统计日", text(found.referenceDate)],
      ]),
    );
  }
  const childTitle = levelOf(ctx.code) === "COUNTY" ? `${regionName(ctx.code)}参保率` : `各${LEVEL_WORD[childLevel(ctx.code)]}参保率`;
  const sections = [[childTitle, data.children.coverage.regions.map(row)]];
  if (levelOf(ctx.code) === "PROVINCE") {
    sections.push(["各县 (市、区) 参保率 (红色: 未达目标)", data.counties.coverage.regions.map(row)]);
  }
  for (const [title, rows] of sections) {
    const box = chartBox(`${title}柱状图, 虚线为 99% 目标; 数据见下表`);
    view.body.append(h("h3", {}, title), box);
    bars(box, {
      title: "",
      categories: rows.map((r) => label(r.code, r.rate.suppressed)),
      series: [{ name: "参保率", data: rows.map((r) => plotted(r.rate, 100)) }],
      unit: "%",
      target: target * 100,
      below: (i) => rows[i].below,
      onClick: (i) => drillable(ctx, rows[i].code) && ctx.drill(rows[i].code),
    });
    const tableRows = rows.map((r) => ({ cells: toCells(r), below: r.below }));
    view.body.append(table(title, headers, tableRows, ctx.drill));
    sheets.push({ name: title.replace(/[ ()（）:红色未达目标]/g, "").slice(0, 20) || "参保率", title: `${regionName(ctx.code)} ${ctx.year}年 ${title}`, notes, headers, rows: tableRows.map((r) => r.cells) });
  }
  if (total) {
    sheets.unshift({ name: "合计", title: `${regionName(ctx.code)} ${ctx.year}年 参保覆盖率`, notes, headers, rows: [toCells(total)] });
  }
  view.setSheets(sheets);
}

// ------------------------------------------------------------------ warnings (高额费用预警)
export async function warnings(panel, ctx) {
  const view = scaffold(panel, {
    title: `高额医疗费用负担预警人数 · ${regionName(ctx.code)} · ${ctx.year}年`,
    hint: "按推送地统计 (statistics.warnings): 每月新预警的人数, 按预警规则; 全年合计按人计 (同一人同一规则一年只预警一次)。",
    fileName: () => fileName(ctx, "高额费用预警"),
  });
  let data;
  try {
    data = await graphql(WARNINGS, { ...variables(ctx), year: ctx.year });
  } catch (error) {
    view.fail(error);
    return;
  }
  ctx.setMinCell(data.total.minCellSize);
  const own = data.total.warnings;
  const rules = [...new Set(own.map((c) => c.rule).filter(Boolean))].sort();
  const months = Array.from({ length: 12 }, (_, i) => `${ctx.year}-${String(i + 1).padStart(2, "0")}`);
  const cellOf = (cells, region, rule, month) => {
    const found = cells.find((c) => c.regionCode === region && c.rule === rule && c.month === month);
    return found ? count(found.count, found.suppressed) : { value: 0 };
  };
  const byMonth = months.map((month) => rules.map((rule) => cellOf(own, ctx.code, rule, month)));
  const box = chartBox("各月新增预警人数柱状图 (按规则堆叠); 数据见下表");
  view.body.append(h("h3", {}, "各月新增预警人数 (按规则)"), box);
  bars(box, {
    title: "",
    categories: months.map((m, i) => (byMonth[i].some((c) => c.suppressed) ? `${m.slice(5)}月\n(有隐藏)` : `${m.slice(5)}月`)),
    series: rules.map((rule, r) => ({ name: ruleName(rule), data: byMonth.map((cells) => plotted(cells[r])) })),
    unit: "人",
    stack: true,
  });
  const monthHeaders = ["月份", ...rules.map(ruleName)];
  const monthRows = months.map((month, i) => ({ cells: [text(month), ...byMonth[i]] }));
  monthRows.push({ cells: [text("全年 (按人计)"), ...rules.map((rule) => cellOf(own, ctx.code, rule, null))] });
  view.body.append(table("各月新增预警人数", monthHeaders, monthRows));

  const childCells = data.children.warnings;
  const regions = [...new Set(childCells.map((c) => c.regionCode))].sort();
  const regionHeaders = ["地区", "预警人数 (任一规则)", ...rules.map(ruleName)];
  const regionRows = regions.map((code) => ({
    cells: [text(regionName(code), drillable(ctx, code)), cellOf(childCells, code, null, null), ...rules.map((rule) => cellOf(childCells, code, rule, null))],
  }));
  const childTitle = `各${LEVEL_WORD[childLevel(ctx.code)]}全年预警人数`;
  view.body.append(h("h3", {}, childTitle), table(childTitle, regionHeaders, regionRows, ctx.drill));
  const notes = [`按推送地统计; “—（已隐藏）”: 少于 ${data.total.minCellSize} 人或为防推算而不发布`];
  view.setSheets([
    { name: "各月预警", title: `${regionName(ctx.code)} ${ctx.year}年 各月新增预警人数`, notes, headers: monthHeaders, rows: monthRows.map((r) => r.cells) },
    { name: "各地区预警", title: `${regionName(ctx.code)} ${ctx.year}年 ${childTitle}`, notes, headers: regionHeaders, rows: regionRows.map((r) => r.cells) },
  ]);
}

// ------------------------------------------------------------------ tasks (推送任务)
export async function tasks(panel, ctx) {
  const view = scaffold(panel, {
    title: `未办结和超期的推送任务 · ${regionName(ctx.code)}`,
    hint: "按推送地统计 (statistics.tasks), 当前状态 (不按年度): 承办部门须在期限内反馈 (预警核实、身份核验均为 5 个工作日)。",
    fileName: () => fileName(ctx, "推送任务"),
  });
  let data;
  try {
    data = await graphql(TASKS, variables(ctx));
  } catch (error) {
    view.fail(error);
    return;
  }
  ctx.setMinCell(data.total.minCellSize);
  const pair = (c) => [count(c.open, c.openSuppressed), count(c.overdue, c.overdueSuppressed)];
  const departments = [...new Set(data.total.tasks.map((c) => c.department))];
  const childTotals = data.children.tasks.filter((c) => c.kind === null);
  const regions = [...new Set(childTotals.map((c) => c.regionCode))].sort();
  const find = (code, dept) => childTotals.find((c) => c.regionCode === code && c.department === dept);
  const series = departments.flatMap((dept) => [
    { name: `${departmentName(dept)} 未办结`, data: regions.map((code) => (find(code, dept) ? plotted(pair(find(code, dept))[0]) : 0)) },
    { name: `${departmentName(dept)} 已超期`, data: regions.map((code) => (find(code, dept) ? plotted(pair(find(code, dept))[1]) : 0)) },
  ]);
  const hidden = (code) => childTotals.some((c) => c.regionCode === code && (c.openSuppressed || c.overdueSuppressed));
  const childTitle = `各${LEVEL_WORD[childLevel(ctx.code)]}未办结和超期任务 (按承办部门)`;
  const box = chartBox(`${childTitle}柱状图; 数据见下表`);
  view.body.append(h("h3", {}, childTitle), box);
  bars(box, {
    title: "",
    categories: regions.map((code) => label(code, hidden(code))),
    series,
    unit: "条",
    onClick: (i) => drillable(ctx, regions[i]) && ctx.drill(regions[i]),
  });
  const ownHeaders = ["承办部门", "任务类型", "未办结", "其中已超期"];
  const ownRows = data.total.tasks.map((c) => ({ cells: [text(departmentName(c.department)), text(c.kind ? taskKindName(c.kind) : "合计"), ...pair(c)] }));
  const regionHeaders = ["地区", "承办部门", "未办结", "其中已超期"];
  const regionRows = regions.flatMap((code) =>
    departments.filter((dept) => find(code, dept)).map((dept) => ({ cells: [text(regionName(code), drillable(ctx, code)), text(departmentName(dept)), ...pair(find(code, dept))] })),
  );
  view.body.append(
    table(childTitle, regionHeaders, regionRows, ctx.drill),
    h("h3", {}, `${regionName(ctx.code)} 按部门和任务类型`),
    table(`${regionName(ctx.code)} 按部门和任务类型`, ownHeaders, ownRows),
  );
  const notes = [`按推送地统计; “—（已隐藏）”: 少于 ${data.total.minCellSize} 条或为防推算而不发布`];
  view.setSheets([
    { name: "各地区任务", title: `${regionName(ctx.code)} ${childTitle}`, notes, headers: regionHeaders, rows: regionRows.map((r) => r.cells) },
    { name: "按部门和类型", title: `${regionName(ctx.code)} 未办结和超期任务`, notes, headers: ownHeaders, rows: ownRows.map((r) => r.cells) },
  ]);
}

// ------------------------------------------------------------------ sharing (共享统计) and data provided
async function sharingData(ctx) {
  const data = await graphql(SHARING, { prefix: ctx.code, own: levelOf(ctx.code), from: `${ctx.year}-01-01`, to: `${ctx.year}-12-31` });
  return data.total.sharing;
}

function monthly(rows, field, departments, months) {
  return departments.map((dept) => ({
    name: departmentName(dept),
    data: months.map((month) => rows.filter((r) => r.department === dept && r.month === month).reduce((sum, r) => sum + r[field], 0)),
  }));
}

export async function sharing(panel, ctx) {
  const view = scaffold(panel, {
    title: `共享次数和共享人次 · ${regionName(ctx.code)} · ${ctx.year}年`,
    hint: "statistics.sharing.reads (000 §5), 来自审计日志: 共享次数为返回了人员数据的查询次数, 共享人次为各次查询返回的人数之和; 按读取部门 (辖区在本地区内) 和月份。计的是请求而非人数, 不做抑制。",
    fileName: () => fileName(ctx, "共享统计"),
  });
  let found;
  try {
    found = await sharingData(ctx);
  } catch (error) {
    view.fail(error);
    return;
  }
  const reads = found.reads;
  const months = [...new Set(reads.map((r) => r.month))].sort();
  const departments = [...new Set(reads.map((r) => r.department))];
  for (const [title, field, unit] of [["各部门每月共享次数", "requests", "次"], ["各部门每月共享人次", "personTimes", "人次"]]) {
    const box = chartBox(`${title}柱状图; 数据见下表`);
    view.body.append(h("h3", {}, title), box);
    bars(box, { title: "", categories: months, series: monthly(reads, field, departments, months), unit });
  }
  const headers = ["读取部门", "月份", "共享次数", "共享人次"];
  const rows = reads.map((r) => ({ cells: [text(departmentName(r.department)), text(r.month), count(r.requests), count(r.personTimes)] }));
  view.body.append(table("共享次数和共享人次 (按部门、月份)", headers, rows));
  view.setSheets([{ name: "共享统计", title: `${regionName(ctx.code)} ${ctx.year}年 共享次数和共享人次`, notes: ["来源: 审计日志; 读取方辖区在本地区内"], headers, rows: rows.map((r) => r.cells) }]);
}

export async function anomalies(panel, ctx) {
  const view = scaffold(panel, {
    title: `异常 (回传) 与数据报送 · ${regionName(ctx.code)} · ${ctx.year}年`,
    hint: "",
    fileName: () => fileName(ctx, "数据报送"),
  });
  view.body.append(
    h(
      "p",
      { class: "message message-info", role: "status" },
      "统计接口 (statistics) 目前不提供异常的开立数和办结数; 逐条的异常列表 (anomalies) 含人员信息, 本页面不读取。下面是接口已有的各部门数据报送情况 (statistics.sharing.provided): 批次数、报送行数、接收行数。",
    ),
  );
  let found;
  try {
    found = await sharingData(ctx);
  } catch (error) {
    view.fail(error);
    return;
  }
  const provided = found.provided;
  const months = [...new Set(provided.map((r) => r.month))].sort();
  const departments = [...new Set(provided.map((r) => r.department))];
  const box = chartBox("各部门每月报送行数柱状图; 数据见下表");
  view.body.append(h("h3", {}, "各部门每月报送行数"), box);
  bars(box, { title: "", categories: months, series: monthly(provided, "rowsReceived", departments, months), unit: "行" });
  const headers = ["报送部门", "月份", "批次数", "报送行数", "接收行数", "拒收行数"];
  const rows = provided.map((r) => ({
    cells: [text(departmentName(r.department)), text(r.month), count(r.batches), count(r.rowsReceived), count(r.rowsAccepted), count(r.rowsReceived - r.rowsAccepted)],
  }));
  view.body.append(table("各部门数据报送 (按月份)", headers, rows));
  view.setSheets([{ name: "数据报送", title: `${regionName(ctx.code)} ${ctx.year}年 各部门数据报送`, notes: ["异常开立数和办结数: 统计接口未提供"], headers, rows: rows.map((r) => r.cells) }]);
}
