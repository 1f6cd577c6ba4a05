// The surge dashboard: reads /dashboard/data once a second (only what is new since the last
// read), keeps the last 15 minutes per function and for the node, and draws them with uPlot.
// window.surge exposes what is plotted, for tests and for the curious.
"use strict";
(function () {
  var SPAN = 900;
  var COLORS = ["#2563eb", "#dc2626", "#f59e0b", "#0d9488", "#9333ea", "#6b7385"];
  // Per function: [title, [[field, label, scale, transform]...]]; scale "y2" is the right axis.
  var MIB = function (v) { return v == null ? null : v / 1048576; };
  var PCT = function (v) { return v == null ? null : v * 100; };
  var CHARTS = [
    ["Requests / s", [["rps", "requests"], ["errors", "errors"], ["throttles", "throttles"]]],
    ["Instances", [["ready", "ready"], ["desired", "desired"], ["max", "max"]]],
    ["Waiting", [["queued", "queued (sync)"], ["backlog", "async backlog"]]],
    ["Cold starts", [["cold_starts", "cold starts"]]],
    ["Memory (MiB)", [["memory_quota", "quota / instance", "y", MIB], ["memory_limit", "cgroup limit", "y", MIB], ["memory_used", "used", "y", MIB]]],
    ["CPU (millicores)", [["cpu_quota", "quota / instance"], ["cpu_used", "used"], ["cpu_throttled", "throttled %", "y2", PCT]]],
    ["Forecast (req/s) and keep-alive windows (s)", [["rps", "actual"], ["forecast_rps", "forecast"], ["prewarm_s", "pre-warm after", "y2"], ["keepalive_s", "keep-alive", "y2"]]],
  ];
  var NODE = [
    ["node-cpu", "CPU (millicores)", [["cpu_capacity", "capacity"], ["cpu_granted", "granted"], ["cpu_used", "used"]]],
    ["node-memory", "Memory (MiB)", [["memory_capacity", "capacity", "y", MIB], ["memory_granted", "granted", "y", MIB], ["memory_used", "used", "y", MIB]]],
  ];

  var state = { since: 0, updates: 0, functions: {}, node: {}, events: [] };

  function append(store, cols) {
    Object.keys(cols).forEach(function (k) {
      store[k] = (store[k] || []).concat(cols[k]);
    });
    var t = store.t || [];
    var cut = t.length ? t[t.length - 1] - SPAN : 0;
    var drop = 0;
    while (drop < t.length && t[drop] < cut) drop++;
    if (drop) Object.keys(store).forEach(function (k) { store[k] = store[k].slice(drop); });
  }

  // Axis labels that fit: 23593 -> 23.6k.
  function compact(u, splits) {
    return splits.map(function (v) {
      if (v == null) return "";
      var a = Math.abs(v);
      if (a >= 1e6) return +(v / 1e6).toFixed(1) + "M";
      if (a >= 1e4) return +(v / 1e3).toFixed(1) + "k";
      return +v.toFixed(2) + "";
    });
  }

  function width(el) { return Math.max(280, el.clientWidth || 330); }

  function makeChart(el, title, lines, store) {
    var h = document.createElement("h3");
    h.textContent = title;
    el.appendChild(h);
    var right = lines.some(function (l) { return l[2] === "y2"; });
    var opts = {
      width: width(el), height: 150,
      scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, Math.max(1, (hi || 0) * 1.1)]; } } },
      series: [{}].concat(lines.map(function (l, i) {
        return { label: l[1], stroke: COLORS[i % COLORS.length], width: 1.5, scale: l[2] || "y", spanGaps: false };
      })),
      axes: [{}, { scale: "y", size: 50, values: compact }].concat(right ? [{ scale: "y2", side: 1, grid: { show: false }, size: 50, values: compact }] : []),
      legend: { show: true },
    };
    if (right) opts.scales.y2 = { range: function (u, lo, hi) { return [0, Math.max(1, (hi || 0) * 1.1)]; } };
    var chart = new uPlot(opts, data(lines, store), el);
    return { chart: chart, lines: lines, el: el };
  }

  function data(lines, store) {
    var t = store.t || [];
    return [t].concat(lines.map(function (l) {
      var col = store[l[0]] || [];
      return l[3] ? col.map(l[3]) : col;
    }));
  }

  function card(name, info) {
    var sec = document.createElement("section");
    sec.className = "panel fn";
    sec.dataset.function = name;
    sec.innerHTML = "<h2></h2><p class='stats'></p><div class='charts'></div>";
    document.getElementById("functions").appendChild(sec);
    var f = { el: sec, series: {}, charts: [] };
    CHARTS.forEach(function (c) {
      var div = document.createElement("div");
      div.className = "chart";
      sec.querySelector(".charts").appendChild(div);
      f.charts.push(makeChart(div, c[0], c[1], f.series));
    });
    return f;
  }

  function last(store, k) { var c = store[k] || []; return c.length ? c[c.length - 1] : null; }

  function stats(f, name, info) {
    f.el.querySelector("h2").innerHTML = "";
    f.el.querySelector("h2").append(name, Object.assign(document.createElement("small"), {
      textContent: "version " + info.version + " · " + info.kind + " · keep-alive " + info.policy,
    }));
    var s = f.series;
    var items = [
      ["rps", "req/s", last(s, "rps")], ["ready", "ready", last(s, "ready")],
      ["desired", "desired", last(s, "desired")], ["queued", "queued", last(s, "queued")],
      ["memory", "MiB / instance", MIB(last(s, "memory_quota"))], ["cpu", "m / instance", last(s, "cpu_quota")],
    ];
    var p = f.el.querySelector(".stats");
    p.innerHTML = "";
    items.forEach(function (it) {
      var span = document.createElement("span");
      span.dataset.stat = it[0];
      var b = document.createElement("b");
      b.textContent = it[2] == null ? "–" : (Math.round(it[2] * 100) / 100);
      span.append(b, " " + it[1]);
      p.appendChild(span);
    });
  }

  function render(snap) {
    append(state.node, snap.node);
    NODE.forEach(function (n) {
      if (!state.nodeCharts) state.nodeCharts = {};
      var c = state.nodeCharts[n[0]];
      if (!c) c = state.nodeCharts[n[0]] = makeChart(document.getElementById(n[0]), n[1], n[2], state.node);
      c.chart.setData(data(n[2], state.node));
    });
    var nd = state.node;
    document.getElementById("node-figures").textContent =
      "CPU " + last(nd, "cpu_used") + " of " + last(nd, "cpu_capacity") + " m used, " + last(nd, "cpu_granted") + " m granted · memory " +
      Math.round(MIB(last(nd, "memory_used"))) + " of " + Math.round(MIB(last(nd, "memory_capacity"))) + " MiB used, " +
      Math.round(MIB(last(nd, "memory_granted"))) + " MiB granted";
    Object.keys(snap.functions).forEach(function (name) {
      var view = snap.functions[name];
      var f = state.functions[name] || (state.functions[name] = card(name, view));
      append(f.series, view.series);
      f.charts.forEach(function (c) { c.chart.setData(data(c.lines, f.series)); });
      stats(f, name, view);
    });
    Object.keys(state.functions).forEach(function (name) {
      if (!snap.functions[name]) {
        state.functions[name].el.remove();
        delete state.functions[name];
      }
    });
    state.events = state.events.concat(snap.events).slice(-500);
    var ol = document.getElementById("events");
    snap.events.forEach(function (e) {
      var li = document.createElement("li");
      li.dataset.kind = e.kind;
      var time = document.createElement("time");
      time.textContent = new Date(e.t * 1000).toLocaleTimeString();
      var kind = Object.assign(document.createElement("span"), { className: "kind " + e.kind, textContent: e.kind });
      li.append(time, kind, e.function + (e.detail ? ": " + e.detail : ""));
      ol.insertBefore(li, ol.firstChild);
    });
    while (ol.children.length > 500) ol.removeChild(ol.lastChild);
  }

  function tick() {
    fetch("/dashboard/data?since=" + state.since, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { location.href = "/dashboard/login"; throw new Error("logged out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (snap) {
        render(snap);
        state.since = snap.now;
        state.updates++;
        document.getElementById("status").textContent = "live · updated " + new Date(snap.now * 1000).toLocaleTimeString();
      })
      .catch(function (e) { document.getElementById("status").textContent = "disconnected: " + e.message; })
      .finally(function () { setTimeout(tick, 1000); });
  }

  window.addEventListener("resize", function () {
    var all = [];
    Object.keys(state.functions).forEach(function (n) { all = all.concat(state.functions[n].charts); });
    Object.keys(state.nodeCharts || {}).forEach(function (n) { all.push(state.nodeCharts[n]); });
    all.forEach(function (c) { c.chart.setSize({ width: width(c.el), height: 150 }); });
  });

  window.surge = {
    updates: function () { return state.updates; },
    functions: function () { return Object.keys(state.functions); },
    series: function (name) { var f = state.functions[name]; return f ? f.series : null; },
    node: function () { return state.node; },
    events: function () { return state.events; },
  };
  tick();
})();
