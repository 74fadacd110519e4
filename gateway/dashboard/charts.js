// The dashboard's charts of the last hours (GET /v1/stats/history), drawn with uPlot
// (vendor/uplot/, pinned). The page's own script fetches the history and hands it to
// BurrowCharts.update(); this file only draws. Every label is set as text.
"use strict";

window.BurrowCharts = (() => {
  // The state badges' colours (index.html), darker where a line must show on white.
  const STATE_COLORS = {
    running: "#12b76a", paused: "#f79009", frozen: "#2e90fa", archived: "#667085",
    failed: "#d92d20", creating: "#b692f6", waking: "#9e77ed", freezing: "#6938ef",
    deleting: "#5925dc",
  };
  const ALWAYS_SHOWN = ["running", "paused", "frozen", "archived"];
  const HEIGHT = 190;
  const charts = {};  // figure id -> uPlot
  const shapes = {};  // figure id -> the series it was built with (rebuilt when they change)
  let window_ = [0, 1];  // every chart's time axis: the window asked for, up to now

  function figure(id) { return document.getElementById(id); }

  function widthOf(fig) {
    return Math.max(240, fig.querySelector(".plot").clientWidth || fig.clientWidth - 24);
  }

  // A chart follows its box's width (the window's, or a scroll bar coming or going).
  const resized = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const fig = entry.target.closest("figure");
      const chart = fig && charts[fig.id];
      const width = widthOf(fig);
      if (chart && Math.abs(chart.width - width) > 1) chart.setSize({ width, height: HEIGHT });
    }
  });

  function number(v) {
    if (v === null || v === undefined) return "–";
    return Number(v).toLocaleString(undefined, { maximumFractionDigits: 1 });
  }

  // Without the pointer over a chart, its legend shows the newest values.
  function legendLatest(u) {
    if (u.cursor.idx !== null && u.cursor.idx !== undefined) return;
    const xs = u.data[0];
    for (let i = xs.length - 1; i >= 0; i -= 1) {
      if (u.data.slice(1).some((ys) => ys[i] !== null && ys[i] !== undefined)) {
        u.setLegend({ idx: i }, false);
        return;
      }
    }
  }

  // Shows `data` in the figure `id` (series: [{label, stroke, ...}]), or `empty` instead.
  function draw(id, series, data, yLabel, empty) {
    const fig = figure(id);
    const plot = fig.querySelector(".plot");
    const note = fig.querySelector(".chart-empty");
    const points = data[0].length;
    fig.dataset.points = String(empty ? 0 : points);
    if (empty) {
      note.textContent = empty;
      note.hidden = false;
      plot.hidden = true;
      return;
    }
    note.hidden = true;
    plot.hidden = false;
    const shape = JSON.stringify(series.map((s) => s.label));
    if (charts[id] && shapes[id] === shape) {
      charts[id].setData(data);
      legendLatest(charts[id]);
      return;
    }
    if (charts[id]) charts[id].destroy();
    shapes[id] = shape;
    charts[id] = new uPlot({
      width: widthOf(fig), height: HEIGHT,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true, range: () => window_ },
                y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      hooks: { setCursor: [legendLatest] },
      axes: [
        { stroke: "#5f6b76", grid: { stroke: "#eef1f4" } },
        { label: yLabel, stroke: "#5f6b76", grid: { stroke: "#eef1f4" }, size: 56 },
      ],
      series: [{ label: "time" }, ...series.map((s) => ({ width: 2, value: (u, v) => number(v),
                                                         ...s }))],
    }, data, plot);
    legendLatest(charts[id]);
    resized.observe(plot);
  }

  function sampled(history) {
    const samples = history.samples;
    const states = Object.keys(samples.boxes).filter((s) => ALWAYS_SHOWN.includes(s)
      || samples.boxes[s].some((n) => n > 0));
    const none = samples.at.length === 0
      ? "No data yet: a worker samples boxes and queues once a minute." : null;
    // one sample draws as a dot, not a line
    const dots = { show: true, size: samples.at.length < 3 ? 7 : 4 };
    draw("chart-boxes", states.map((s) => ({ label: s, stroke: STATE_COLORS[s] || "#344054",
                                             points: dots })),
         [samples.at, ...states.map((s) => samples.boxes[s])], "boxes", none);
    draw("chart-queue", [
      { label: "queue depth", stroke: "#2f5f8a", points: dots },
      { label: "backlog", stroke: "#c4320a", points: dots },
    ], [samples.at, samples.queue_depth, samples.backlog], "jobs / pairs", none);
  }

  function wakes(history) {
    const w = history.wakes;
    const total = w.count.reduce((a, b) => a + b, 0);
    const none = total === 0
      ? `No data yet: no box has woken in the last ${history.hours} h.` : null;
    draw("chart-wakes", [{
      label: "wakes / min", stroke: "#2e90fa", fill: "rgba(46, 144, 250, 0.35)",
      paths: uPlot.paths.bars({ size: [0.8, 40] }), points: { show: false },
    }], [w.minute, w.count], "wakes", none);
    const dots = { show: true, size: 5 };
    draw("chart-wake-time", [
      { label: "p50 ms", stroke: "#12b76a", points: dots },
      { label: "p99 ms", stroke: "#d92d20", points: dots },
    ], [w.minute, w.p50_ms, w.p99_ms], "ms", none);
    const caption = figure("chart-wake-time").querySelector(".chart-note");
    caption.textContent = `each minute's wakes; above ${history.sample_size} in a minute, ` +
                          `of a uniform sample of ${history.sample_size}`;
  }

  function setStatus(text, kind) {
    const status = document.getElementById("charts-status");
    status.textContent = text;
    status.dataset.kind = kind || "";
  }

  function update(history) {
    if (typeof uPlot === "undefined") {
      setStatus("the chart library did not load", "error");
      return;
    }
    const minutes = history.wakes.minute;
    window_ = minutes.length ? [minutes[0], minutes[minutes.length - 1] + 60]
      : [history.now - history.hours * 3600, history.now];
    sampled(history);
    wakes(history);
    setStatus(`last ${history.hours} h, kept ${history.kept_hours} h · updated ` +
              new Date(history.now * 1000).toLocaleTimeString(), "ok");
  }

  function failed(message) { setStatus(`charts not updated: ${message}`, "error"); }

  return { update, failed, charts };
})();
