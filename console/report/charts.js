/* Draws the report's charts into SVG from the JSON embedded in the page: no library, no network. */
(function () {
  "use strict";

  var W = 760, H = 250, M = { top: 14, right: 14, bottom: 44, left: 60 };

  function esc(value) {
    return String(value).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function niceMax(value) {
    if (value <= 0) { return 1; }
    var power = Math.pow(10, Math.floor(Math.log(value) / Math.LN10));
    var n = value / power;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * power;
  }

  function fmt(n) {
    return Math.round(n) === n ? n.toLocaleString("en") : n.toFixed(1);
  }

  function empty(el, message) {
    el.innerHTML = '<p class="empty">' + esc(message) + "</p>";
    el.setAttribute("data-rendered", "0");
  }

  // bars: [{label, title, attrs: {name: value}, segments: [{cls, value}]}], stacked bottom-up.
  function drawBars(el, bars, opts) {
    var iw = W - M.left - M.right, ih = H - M.top - M.bottom, max = 0;
    bars.forEach(function (bar) {
      var sum = 0;
      bar.segments.forEach(function (s) { sum += s.value; });
      if (sum > max) { max = sum; }
    });
    var top = niceMax(max), slot = iw / Math.max(bars.length, 1), width = Math.max(1, slot * 0.8);
    // As many x labels as fit side by side (about 7 px per character of 11 px text).
    var longest = 1;
    bars.forEach(function (bar) { longest = Math.max(longest, String(bar.label).length); });
    var fit = Math.max(1, Math.floor(iw / (longest * 7 + 12)));
    var every = Math.max(1, Math.ceil(bars.length / fit)), out = [];
    out.push('<svg class="chart-svg" viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="' + esc(opts.title) + '">');
    for (var i = 0; i <= 4; i++) {
      var value = top * i / 4, y = M.top + ih - ih * i / 4;
      out.push('<line class="grid" x1="' + M.left + '" x2="' + (W - M.right) + '" y1="' + y + '" y2="' + y + '"></line>');
      out.push('<text class="tick" x="' + (M.left - 6) + '" y="' + (y + 4) + '" text-anchor="end">' + fmt(value) + "</text>");
    }
    bars.forEach(function (bar, index) {
      var x = M.left + index * slot + (slot - width) / 2, base = M.top + ih, attrs = "";
      Object.keys(bar.attrs).forEach(function (name) { attrs += " data-" + name + '="' + esc(bar.attrs[name]) + '"'; });
      out.push('<g class="bar"' + attrs + "><title>" + esc(bar.title) + "</title>");
      bar.segments.forEach(function (s) {
        if (s.value <= 0) { return; }
        var h = Math.max(1, ih * s.value / top);
        base -= h;
        out.push('<rect class="' + s.cls + '" x="' + x.toFixed(1) + '" y="' + base.toFixed(1) + '" width="' + width.toFixed(1) + '" height="' + h.toFixed(1) + '"></rect>');
      });
      out.push("</g>");
      if (index % every === 0) {
        out.push('<text class="tick" x="' + (x + width / 2).toFixed(1) + '" y="' + (M.top + ih + 16) + '" text-anchor="middle">' + esc(bar.label) + "</text>");
      }
    });
    out.push('<line class="axis" x1="' + M.left + '" x2="' + (W - M.right) + '" y1="' + (M.top + ih) + '" y2="' + (M.top + ih) + '"></line>');
    out.push('<text class="axis-label" x="' + (M.left + iw / 2) + '" y="' + (H - 6) + '" text-anchor="middle">' + esc(opts.x) + "</text>");
    out.push('<text class="axis-label" transform="translate(14,' + (M.top + ih / 2) + ') rotate(-90)" text-anchor="middle">' + esc(opts.y) + "</text>");
    out.push("</svg>");
    el.innerHTML = out.join("");
    el.setAttribute("data-rendered", String(bars.length));
  }

  function clock(iso, step) {
    return iso.slice(11, step < 1 ? 21 : 19);
  }

  function throughput(el, data) {
    var buckets = data.throughput.buckets, step = data.throughput.step_seconds;
    if (!buckets.length) { return empty(el, "No batch has been answered yet."); }
    drawBars(el, buckets.map(function (b) {
      return {
        label: clock(b.start, step),
        title: b.start + ": " + b.accepted + " accepted, " + b.rejected + " rejected, " + b.batches + " batches",
        attrs: { start: b.start, accepted: b.accepted, rejected: b.rejected, batches: b.batches },
        segments: [{ cls: "seg-accepted", value: b.accepted }, { cls: "seg-rejected", value: b.rejected }]
      };
    }), { title: "Rows answered per " + step + " s", x: "time (UTC), " + step + " s buckets", y: "rows answered" });
  }

  function attempts(el, data) {
    var bins = data.attempts_per_batch.bins;
    if (!bins.length) { return empty(el, "No batches."); }
    drawBars(el, bins.map(function (b) {
      return {
        label: String(b.attempts),
        title: b.batches + " batches with " + b.attempts + " attempts",
        attrs: { attempts: b.attempts, batches: b.batches },
        segments: [{ cls: b.attempts > 1 ? "seg-retried" : "seg-once", value: b.batches }]
      };
    }), { title: "Batches by number of HTTP attempts", x: "HTTP attempts", y: "batches" });
  }

  function main() {
    var data = JSON.parse(document.getElementById("report-data").textContent);
    throughput(document.getElementById("chart-throughput"), data);
    attempts(document.getElementById("chart-attempts"), data);
    document.body.setAttribute("data-charts", "rendered");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", main);
  } else {
    main();
  }
})();
