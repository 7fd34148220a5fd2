// XLSX export for the monthly report, in the browser: write-excel-file
// (vendor/write-excel-file.min.js, global writeXlsxFile, loaded with its integrity hash).
// A suppressed cell is written as the text "—（已隐藏）", never as a number.

import { SUPPRESSED_TEXT } from "./cells.js";

function xlsxCell(cell) {
  if (cell.text !== undefined) return { value: cell.text };
  if (cell.suppressed) return { value: SUPPRESSED_TEXT, align: "right" };
  if (cell.percent) return { value: cell.value, type: Number, format: "0.00%" };
  return { value: cell.value, type: Number };
}

/**
 * sheets: [{name, title, notes: [string], headers: [string], rows: [[cell]]}]
 * Each sheet: a title row, note rows, an empty row, then the header row and the rows.
 */
export async function download(fileName, sheets) {
  if (typeof window.writeXlsxFile !== "function") throw new Error("XLSX 组件未加载 (vendor/write-excel-file.min.js)");
  const book = sheets.map((sheet) => {
    const data = [
      [{ value: sheet.title, fontWeight: "bold", fontSize: 14 }],
      ...(sheet.notes || []).map((note) => [{ value: note, color: "#555555" }]),
      [],
      sheet.headers.map((header) => ({ value: header, fontWeight: "bold", backgroundColor: "#e8eef5" })),
      ...sheet.rows.map((row) => row.map(xlsxCell)),
    ];
    return {
      data,
      sheet: sheet.name.slice(0, 31),
      columns: sheet.headers.map((header, i) => ({ width: i === 0 ? 24 : Math.max(12, header.length * 2 + 2) })),
    };
  });
  const blob = await window.writeXlsxFile(book, { fontFamily: "等线", fontSize: 11 }).toBlob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
