// 数据报送: the department's batches with their counts and rejection reports, and the upload
// of a department file from the browser (POST /ingest/upload, progress streamed back).

import { downloadReport, graphql, upload } from "./api.js";
import { feedTitle, feedsOf } from "./feeds.js";
import { BATCHES } from "./queries.js";
import { $, busy, department, fill, h, inputError, message } from "./ui.js";
import { BATCH_STATUSES, CHANNELS, COUNTS, formatTime, name } from "./words.js";

const PAGE = 30;
let after = null;
let filter = {};
const seenFeeds = new Set();

export function init() {
  $("#batches-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("#batches-more").addEventListener("click", () => page(true));
  $("#upload-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    fill($("#upload-file-name"), file ? `${file.name} (${kib(file.size)})` : "未选择文件");
  });
  $("#upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
}

export function signedIn() {
  seenFeeds.clear();
  fillFeeds();
  $("#upload-progress").hidden = true;
  fill($("#upload-result"));
  message($("#upload-message"), "info", "");
}

export function load() {
  search();
}

/** The upload and filter choices: the department's feeds, and any the batches report. */
function fillFeeds() {
  const feeds = feedsOf(department(), [...seenFeeds]);
  const upload = $("#upload-feed");
  const keep = upload.value;
  fill(
    upload,
    feeds.length
      ? feeds.map(([feed, title]) => h("option", { value: feed, selected: feed === keep }, `${title} (${feed})`))
      : h("option", { value: "" }, "本部门没有可上传的数据类别"),
  );
  const chosen = $("#batches-feed");
  const keepFilter = chosen.value;
  fill(
    chosen,
    h("option", { value: "" }, "全部类别"),
    feeds.map(([feed, title]) =>
      h("option", { value: feed, selected: feed === keepFilter }, `${title} (${feed})`),
    ),
  );
}

function search() {
  const chosen = {
    feed: $("#batches-feed").value || null,
    status: $("#batches-status").value || null,
  };
  filter = Object.fromEntries(Object.entries(chosen).filter(([, value]) => value !== null));
  after = null;
  page(false);
}

async function page(more) {
  const output = $("#batches-message");
  await busy(more ? $("#batches-more") : $("#batches-search"), output, async () => {
    const data = await graphql(BATCHES, { filter, first: PAGE, after: more ? after : null });
    const connection = data.batches;
    after = connection.pageInfo.endCursor;
    const batches = connection.edges.map((edge) => edge.node);
    const before = seenFeeds.size;
    for (const batch of batches) seenFeeds.add(batch.feed);
    if (seenFeeds.size !== before) fillFeeds();
    const rows = batches.map(row);
    const body = $("#batches-rows");
    if (more) body.append(...rows);
    else if (rows.length) fill(body, rows);
    else fill(body, h("tr", {}, h("td", { colspan: "17", class: "hint" }, "还没有报送批次。")));
    message(output, "info", `共 ${connection.totalCount} 个批次`);
    $("#batches-more").hidden = !connection.pageInfo.hasNextPage;
  });
}

function reportUrl(batchId) {
  return `/ingest/batches/${encodeURIComponent(batchId)}/report`;
}

/** The upload's reportUrl when it is this gateway's report path (the token goes with it). */
function safeReportUrl(url, batchId) {
  return /^\/ingest\/batches\/[^/?#]+\/report$/.test(url || "") ? url : reportUrl(batchId);
}

function reportButton(url, batchId, fileName, output) {
  const fallback = `${(fileName || `批次${batchId}`).replace(/\.[^.]*$/, "")}.拒收报告.csv`;
  const button = h(
    "button",
    { type: "button", class: "link", "aria-label": `下载拒收报告 (批次 ${batchId})` },
    "下载拒收报告",
  );
  button.addEventListener("click", () =>
    busy(button, output, async () => {
      const saved = await downloadReport(url, fallback);
      message(output, "ok", `已下载拒收报告 ${saved}`);
    }),
  );
  return button;
}

function row(batch) {
  const counts = batch.counts;
  return h(
    "tr",
    { dataset: { batchId: batch.id } },
    h("td", {}, formatTime(batch.receivedAt)),
    h("td", {}, feedTitle(batch.department, batch.feed)),
    h("td", {}, name(CHANNELS, batch.channel), batch.fileName ? [h("br"), batch.fileName] : null),
    h("td", {}, batch.region),
    h("td", {}, batch.submittedBy),
    h("td", {}, name(BATCH_STATUSES, batch.status)),
    COUNTS.map(([key]) => h("td", { class: "number", dataset: { count: key } }, String(counts[key]))),
    h(
      "td",
      {},
      counts.rowsRejected
        ? reportButton(reportUrl(batch.id), batch.id, batch.fileName, $("#batches-message"))
        : "—",
    ),
  );
}

// ------------------------------------------------------------------ upload

function kib(bytes) {
  if (bytes < 1024) return `${bytes} 字节`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

async function send() {
  const output = $("#upload-message");
  const bar = $("#upload-bar");
  const status = $("#upload-status");
  const result = $("#upload-result");
  await busy($("#upload-submit"), output, async () => {
    const feed = $("#upload-feed").value;
    const file = $("#upload-file").files[0];
    const dryRun = $("#upload-dry-run").checked;
    if (!feed) throw inputError("请选择数据类别");
    if (!file) throw inputError("请选择要上传的数据文件");
    message(output, "info", "");
    fill(result);
    $("#upload-progress").hidden = false;
    fill($("#upload-bar-label"), "上传进度");
    bar.max = 100;
    bar.value = 0;
    fill(status, `正在上传 ${file.name} (${kib(file.size)})…`);
    const started = performance.now();
    const line = await upload(feed, file, dryRun, {
      onBytes: (loaded, total) => {
        bar.value = total ? Math.round((loaded / total) * 100) : 0;
        fill(status, `已上传 ${kib(loaded)} / ${kib(total)}`);
        if (loaded >= total) fill(status, "上传完成, 正在校验和导入…");
      },
      onRows: (rows) => {
        fill($("#upload-bar-label"), "导入进度");
        bar.removeAttribute("value"); // the total number of rows is not known until the end
        fill(status, `已处理 ${rows} 行…`);
      },
    });
    bar.max = 100;
    bar.value = 100;
    fill(status, `完成, 用时 ${((performance.now() - started) / 1000).toFixed(1)} 秒`);
    fill(result, summary(file.name, line, dryRun));
    if (!dryRun) search(); // the new batch in the list
  });
}

/** The same summary as `relief-gateway ingest` prints (gateway/cli/ingest.py). */
function summary(fileName, line, dryRun) {
  const batch = line.batch || null;
  const counts = line.counts || {};
  if (line.status === "DUPLICATE" || line.duplicateOf) {
    return h(
      "div",
      { class: "summary-card", dataset: { outcome: "duplicate" } },
      h(
        "p",
        { class: "message message-info", role: "status" },
        `${fileName}: 与已导入的批次 ${line.duplicateOf || batch?.id || ""} 内容相同, 本次未做任何更改`,
      ),
    );
  }
  let where = String(line.format || "").toUpperCase();
  if (line.encoding) where += `, ${String(line.encoding).toUpperCase()} 编码`;
  const head = dryRun || line.status === "DRY_RUN" || !batch ? "校验 (未写入)" : `批次 ${batch.id}`;
  const ignored = Array.isArray(line.ignoredColumns) ? line.ignoredColumns : [];
  const changed = ["added", "exited", "identityChanged", "updated", "anomaliesOpened"].some(
    (key) => counts[key],
  );
  const rejections = Array.isArray(line.rejections) ? line.rejections : [];
  return h(
    "div",
    { class: "summary-card", dataset: { outcome: dryRun ? "dry-run" : "loaded" } },
    h("h3", {}, `${fileName}${where ? ` (${where})` : ""} → ${head}`),
    h(
      "dl",
      { class: "counts" },
      COUNTS.map(([key, label]) => [
        h("dt", {}, label),
        h("dd", { dataset: { count: key } }, String(counts[key] ?? 0)),
      ]),
    ),
    !dryRun && !changed && !counts.rowsRejected
      ? h("p", { class: "message message-info", role: "status" }, "本次未做任何更改 (数据与已报送的相同)")
      : null,
    ignored.length ? h("p", { class: "hint" }, `未识别而忽略的列: ${ignored.join("、")}`) : null,
    rejections.length
      ? [
          h("h4", {}, `拒收明细 (前 ${Math.min(rejections.length, 20)} 行)`),
          h(
            "table",
            { class: "data rejections" },
            h(
              "thead",
              {},
              h("tr", {}, ["行号", "列", "值", "原因"].map((t) => h("th", { scope: "col" }, t))),
            ),
            h(
              "tbody",
              {},
              rejections.slice(0, 20).map((r) =>
                h("tr", {}, h("td", {}, String(r.line)), h("td", {}, r.column), h("td", {}, r.value), h("td", {}, r.reason)),
              ),
            ),
          ),
        ]
      : null,
    line.reportUrl && batch
      ? h("p", {}, "拒收报告: ", reportButton(safeReportUrl(line.reportUrl, batch.id), batch.id, fileName, $("#upload-message")))
      : null,
  );
}
