// The elastirec dashboard: the run ledger as a nights × steps grid, three plots drawn as SVG by
// this file, and a user lookup. Plain JavaScript served by the binary itself: no build step, no
// CDN. The API token, when the server wants one, is asked for once and kept in sessionStorage.
"use strict";

const TOKEN_KEY = "elastirec-token";
const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

async function api(path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) throw new Unauthorized("token required");
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error((answer.error && answer.error.message) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return answer;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const fmt = {
  secs(s) { return s == null ? "–" : s < 60 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min"; },
  int(n) { return n == null ? "–" : Number(n).toLocaleString("en-US"); },
  bytes(b) {
    if (b == null) return "–";
    const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return b.toFixed(i ? 1 : 0) + " " + u[i];
  },
  num(x, d) { return x == null ? "–" : Number(x).toFixed(d); },
};

function stepSeconds(s) {
  if (!s.started_at || !s.ended_at) return null;
  return Math.max(0, (Date.parse(s.ended_at) - Date.parse(s.started_at)) / 1000);
}

// ---------------------------------------------------------------- grid and night details

const state = { runs: [], evaluations: [], selected: null };

function stepNames(runs) {
  const names = [];
  for (const r of runs) for (const s of r.steps) if (!names.includes(s.name)) names.push(s.name);
  return names;
}

function renderGrid() {
  const runs = state.runs;
  const grid = $("grid");
  grid.replaceChildren();
  if (!runs.length) { grid.append(el("p", { class: "muted" }, "No nights have run yet.")); return; }
  const steps = stepNames(runs);
  const head = el("tr", {}, el("th", {}, ""),
    runs.map((r) => el("th", { "data-night": r.night, class: r.night === state.selected ? "selected" : "",
      onclick: () => selectNight(r.night), title: r.night + ": " + r.state }, r.night.slice(5))));
  const rows = steps.map((name) => el("tr", {}, el("th", {}, name), runs.map((r) => {
    const s = r.steps.find((x) => x.name === name);
    const st = s ? s.state : "missing";
    const tip = `${r.night} ${name}: ${st}` + (s ? ` (${fmt.secs(stepSeconds(s))})` : "");
    return el("td", { class: `cell state-${st}` + (r.night === state.selected ? " selected" : ""),
      "data-night": r.night, "data-step": name, "data-state": st, title: tip,
      onclick: () => selectNight(r.night) });
  })));
  grid.append(el("table", { class: "grid", id: "grid-table" }, el("thead", {}, head), el("tbody", {}, rows)));
}

async function selectNight(night) {
  state.selected = night;
  renderGrid();
  const box = $("night-detail");
  box.hidden = false;
  box.replaceChildren(el("p", { class: "muted" }, "loading " + night + "…"));
  let r;
  try { r = await api("/v1/runs/" + night); } catch (e) { box.replaceChildren(el("p", { class: "error" }, e.message)); return; }
  const rows = r.steps.map((s) => el("tr", {},
    el("td", {}, s.name),
    el("td", {}, el("span", { class: "badge state-" + s.state }, s.state)),
    el("td", { class: "num" }, s.attempt ?? 1),
    el("td", { class: "num" }, fmt.secs(stepSeconds(s))),
    el("td", { class: "num" }, fmt.int(s.rows_in)),
    el("td", { class: "num" }, fmt.int(s.rows_out)),
    el("td", { class: "num" }, fmt.bytes(s.bytes_out)),
    el("td", { class: "num" }, fmt.num(s.cpu_seconds, 1)),
    el("td", { class: "num" }, fmt.bytes(s.peak_memory_bytes)),
    el("td", { class: s.state === "failed" ? "error" : "" },
      (s.error_kind ? `[${s.error_kind}] ` : "") + (s.outcome || ""))));
  const parts = [
    el("h3", {}, `Night ${r.night}: `, el("span", { class: "badge state-" + r.state }, r.state)),
    el("p", { class: "muted" }, `started ${r.started_at}` + (r.ended_at ? `, ended ${r.ended_at}` : "")),
    el("table", { class: "data", id: "night-steps" },
      el("thead", {}, el("tr", {}, ["step", "state", "attempt", "time", "rows in", "rows out", "written",
        "CPU s", "peak memory", "outcome"].map((h, i) => el("th", { class: i >= 2 && i <= 8 ? "num" : "" }, h)))),
      el("tbody", {}, rows)),
  ];
  if (r.publish) {
    const p = r.publish;
    parts.push(el("p", {}, el("b", {}, "Publish: "), p.published ? "published" : "held",
      p.forced ? " (forced)" : "", p.reason ? " — " + p.reason : ""));
    if (p.checks && p.checks.length) parts.push(el("ul", {}, p.checks.map((c) =>
      el("li", { class: c.passed ? "" : "error" }, (c.passed ? "✓ " : "✗ ") + c.name + ": " + c.detail))));
  }
  if (r.cost) {
    const c = r.cost;
    parts.push(el("p", {}, el("b", {}, "Cost: "),
      `${fmt.num(c.elastic_cost, 4)} ${c.currency} elastic (${fmt.secs(c.compute_seconds)} at ${c.price_per_hour}/h) vs ` +
      `${fmt.num(c.always_on_cost, 2)} ${c.currency} always-on`));
  }
  for (const e of r.evaluations || []) {
    parts.push(el("p", {}, el("b", {}, `Evaluation (${e.horizon_days} days): `),
      `NDCG@${e.k} model ${fmt.num(e.model.ndcg, 4)}, popularity ${fmt.num(e.popularity.ndcg, 4)}, ` +
      `${fmt.int(e.users_scored)} users scored`));
  }
  box.replaceChildren(...parts);
}

// ---------------------------------------------------------------- plots (SVG, drawn here)

const COLORS = ["#3b7dd8", "#d6803b", "#2e9d5b", "#8a5cd6"];

// series: [{name, values (numbers or null, one per label), kind: "bar" | "line", axis: "left" | "right"}]
function chart(container, labels, series, opts) {
  const W = 460, H = 220, L = 48, R = opts.right ? 52 : 12, T = 22, B = 34;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", "100%");
  const add = (tag, attrs, text) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  const n = labels.length;
  const max = (axis) => Math.max(0, ...series.filter((s) => (s.axis || "left") === axis)
    .flatMap((s) => s.values.filter((v) => v != null))) || 1;
  const top = { left: max("left"), right: max("right") };
  const x = (i) => L + (n <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const y = (v, axis) => T + (H - T - B) * (1 - v / top[axis || "left"]);
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
  add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
  for (const frac of [0, 0.5, 1]) {
    add("text", { x: L - 4, y: y(top.left * frac) + 3, "text-anchor": "end" }, opts.fmtLeft(top.left * frac));
    if (opts.right) add("text", { x: W - R + 4, y: y(top.right * frac, "right") + 3 }, opts.fmtRight(top.right * frac));
  }
  const step = Math.max(1, Math.ceil(n / 8));
  labels.forEach((lab, i) => { if (i % step === 0) add("text", { x: x(i), y: H - B + 14, "text-anchor": "middle" }, lab.slice(5)); });
  const bars = series.filter((s) => s.kind === "bar");
  const bw = Math.max(2, ((W - L - R) / Math.max(n, 1)) * 0.7 / Math.max(bars.length, 1));
  series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length];
    if (s.kind === "bar") {
      const bi = bars.indexOf(s);
      s.values.forEach((v, i) => {
        if (v == null) return;
        const x0 = x(i) - (bw * bars.length) / 2 + bi * bw;
        add("rect", { x: x0, y: y(v, s.axis), width: bw, height: H - B - y(v, s.axis), fill: color, "data-series": s.name },
        ).append(Object.assign(document.createElementNS("http://www.w3.org/2000/svg", "title"), { textContent: `${labels[i]}: ${v}` }));
      });
    } else {
      const pts = s.values.map((v, i) => (v == null ? null : `${x(i)},${y(v, s.axis)}`)).filter(Boolean);
      if (pts.length) add("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2, "data-series": s.name });
      s.values.forEach((v, i) => { if (v != null) add("circle", { cx: x(i), cy: y(v, s.axis), r: 2.5, fill: color }); });
    }
    add("rect", { x: L + 8 + si * 110, y: 4, width: 10, height: 10, fill: color });
    add("text", { x: L + 22 + si * 110, y: 13 }, s.name);
  });
  container.replaceChildren(svg);
  if (opts.note) container.append(el("p", { class: "muted" }, opts.note));
}

// The elastic cost is usually too small to see beside the always-on line: say the totals too.
function costTotals(runs) {
  const costed = runs.filter((r) => r.cost);
  const sum = (f) => costed.reduce((a, r) => a + f(r.cost), 0);
  const cur = costed[0].cost.currency;
  return `${costed.length} nights with a cost: ${sum((c) => c.elastic_cost).toFixed(4)} ${cur} elastic vs ` +
    `${sum((c) => c.always_on_cost).toFixed(2)} ${cur} always-on (right axis; prices from [cost])`;
}

function renderPlots() {
  const runs = state.runs;
  const nights = runs.map((r) => r.night);
  const minutes = runs.map((r) => r.steps.reduce((a, s) => a + (stepSeconds(s) || 0), 0) / 60);
  const withCost = runs.some((r) => r.cost);
  const series = [{ name: "minutes", values: minutes, kind: "bar" }];
  if (withCost) {
    series.push({ name: "elastic cost", values: runs.map((r) => (r.cost ? r.cost.elastic_cost : null)), kind: "line", axis: "right" });
    series.push({ name: "always-on cost", values: runs.map((r) => (r.cost ? r.cost.always_on_cost : null)), kind: "line", axis: "right" });
  }
  chart($("plot-cost"), nights, series, {
    right: withCost, fmtLeft: (v) => (v >= 1 ? v.toFixed(1) + " min" : (v * 60).toFixed(0) + " s"),
    fmtRight: (v) => v.toFixed(2),
    note: withCost ? costTotals(runs) : "no cost recorded in these run records: minutes only",
  });

  // One horizon per plot: the one evaluated most often.
  const byHorizon = {};
  for (const e of state.evaluations) byHorizon[e.horizon_days] = (byHorizon[e.horizon_days] || 0) + 1;
  const horizon = Object.keys(byHorizon).sort((a, b) => byHorizon[b] - byHorizon[a])[0];
  const evals = state.evaluations.filter((e) => String(e.horizon_days) === horizon);
  const evalNights = [...new Set(evals.map((e) => e.night))].sort();
  const at = (n) => evals.find((e) => e.night === n);
  chart($("plot-ndcg"), evalNights, [
    { name: "model", values: evalNights.map((n) => at(n).model.ndcg), kind: evalNights.length > 1 ? "line" : "bar" },
    { name: "popularity", values: evalNights.map((n) => at(n).popularity.ndcg), kind: evalNights.length > 1 ? "line" : "bar" },
  ], { fmtLeft: (v) => v.toFixed(3), note: evals.length ? `${horizon}-day horizon, K = ${evals[0].k}` : "no evaluations yet (elastirec evaluate --date D)" });

  const loaded = runs.map((r) => { const s = r.steps.find((x) => x.name === "ingest"); return s ? s.rows_out : null; });
  chart($("plot-rows"), nights, [{ name: "rows loaded", values: loaded, kind: "bar" }],
    { fmtLeft: (v) => (v >= 1000 ? (v / 1000).toFixed(0) + "k" : v.toFixed(0)) });
}

// ---------------------------------------------------------------- user lookup

async function lookup(ev) {
  ev.preventDefault();
  const id = $("user-id").value.trim();
  const out = $("lookup-result");
  $("lookup-error").textContent = "";
  out.replaceChildren();
  // Ids are the strings producers sent (A3CIUOJXQ5VDQ2, a UUID, 42…): encoded into the path,
  // so that "SKU/12 A" stays one segment.
  if (!id) { $("lookup-error").textContent = "enter a user id"; return; }
  if (new TextEncoder().encode(id).length > 256) { $("lookup-error").textContent = "a user id is at most 256 bytes"; return; }
  const path = "/v1/users/" + encodeURIComponent(id);
  const [hist, recs] = await Promise.all([
    // The whole history (up to the API's 1000) names the "because" items; the first 20 are shown.
    api(`${path}/history?limit=1000`).catch((e) => e),
    api(`${path}/recommendations`).catch((e) => e),
  ]);
  // Item ids are strings in every answer: keys of a Map, shown as text.
  const titleOf = new Map();
  if (!(hist instanceof Error)) for (const h of hist.items) titleOf.set(h.item_id, h.title);
  const histBox = el("div", { id: "history" }, el("h3", {}, "History"));
  if (hist instanceof Error) histBox.append(el("p", { class: "muted" }, hist.message));
  else {
    const shown = hist.items.slice(0, 20);
    histBox.append(el("p", { class: "muted" }, `${hist.total} items up to night ${hist.model_date}` + (hist.total > shown.length ? `, first ${shown.length}` : "")));
    histBox.append(el("table", { class: "data" }, el("thead", {}, el("tr", {}, el("th", {}, "item"), el("th", {}, "title"), el("th", { class: "num" }, "value"), el("th", { class: "num" }, "events"))),
      el("tbody", {}, shown.map((h) => el("tr", {}, el("td", {}, h.item_id), el("td", {}, h.title || "–"),
        el("td", { class: "num" }, h.value == null ? "before window" : h.value), el("td", { class: "num" }, h.events ?? "–"))))));
  }
  const recBox = el("div", { id: "recommendations" }, el("h3", {}, "Recommendations"));
  if (recs instanceof Error) recBox.append(el("p", { class: "error" }, recs.message));
  else {
    recBox.append(el("p", { class: "muted" }, `night ${recs.model_date}, ${recs.source}` + (recs.fallback ? " (fallback: this user is unknown to the night)" : "")));
    recBox.append(el("table", { class: "data", id: "recs-table" }, el("thead", {}, el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "title"), el("th", { class: "num" }, "score"), el("th", {}, "because you had"))),
      el("tbody", {}, recs.items.map((r) => el("tr", { "data-item": r.item_id }, el("td", { class: "num" }, r.rank), el("td", {}, r.title || `item ${r.item_id}`,
          r.attributes ? el("span", { class: "muted attrs" }, " " + Object.entries(r.attributes).map(([k, v]) => `${k}: ${v}`).join(" · ")) : null),
        el("td", { class: "num" }, fmt.num(r.score, 3)), el("td", { class: "muted" }, r.because.map((b) => titleOf.get(b) || `item ${b}`).join("; ")))))));
  }
  out.replaceChildren(histBox, recBox);
}

