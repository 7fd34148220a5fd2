// One model for a figure, shared by the tables, the charts and the XLSX export, so a
// suppressed cell reads the same everywhere and never turns into a number.
//   {value: 12}                     a published count
//   {suppressed: true}              not published by the API (small cell or secondary)
//   {value: 0.9175, percent: true}  a rate (fraction)
//   {text: "济南市", drill: "3701"}   a label; `drill` makes it a link one level down

export const SUPPRESSED_TEXT = "—（已隐藏）";

export const count = (value, suppressed) =>
  suppressed || value === null || value === undefined ? { suppressed: true } : { value: Number(value) };

export const rate = (value) =>
  value === null || value === undefined ? { suppressed: true } : { value: Number(value), percent: true };

export const text = (value, drill = null) => ({ text: String(value), drill });

export function display(cell) {
  if (cell.text !== undefined) return cell.text;
  if (cell.suppressed) return SUPPRESSED_TEXT;
  if (cell.percent) return `${(cell.value * 100).toFixed(2)}%`;
  return cell.value.toLocaleString("zh-CN");
}

/** The figure a chart may draw: null for a suppressed cell (no bar, never a made-up number). */
export function plotted(cell, scale = 1) {
  if (!cell || cell.suppressed || cell.value === undefined) return null;
  return Math.round(cell.value * scale * 100) / 100;
}
