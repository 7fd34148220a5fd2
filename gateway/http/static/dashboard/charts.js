// Apache ECharts (vendor/echarts.common.min.js, loaded by index.html with its integrity hash).
// Tooltips are drawn on the canvas (renderMode "richText"): the HTML tooltip would need
// inline style attributes, which the page's CSP forbids.

const charts = new Set();
const PALETTE = ["#0b5cad", "#d9822b", "#2f8f5b", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d"];
const BELOW = "#c0392b";

window.addEventListener("resize", () => {
  for (const chart of charts) chart.resize();
});

export function disposeAll(root) {
  for (const chart of [...charts]) {
    if (root.contains(chart.getDom())) {
      chart.dispose();
      charts.delete(chart);
    }
  }
}

function init(element) {
  if (!window.echarts) throw new Error("ECharts 未加载 (vendor/echarts.common.min.js)");
  const chart = window.echarts.init(element, null, { renderer: "canvas" });
  charts.add(chart);
  return chart;
}

/**
 * Bars per category.
 *   categories: labels on the x axis
 *   series: [{name, data: [number | null]}] (null: suppressed, no bar)
 *   target: a horizontal line (e.g. 99 for the 99% coverage target)
 *   below: index → true paints that bar in the warning colour (single series)
 *   onClick: index → called when a bar is clicked (drill-down)
 */
export function bars(element, { title, categories, series, unit = "", target = null, below = null, stack = false, onClick = null }) {
  const chart = init(element);
  const values = series.flatMap((s) => s.data).filter((v) => v !== null);
  const top = Math.max(target ?? 0, ...values, 0);
  chart.setOption({
    animation: false,
    aria: { enabled: false }, // the box keeps its own aria-label; the table below has the data
    color: PALETTE,
    title: { text: title, left: 0, textStyle: { fontSize: 14 } },
    tooltip: { trigger: "axis", renderMode: "richText", valueFormatter: (v) => (v === null || v === undefined ? "已隐藏" : `${v}${unit}`) },
    legend: series.length > 1 ? { top: 0, right: 0 } : undefined,
    grid: { left: 48, right: 24, top: 48, bottom: 16, containLabel: true },
    xAxis: {
      type: "category",
      data: categories,
      axisLabel: { interval: 0, rotate: categories.length > 8 ? 40 : 0, fontSize: 11 },
    },
    yAxis: {
      type: "value",
      name: unit,
      min: target !== null ? Math.max(0, Math.floor(Math.min(target, ...values) - 5)) : 0,
      max: target !== null ? 100 : undefined,
      minInterval: unit === "%" ? undefined : 1,
      axisLabel: { formatter: `{value}${unit}` },
    },
    series: series.map((s, index) => ({
      name: s.name,
      type: "bar",
      stack: stack ? "all" : undefined,
      barMaxWidth: 36,
      data: s.data.map((value, i) => ({
        value,
        itemStyle: below && below(i) ? { color: BELOW } : undefined,
      })),
      label: { show: series.length === 1 && categories.length <= 24, position: "top", fontSize: 10,
        formatter: (p) => (p.value === null || p.value === undefined ? "" : `${p.value}${unit}`) },
      markLine:
        target !== null && index === 0
          ? {
              silent: true,
              symbol: "none",
              lineStyle: { color: BELOW, type: "dashed", width: 2 },
              label: { formatter: `目标 ${target}${unit}`, position: "insideEndTop", color: BELOW },
              data: [{ yAxis: target }],
            }
          : undefined,
    })),
  });
  if (top === 0 && target === null) chart.setOption({ yAxis: { max: 5 } });
  if (onClick) chart.on("click", (params) => onClick(params.dataIndex));
  return chart;
}