// ---------------------------------------------------------------- try it (fold-in)

async function tryIt(ev) {
  ev.preventDefault();
  const out = $("try-result");
  $("try-error").textContent = "";
  out.replaceChildren();
  const userId = $("user-id").value.trim();
  const items = $("try-items").value.split("\n").map((l) => l.trim()).filter((l) => l).map((l) => {
    const parts = l.split(/\s+/);
    const item = { item_id: parts[0] };
    if (parts.length > 1) item.event_type = parts[1];
    return item;
  });
  if (!items.length) { $("try-error").textContent = "enter at least one item id"; return; }
  const body = { items, k: Number($("try-k").value) || 10 };
  if (userId) body.user_id = userId;
  let made;
  try { made = await api("/v1/recommendations", body); } catch (e) { $("try-error").textContent = e.message; return; }
  const who = userId ? `user ${userId} + ${made.items_given} given items` : `an anonymous visitor with ${made.items_given} items`;
  out.append(el("p", { class: "muted", id: "try-summary" }, `${who}: ${made.source}` +
    (made.items_unknown ? `, ${made.items_unknown} item ids unknown to night ${made.model_date} (ignored)` : "") +
    (made.fallback ? " (fallback: no given item is in the model)" : "")));
  out.append(el("table", { class: "data", id: "try-table" }, el("thead", {}, el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "item"), el("th", {}, "title"), el("th", { class: "num" }, "score"), el("th", {}, "source"))),
    el("tbody", {}, made.items.map((r) => el("tr", { "data-item": r.item_id }, el("td", { class: "num" }, r.rank), el("td", {}, r.item_id), el("td", {}, r.title || "–"),
      el("td", { class: "num" }, fmt.num(r.score, 3)), el("td", {}, r.source))))));
}

// ---------------------------------------------------------------- start

async function start() {
  try {
    const [runs, evals] = await Promise.all([api("/v1/runs"), api("/v1/evaluations")]);
    state.runs = runs.runs;
    state.evaluations = evals.evaluations;
    $("serving").textContent = runs.serving ? `serving night ${runs.serving}` : "no night published yet";
    $("token-panel").hidden = true;
    $("main").hidden = false;
    renderGrid();
    renderPlots();
    document.body.dataset.ready = "true";
  } catch (e) {
    if (e instanceof Unauthorized) {
      $("token-panel").hidden = false;
      $("serving").textContent = "token required";
      if (sessionStorage.getItem(TOKEN_KEY)) $("token-error").textContent = "that token was refused";
    } else {
      $("serving").textContent = "error: " + e.message;
    }
  }
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  start();
});
$("lookup-form").addEventListener("submit", lookup);
$("try-form").addEventListener("submit", tryIt);
start();
