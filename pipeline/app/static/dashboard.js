// The worker's dashboard: polls /dashboard/data, draws the events/s chart on a canvas (no library),
// fills the tables, and sends the query form to /query (the bus's answers over HTTP).
"use strict";

(function () {
  const PALETTE = ["#2d6cdf", "#e07b1a", "#2a9d57", "#c2413b", "#8e5bd6", "#1aa3b8", "#b8860b", "#d6539c"];
  const FLEET_COLOR = "#1d232b";
  const OTHERS_COLOR = "#9aa3ad";
  let refreshMs = 2000;
  let formReady = false;

  function byId(id) {
    return document.getElementById(id);
  }

  // An element with text or children; attributes by name ("class" included).
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([name, value]) => node.setAttribute(name, value));
    (children || []).forEach((child) => node.append(child instanceof Node ? child : String(child)));
    return node;
  }

  function fmt(n) {
    return Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });
  }

  function clock(epochS) {
    return new Date(epochS * 1000).toISOString().slice(11, 19);
  }

  // ---- the chart ------------------------------------------------------------------------------
  // The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``.
  function niceStep(value) {
    if (value <= 0) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    return [1, 2, 2.5, 5, 10].map((m) => m * power).find((step) => step >= value);
  }

  function chartLines(rates) {
    const lines = [{ label: "fleet", values: rates.fleet, color: FLEET_COLOR, width: 2.5 }];
    rates.nodes.forEach((node, i) =>
      lines.push({ label: node.node, values: node.rates, color: PALETTE[i % PALETTE.length], width: 1.5 })
    );
    if (rates.others.some((v) => v > 0)) {
      lines.push({ label: "others", values: rates.others, color: OTHERS_COLOR, width: 1.5, dash: [5, 4] });
    }
    return lines;
  }

  function drawChart(canvas, rates) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    const left = 56, right = 8, top = 8, bottom = 20;
    const plotW = width - left - right, plotH = height - top - bottom;
    const times = rates.times;
    if (times.length < 2) {
      ctx.fillStyle = "#68727f";
      ctx.fillText("collecting readings…", left + 8, top + 20);
      return [];
    }
    const lines = chartLines(rates);
    const yStep = niceStep(Math.max(...rates.fleet, 0) / 4);
    const yMax = 4 * yStep;
    const t0 = times[0], t1 = times[times.length - 1];
    const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1e-9)) * plotW;
    const y = (v) => top + plotH - (v / yMax) * plotH;
    ctx.strokeStyle = "#dde2e8";
    ctx.fillStyle = "#68727f";
    ctx.lineWidth = 1;
    for (let k = 0; k <= 4; k++) {
      const v = yStep * k;
      ctx.beginPath();
      ctx.moveTo(left, y(v));
      ctx.lineTo(left + plotW, y(v));
      ctx.stroke();
      ctx.fillText(fmt(v), 4, y(v) + 4);
    }
    ctx.fillText("-" + Math.round(t1 - t0) + " s", left, height - 5);
    ctx.fillText("now " + clock(t1), left + plotW - 70, height - 5);
    for (const line of lines.slice().reverse()) {
      ctx.strokeStyle = line.color;
      ctx.lineWidth = line.width;
      ctx.setLineDash(line.dash || []);
      ctx.beginPath();
      line.values.forEach((v, i) => (i ? ctx.lineTo(x(times[i]), y(v)) : ctx.moveTo(x(times[i]), y(v))));
      ctx.stroke();
    }
    ctx.setLineDash([]);
    return lines;
  }

  function renderRates(rates) {
    const lines = drawChart(byId("rate-chart"), rates);
    const legend = byId("rate-legend");
    legend.replaceChildren(
      ...lines.map((line) =>
        el("li", {}, [
          el("span", { class: "swatch", style: "background:" + line.color }),
          line.label + " ",
          el("b", {}, [fmt(line.values[line.values.length - 1])]),
        ])
      )
    );
    byId("rates-note").textContent = rates.active_nodes
      ? rates.active_nodes + " node(s) sent events in the span; the " + rates.nodes.length + " busiest drawn, the rest as others"
      : "no events in the span";
  }

  // ---- tables ---------------------------------------------------------------------------------
  function talkerTable(level, rows) {
    const body = rows.length
      ? rows.map((row) =>
          el("tr", { title: row.connection + " connections, " + row.reception + " receptions, " + row.rejection + " rejections" }, [
            el("td", { class: "cidr", title: row.cidr }, [row.cidr]),
            el("td", { class: "num" }, [fmt(row.total)]),
          ])
        )
      : [el("tr", {}, [el("td", { class: "empty", colspan: "2" }, ["none"])])];
    return el("table", { class: "compact talkers", "data-level": level }, [
      el("thead", {}, [el("tr", {}, [el("th", {}, [level]), el("th", { class: "num" }, ["events"])])]),
      el("tbody", {}, body),
    ]);
  }

  function renderTop(monitors, levels) {
    const blocks = monitors.map((monitor) => {
      const parts = [el("h3", {}, ["monitor " + monitor.monitor])];
      for (const win of monitor.windows) {
        const totals = win.totals;
        const note = win.kept
          ? fmt(totals.connection) + " connections, " + fmt(totals.reception) + " receptions, " + fmt(totals.rejection) + " rejections"
          : "no longer kept";
        parts.push(el("div", { class: "muted" }, [win.label + " window " + clock(win.start) + "–" + clock(win.end) + " UTC · " + note]));
        parts.push(el("div", { class: "levels", "data-window": win.label }, levels.map((level) => talkerTable(level, win.top[level] || []))));
      }
      return el("div", { class: "monitor", "data-monitor": monitor.monitor }, parts);
    });
    byId("top-talkers").replaceChildren(...(blocks.length ? blocks : [el("p", { class: "empty" }, ["waiting for the replica"])]));
  }

  function renderDeadLetters(letters) {
    const rows = letters.length
      ? letters.map((l) => el("tr", {}, [el("td", {}, [l.source]), el("td", {}, [l.reason]), el("td", { class: "num" }, [fmt(l.count)])]))
      : [el("tr", {}, [el("td", { class: "empty", colspan: "3" }, ["none"])])];
    byId("dead-letters").querySelector("tbody").replaceChildren(...rows);
  }

  function lagBlock(title, lag) {
    const summary = lag.partitions
      ? fmt(lag.total) + " behind over " + lag.partitions + " partition(s), at most " + fmt(lag.max)
      : "no partition fetched yet";
    const rows = lag.worst.map((w) => el("tr", {}, [el("td", {}, ["partition " + w.partition]), el("td", { class: "num" }, [fmt(w.lag)])]));
    return [
      el("h3", {}, [title]),
      el("div", { class: "muted" }, [summary]),
      el("table", { class: "compact" }, [el("tbody", {}, rows)]),
    ];
  }

  function renderLag(lag) {
    byId("lag").replaceChildren(
      ...lagBlock("Consumer (events partitions this worker owns)", lag.consumer),
      ...lagBlock("Replica (state partitions not yet applied)", lag.replica)
    );
  }

  function renderStatus(data) {
    const status = byId("status");
    status.textContent = data.worker.ready ? "ready" : "not ready";
    status.className = "pill " + (data.worker.ready ? "ok" : "bad");
    byId("reason").textContent = data.worker.reason;
    byId("updated").textContent = "updated " + clock(data.now) + " UTC";
  }

  // ---- the query form -------------------------------------------------------------------------
  function fillForm(data) {
    if (formReady) return;
    const form = byId("query-form");
    form.elements.op.replaceChildren(...data.ops.map((op) => el("option", { value: op }, [op])));
    form.elements.monitor.replaceChildren(...data.monitors.map((m) => el("option", { value: m }, [m])));
    formReady = true;
  }

  function queryParams(form) {
    const params = new URLSearchParams();
    const op = form.elements.op.value;
    params.set("op", op);
    const cluster = form.elements.cluster.checked;
    params.set("cluster", cluster ? "true" : "false");
    const fields = op === "inbound_session_count" ? ["ip", "cidr", "node", "service"] : ["monitor", "ip", "cidr", "startv", "endv", "at", "node"];
    for (const name of fields) {
      const value = form.elements[name].value.trim();
      if (value !== "" && !(name === "node" && cluster)) params.set(name, value);
    }
    return params;
  }

  function luaCall(params) {
    const op = params.get("op");
    const opts = [];
    params.forEach((value, name) => {
      if (name === "op" || name === "monitor") return;
      const literal = /^(true|false|-?[0-9.]+)$/.test(value) && name !== "ip" && name !== "cidr" && name !== "node" ? value : JSON.stringify(value);
      opts.push(name + "=" + literal);
    });
    const monitor = params.has("monitor") ? JSON.stringify(params.get("monitor")) + ", " : "";
    return "msys.audit." + op + "(" + monitor + "{" + opts.join(", ") + "})";
  }

  async function ask(event) {
    event.preventDefault();
    const params = queryParams(event.target);
    const result = byId("query-result");
    byId("query-call").textContent = luaCall(params);
    result.textContent = "asking…";
    result.removeAttribute("data-value");
    try {
      const response = await fetch("/query?" + params.toString(), { cache: "no-store" });
      const answer = await response.json();
      if (answer.ok) {
        result.className = "mono";
        result.dataset.value = String(answer.value);
        result.textContent = "= " + fmt(answer.value);
      } else {
        result.className = "mono error";
        result.textContent = answer.error.code + ": " + answer.error.message;
      }
    } catch (err) {
      result.className = "mono error";
      result.textContent = "no answer: " + err;
    }
  }

  // ---- polling --------------------------------------------------------------------------------
  async function refresh() {
    try {
      const response = await fetch("/dashboard/data", { cache: "no-store" });
      const data = await response.json();
      refreshMs = data.refresh_s * 1000;
      renderStatus(data);
      fillForm(data);
      renderRates(data.rates);
      renderTop(data.top, data.levels);
      renderDeadLetters(data.dead_letters);
      renderLag(data.lag);
      document.body.dataset.loaded = "true";
    } catch (err) {
      const status = byId("status");
      status.textContent = "unreachable";
      status.className = "pill bad";
      byId("reason").textContent = String(err);
    } finally {
      setTimeout(refresh, refreshMs);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("query-form").addEventListener("submit", ask);
    refresh();
  });
})();
