// Trend plots with the vendored uPlot: one chart per <script type="application/json" data-chart>.
// Threshold bands (red/yellow zones) and alert markers are drawn in a draw hook.
(function () {
  "use strict";
  var COLORS = ["#1f5fa8", "#b5561b", "#2b7a3d", "#6b3fa0"];
  var BAND = { red: "rgba(200, 30, 30, 0.10)", yellow: "rgba(230, 180, 0, 0.14)" };
  var MARK = { red: "#c81e1e", yellow: "#d49b00", blue: "#2f6fd6", technical: "#666" };

  function drawOverlays(spec) {
    return function (u) {
      var ctx = u.ctx, left = u.bbox.left, top = u.bbox.top, w = u.bbox.width, h = u.bbox.height;
      ctx.save();
      spec.bands.forEach(function (b) {
        if (!u.scales[b.scale]) return;
        var yTop = b.to == null ? top : u.valToPos(b.to, b.scale, true);
        var yBot = b.from == null ? top + h : u.valToPos(b.from, b.scale, true);
        yTop = Math.max(top, Math.min(top + h, yTop));
        yBot = Math.max(top, Math.min(top + h, yBot));
        if (yBot > yTop) { ctx.fillStyle = BAND[b.level] || BAND.yellow; ctx.fillRect(left, yTop, w, yBot - yTop); }
      });
      spec.markers.forEach(function (m) {
        var x = u.valToPos(m.t, "x", true);
        if (x < left || x > left + w) return;
        ctx.strokeStyle = MARK[m.level] || "#333"; ctx.lineWidth = 2 * devicePixelRatio;
        ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
      });
      ctx.restore();
    };
  }

  function build(spec, el) {
    var lang = document.documentElement.lang || "da";
    var daily = spec.resolution === "daily";
    function fmt(t, withTime) {
      var d = new Date(t * 1000);
      var day = d.toLocaleDateString(lang, { day: "numeric", month: "short" });
      return withTime ? day + " " + d.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" }) : day;
    }
    var data = [spec.x], scales = { x: { time: true, range: [spec.start, spec.end] } };
    var series = [{ label: lang === "da" ? "Tid" : "Time", value: function (u, v) { return v == null ? "–" : fmt(v, !daily); } }];
    var axes = [{ values: function (u, vals) { return vals.map(function (v) { return fmt(v, false); }); } }];
    var bands = [], seenScale = {};
    spec.series.forEach(function (s, i) {
      var color = COLORS[i % COLORS.length], scale = s.unit;
      if (!seenScale[scale]) {
        seenScale[scale] = true; scales[scale] = { auto: true };
        axes.push({ scale: scale, label: s.unit, side: Object.keys(seenScale).length === 1 ? 3 : 1,
                    grid: { show: Object.keys(seenScale).length === 1 } });
      }
      data.push(s.values);
      series.push({ label: s.label + " (" + s.unit + ")", scale: scale, stroke: color, width: 2,
                    spanGaps: true, points: { show: true, size: 6, fill: color } });
      if (spec.resolution === "daily" && s.low && s.low.some(function (v) { return v != null; })) {
        data.push(s.high); data.push(s.low);
        var hi = series.length, lo = series.length + 1;
        series.push({ label: s.label + " max", scale: scale, stroke: "transparent", spanGaps: true, points: { show: false } });
        series.push({ label: s.label + " min", scale: scale, stroke: "transparent", spanGaps: true, points: { show: false } });
        bands.push({ series: [hi, lo], fill: color + "33" });
      }
    });
    var opts = {
      width: Math.max(320, el.clientWidth), height: 240, scales: scales, series: series, axes: axes, bands: bands,
      legend: { show: true }, cursor: { drag: { x: true, y: false } },
      hooks: { draw: [drawOverlays(spec)] },
    };
    return new uPlot(opts, data, el);
  }

  document.querySelectorAll("script[data-chart]").forEach(function (node) {
    var spec = JSON.parse(node.textContent);
    var el = document.getElementById("plot-" + spec.key);
    if (!el) return;
    if (!spec.x.length) { el.classList.add("empty"); el.setAttribute("data-rendered", "empty"); return; }
    var chart = build(spec, el);
    el.setAttribute("data-rendered", "1");
    window.addEventListener("resize", function () { chart.setSize({ width: Math.max(320, el.clientWidth), height: 240 }); });
  });
})();
