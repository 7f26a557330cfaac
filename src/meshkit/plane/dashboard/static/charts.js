/* Tiny SVG line charts for the dashboard's trend history (no library, no innerHTML). */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var W = 300, H = 90, PAD_L = 34, PAD_B = 14, PAD_T = 6;

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a >= 1000) return (v / 1000).toFixed(1) + "k";
    if (a >= 10) return v.toFixed(0);
    if (a >= 1) return v.toFixed(1);
    return v.toFixed(2);
  }

  /* points: [{at, value}] (value may be null: a gap); opts: {title, unit, min, max, scale} */
  function lineChart(container, points, opts) {
    opts = opts || {};
    var box = document.createElement("div");
    box.className = "chart";
    box.dataset.metric = opts.key || "";
    var title = document.createElement("div");
    title.className = "title";
    var values = points.map(function (p) { return p.value; }).filter(function (v) { return v !== null && isFinite(v); });
    var last = values.length ? values[values.length - 1] : null;
    title.textContent = (opts.title || "") + ": " + fmt(last === null ? null : last * (opts.scale || 1)) + (opts.unit || "");
    box.appendChild(title);
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img" });
    svg.setAttribute("aria-label", opts.title || "chart");
    var lo = opts.min !== undefined ? opts.min : Math.min.apply(null, values.concat([0]));
    var hi = opts.max !== undefined ? opts.max : Math.max.apply(null, values.concat([lo + 1e-9]));
    if (hi <= lo) hi = lo + 1;
    var t0 = points.length ? points[0].at : 0, t1 = points.length ? points[points.length - 1].at : 1;
    if (t1 <= t0) t1 = t0 + 1;
    function x(t) { return PAD_L + (W - PAD_L - 4) * (t - t0) / (t1 - t0); }
    function y(v) { return PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / (hi - lo)); }
    [hi, lo].forEach(function (v) {
      var label = svgEl("text", { x: 2, y: y(v) + 3 });
      label.textContent = fmt(v * (opts.scale || 1));
      svg.appendChild(label);
    });
    svg.appendChild(svgEl("line", { x1: PAD_L, x2: W, y1: H - PAD_B, y2: H - PAD_B, stroke: "#dde1e6" }));
    var run = [];
    function flush() {
      if (run.length > 1) svg.appendChild(svgEl("polyline", { points: run.join(" ") }));
      if (run.length === 1) {  // a lone point between gaps: a dot, or it would not show
        var xy = run[0].split(",");
        svg.appendChild(svgEl("circle", { cx: xy[0], cy: xy[1], r: 2, fill: "#2f6fd6" }));
      }
      run = [];
    }
    points.forEach(function (p) {
      if (p.value === null || p.value === undefined || !isFinite(p.value)) { flush(); return; }
      run.push(x(p.at).toFixed(1) + "," + y(p.value).toFixed(1));
    });
    flush();
    if (points.length) {
      var span = svgEl("text", { x: PAD_L, y: H - 2 });
      span.textContent = new Date(t0 * 1000).toLocaleTimeString() + " – " + new Date(t1 * 1000).toLocaleTimeString();
      svg.appendChild(span);
    }
    box.appendChild(svg);
    container.appendChild(box);
    return box;
  }

  window.meshkitCharts = { lineChart: lineChart, fmt: fmt };
})();
