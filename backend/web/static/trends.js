// Trend plots with the vendored uPlot: one chart per <script type="application/json" data-chart>,
// one series per chart (issue 13), so a threshold band always belongs to the line it is drawn
// under. The x range comes from the server (it contains every point: today's daily point at
// 12:00 UTC is never clipped); the y range contains the points and the bands' limits. Alert
// openings are dashed lines in the alert's colour, rejected readings grey crosses at the bottom.
// What was drawn is written onto the plot element (data-drawn, data-bands) for tests to check.
(function () {
  "use strict";
  var COLORS = ["#1f5fa8", "#b5561b", "#2b7a3d", "#6b3fa0"];
  var BAND = { red: "rgba(200, 30, 30, 0.10)", yellow: "rgba(230, 180, 0, 0.14)" };
  var MARK = { red: "#c81e1e", yellow: "#d49b00", blue: "#2f6fd6", technical: "#666", rejected: "#555" };

  function drawOverlays(spec) {
    return function (u) {
      var ctx = u.ctx, left = u.bbox.left, top = u.bbox.top, w = u.bbox.width, h = u.bbox.height;
      var dpr = window.devicePixelRatio || 1;
      ctx.save();
      spec.bands.forEach(function (b) {
        var s = spec.series[b.series || 0];
        if (!s || !u.scales[s.unit]) return;
        var yTop = b.to == null ? top : u.valToPos(b.to, s.unit, true);
        var yBot = b.from == null ? top + h : u.valToPos(b.from, s.unit, true);
        yTop = Math.max(top, Math.min(top + h, yTop));
        yBot = Math.max(top, Math.min(top + h, yBot));
        if (yBot > yTop) { ctx.fillStyle = BAND[b.level] || BAND.yellow; ctx.fillRect(left, yTop, w, yBot - yTop); }
      });
      spec.markers.forEach(function (m) {
        var x = u.valToPos(m.t, "x", true);
        if (x < left || x > left + w) return;
        ctx.strokeStyle = MARK[m.level] || "#333"; ctx.lineWidth = 2 * dpr;
        if (m.level === "rejected") {
          var y = top + h - 8 * dpr, r = 5 * dpr;
          ctx.beginPath(); ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r);
          ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r); ctx.stroke();
          return;
        }
        ctx.setLineDash([4 * dpr, 3 * dpr]);
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
        ctx.setLineDash([]);
      });
      ctx.restore();
    };
  }

  function number(v, lang) {
    if (v == null) return "–";
    var s = (Math.round(v * 10) / 10).toString();
    return lang === "en" ? s : s.replace(".", ",");
  }

  function build(spec, el, onDraw) {
    var lang = document.documentElement.lang || "da";
    var locale = lang === "en" ? "en-GB" : "da-DK";
    var daily = spec.resolution === "daily";
    function fmt(t, withTime) {
      var d = new Date(t * 1000);
      var day = d.toLocaleDateString(locale, { day: "numeric", month: "short" });
      return withTime ? day + " " + d.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" }) : day;
    }
    var xr = spec.x_range || [spec.start, spec.end];
    var data = [spec.x], scales = { x: { time: true, range: xr } };
    var series = [{ label: lang === "da" ? "Tid" : "Time", value: function (u, v) { return v == null ? "–" : fmt(v, !daily); } }];
    // Date ticks: each date once (ticks inside one day show the time instead).
    var axes = [{ values: function (u, vals) {
      var seen = {};
      return vals.map(function (v) {
        var day = fmt(v, false);
        if (!seen[day]) { seen[day] = true; return day; }
        return new Date(v * 1000).toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
      });
    } }];
    var bands = [], seenScale = {};
    spec.series.forEach(function (s, i) {
      var color = COLORS[i % COLORS.length], scale = s.unit;
      if (!seenScale[scale]) {
        seenScale[scale] = true;
        scales[scale] = spec.y_range ? { range: spec.y_range } : { auto: true };
        axes.push({ scale: scale, label: s.unit, side: Object.keys(seenScale).length === 1 ? 3 : 1,
                    grid: { show: Object.keys(seenScale).length === 1 },
                    values: function (u, vals) { return vals.map(function (v) { return number(v, lang); }); } });
      }
      data.push(s.values);
      series.push({ label: s.label + " (" + s.unit + ")", scale: scale, stroke: color, width: 2,
                    spanGaps: true, points: { show: true, size: 6, fill: color },
                    value: function (u, v) { return number(v, lang); } });
      if (daily && s.low && s.low.some(function (v) { return v != null; })) {
        data.push(s.high); data.push(s.low);
        var hi = series.length, lo = series.length + 1;
        series.push({ label: s.label + " max", scale: scale, stroke: "transparent", spanGaps: true, points: { show: false } });
        series.push({ label: s.label + " min", scale: scale, stroke: "transparent", spanGaps: true, points: { show: false } });
        bands.push({ series: [hi, lo], fill: color + "33" });
      }
    });
    var opts = {
      width: Math.max(320, el.clientWidth), height: 200, scales: scales, series: series, axes: axes, bands: bands,
      legend: { show: true }, cursor: { drag: { x: true, y: false } },
      hooks: { draw: [drawOverlays(spec), onDraw] },
    };
    return new uPlot(opts, data, el);
  }

  function report(spec, el, u) {
    // What the plot shows, for a test (and a curious reader of the DOM): points inside the drawn
    // scales, the scales, and each band with the series it is drawn on.
    var drawn = 0;
    spec.series.forEach(function (s) {
      var ys = u.scales[s.unit];
      s.values.forEach(function (v, i) {
        var x = spec.x[i];
        if (v != null && x >= u.scales.x.min && x <= u.scales.x.max && v >= ys.min && v <= ys.max) drawn++;
      });
    });
    el.setAttribute("data-drawn", String(drawn));
    el.setAttribute("data-x-max", String(u.scales.x.max));
    el.setAttribute("data-bands", JSON.stringify(spec.bands.map(function (b) {
      var s = spec.series[b.series || 0];
      return { series: s.component, from: b.from, to: b.to, level: b.level,
               visible: (b.to == null || b.to >= u.scales[s.unit].min) && (b.from == null || b.from <= u.scales[s.unit].max) };
    })));
  }

  document.querySelectorAll("script[data-chart]").forEach(function (node) {
    var spec = JSON.parse(node.textContent);
    var el = document.getElementById("plot-" + spec.key);
    if (!el) return;
    if (!spec.x.length) { el.classList.add("empty"); el.setAttribute("data-rendered", "empty"); return; }
    var chart = build(spec, el, function (u) { report(spec, el, u); el.setAttribute("data-rendered", "1"); });
    window.addEventListener("resize", function () { chart.setSize({ width: Math.max(320, el.clientWidth), height: 200 }); });
  });
})();
