// The parts every view is made of: a heading with the export button, a status line, chart
// boxes and tables (the tables are the charts' accessible twin and the export's source).

import { display } from "./cells.js";
import { busy, errorText, fill, h, message } from "./dom.js";
import { download } from "./xlsx.js";

/** Heading, hint, export button, status line. Returns {status, body, setSheets}. */
export function scaffold(panel, { title, hint, fileName }) {
  let sheets = [];
  const status = h("p", { class: "message", hidden: true });
  const exportButton = h("button", { type: "button", class: "export", "aria-describedby": `${panel.id}-title` }, "导出 XLSX");
  exportButton.addEventListener("click", () =>
    busy(exportButton, status, async () => {
      if (!sheets.length) throw { messages: ["没有可导出的数据"] };
      await download(fileName(), sheets);
      message(status, "ok", "已导出 XLSX 文件");
    }),
  );
  const body = h("div", { class: "panel-body" });
  fill(
    panel,
    h("div", { class: "panel-head" }, h("h2", { id: `${panel.id}-title` }, title), exportButton),
    hint ? h("p", { class: "hint" }, hint) : null,
    status,
    body,
  );
  return {
    status,
    body,
    setSheets: (value) => {
      sheets = value;
    },
    fail: (error) => message(status, "error", errorText(error)),
  };
}

export function chartBox(label) {
  return h("div", { class: "chart", role: "img", "aria-label": label });
}

/** A table of cells. headers: [string]; rows: [{cells, below?}]; onDrill(code). */
export function table(caption, headers, rows, onDrill) {
  const body = rows.map((row) =>
    h(
      "tr",
      { class: row.below ? "below-target" : null },
      row.cells.map((cell, index) => {
        const content =
          cell.drill && onDrill
            ? h("button", { type: "button", class: "link", onclick: () => onDrill(cell.drill) }, display(cell))
            : display(cell);
        const attrs = { class: [cell.suppressed ? "suppressed" : "", cell.text === undefined ? "num" : ""].join(" ").trim() || null };
        if (cell.suppressed) attrs.title = "未发布: 人数少于最小发布人数, 或为防推算一并隐藏";
        return index === 0 ? h("th", { scope: "row", ...attrs }, content) : h("td", attrs, content);
      }),
    ),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "data" },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((header) => h("th", { scope: "col" }, header)))),
      h("tbody", {}, body.length ? body : h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "无数据"))),
    ),
  );
}

export function summary(items) {
  return h(
    "dl",
    { class: "summary" },
    items.map(([label, cell, extra]) => h("div", { class: extra || null }, h("dt", {}, label), h("dd", { class: cell.suppressed ? "suppressed" : null }, display(cell)))),
  );
}
