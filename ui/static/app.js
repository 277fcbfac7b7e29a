// Lumen dashboard. Plain JavaScript, no dependencies. Every data call goes to
// the admin API with the master key kept in this tab's sessionStorage. Text
// from the server is only ever set with textContent, never as HTML.
"use strict";

const KEY = "lumen.masterKey";
const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

// el builds an element: el("td", {class: "num"}, "text", child, ...).
function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

function svg(tag, attrs, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

// ---- formatting ----
function usd(v) {
  v = Number(v) || 0;
  if (v === 0) return "$0";
  if (Math.abs(v) < 0.01) return "$" + v.toFixed(6).replace(/0+$/, "");
  return "$" + v.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
}
const int = (v) => (Number(v) || 0).toLocaleString("en-US");
const pct = (v) => ((Number(v) || 0) * 100).toFixed(1) + "%";
function ms(v) {
  v = Number(v) || 0;
  if (v === 0) return "–";
  if (v < 1) return Math.round(v * 1000) + " µs";
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(v < 10 ? 1 : 0) + " ms";
}
const nsToMs = (ns) => (Number(ns) || 0) / 1e6;
function when(t) {
  if (!t || t.startsWith("0001-")) return "–";
  const d = new Date(t);
  return d.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

// ---- API ----
class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts = {}) {
  const headers = {"Authorization": "Bearer " + (sessionStorage.getItem(KEY) || "")};
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method: opts.method || "GET", headers, cache: "no-store",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const msg = (body && body.error && body.error.message) || (res.status + " " + res.statusText);
    if (res.status === 401 && !opts.noLogout) logout("The master key was refused: " + msg);
    throw new APIError(res.status, msg);
  }
  return body;
}

function showError(err) {
  const b = $("#app-error");
  if (!err) { b.hidden = true; b.textContent = ""; return; }
  b.textContent = err.message || String(err);
  b.hidden = false;
}

// ---- login ----
function logout(message) {
  sessionStorage.removeItem(KEY);
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#master-key").value = "";
  $("#master-key").focus();
}

async function login(ev) {
  ev.preventDefault();
  const key = $("#master-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY, key);
  try {
    await api("/admin/keys", {noLogout: true});
  } catch (err) {
    // 501: keys are off on this gateway, but the key itself was accepted.
    if (err.status !== 501) {
      sessionStorage.removeItem(KEY);
      $("#login-error").textContent = err.status === 403
        ? "The admin API is off: set general_settings.master_key in the config."
        : "Sign-in failed: " + err.message;
      $("#master-key").value = "";
      return;
    }
  }
  $("#master-key").value = "";
  start();
}

// ---- pages ----
const pages = {overview: loadOverview, health: loadHealth, requests: loadRequests, keys: loadKeys};

function current() {
  const p = location.hash.replace(/^#/, "");
  return pages[p] ? p : "overview";
}

async function show() {
  const page = current();
  for (const name of Object.keys(pages)) $("#page-" + name).hidden = name !== page;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.page === page);
  showError(null);
  try {
    await pages[page]();
  } catch (err) {
    if (err.status !== 401) showError(err);
  }
  document.body.dataset.loaded = page;
}

function start() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  show();
}

const range = () => $("#range").value;

// ---- overview ----
async function loadOverview() {
  const since = range();
  const q = "since=" + encodeURIComponent(since);
  const [days, byKey, byModel, byTag, totals] = await Promise.all([
    api("/admin/spend?by=day&" + q), api("/admin/spend?by=key&" + q), api("/admin/spend?by=model&" + q),
    api("/admin/spend?by=tag&" + q), api("/admin/totals?" + q),
  ]);
  let spend = 0, requests = 0, errors = 0, hits = 0, saved = 0;
  for (const r of byModel.data) { spend += r.cost_usd; requests += r.requests; errors += r.errors; saved += r.saved_usd; }
  for (const t of totals.data) hits += t.cache_hits;
  $("#stat-spend").textContent = usd(spend);
  $("#stat-requests").textContent = int(requests);
  $("#stat-errors").textContent = requests ? pct(errors / requests) : "–";
  $("#stat-cache").textContent = requests ? pct(hits / requests) : "–";
  $("#stat-saved").textContent = usd(saved);

  drawSpendChart($("#spend-chart"), fillDays(days.data, since, days.timezone));
  barTable($("#spend-by-key"), "Key", byKey.data, (r) => r.name || (r.group ? r.group : "(master key / open)"));
  barTable($("#spend-by-model"), "Model group", byModel.data, (r) => r.group);
  barTable($("#spend-by-tag"), "Tag", byTag.data, (r) => r.group);
  totalsTable($("#totals"), totals.data);
}

// fillDays returns one row per day of the range, zero where the ledger has
// none, so the chart's x axis is time and not just the busy days. Days are
// those of timeZone, the budget time zone the server cut the rows in.
function fillDays(rows, since, timeZone) {
  const byDay = new Map(rows.map((r) => [r.group, r]));
  const n = {"24h": 2, "7d": 7, "30d": 30, "90d": 90}[since] || 7;
  const out = [];
  // Today's date there ("en-CA" writes 2026-11-28), then calendar arithmetic.
  const [y, m, d] = new Intl.DateTimeFormat("en-CA", {timeZone: timeZone || "UTC", year: "numeric", month: "2-digit", day: "2-digit"})
    .format(new Date()).split("-").map(Number);
  for (let i = n - 1; i >= 0; i--) {
    const key = new Date(Date.UTC(y, m - 1, d - i)).toISOString().slice(0, 10);
    out.push(byDay.get(key) || {group: key, cost_usd: 0, requests: 0});
    byDay.delete(key);
  }
  // Days outside the window (a clock skew, another time zone): keep them.
  for (const r of byDay.values()) out.push(r);
  out.sort((a, b) => (a.group < b.group ? -1 : 1));
  return out;
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// axisUSD labels a gridline: with as many decimals as the step needs
// (a quarter of $0.05 is $0.0125, not "$0.01"), at least cents.
function axisUSD(v, step) {
  let d = 2;
  while (d < 8 && Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) > 1e-6) d++;
  return "$" + v.toFixed(d);
}

function drawSpendChart(box, rows) {
  const W = 900, H = 240, L = 64, R = 12, T = 12, B = 28;
  const s = svg("svg", {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": "Spend per day"});
  const max = niceMax(Math.max(0, ...rows.map((r) => r.cost_usd)));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const step = max / 4;
  for (let i = 0; i <= 4; i++) {
    const v = step * i;
    s.append(svg("line", {class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v)}));
    s.append(svg("text", {x: L - 6, y: y(v) + 4, "text-anchor": "end"}, axisUSD(v, step)));
  }
  s.append(svg("line", {class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B}));
  const slot = (W - L - R) / Math.max(rows.length, 1);
  const every = Math.ceil(rows.length / 12);
  rows.forEach((r, i) => {
    const x = L + i * slot;
    const h = H - B - y(r.cost_usd);
    const bar = svg("rect", {
      class: "bar", x: x + slot * 0.15, y: y(r.cost_usd), width: slot * 0.7, height: Math.max(h, r.cost_usd > 0 ? 1 : 0),
      "data-day": r.group, "data-cost": r.cost_usd, "data-requests": r.requests,
    });
    bar.append(svg("title", {}, `${r.group}: ${usd(r.cost_usd)}, ${int(r.requests)} requests`));
    s.append(bar);
    if (i % every === 0) s.append(svg("text", {x: x + slot / 2, y: H - 8, "text-anchor": "middle"}, r.group.slice(5)));
  });
  if (!rows.some((r) => r.requests > 0)) {
    s.append(svg("text", {class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle"}, "No requests in this range yet"));
  }
  box.replaceChildren(s);
}

function barTable(table, label, rows, name) {
  const max = Math.max(0, ...rows.map((r) => r.cost_usd));
  const head = el("tr", {}, el("th", {}, label), el("th", {class: "num"}, "Requests"), el("th", {class: "num"}, "Spend"), el("th", {}, ""));
  const body = rows.slice(0, 15).map((r) => el("tr", {"data-group": r.group},
    el("td", {}, name(r)), el("td", {class: "num"}, int(r.requests)), el("td", {class: "num"}, usd(r.cost_usd)),
    el("td", {class: "bar"}, meter(max ? r.cost_usd / max : 0))));
  if (!rows.length) body.push(el("tr", {}, el("td", {colspan: 4, class: "muted"}, "Nothing yet")));
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, body));
}

function meter(frac, hot) {
  const m = el("div", {class: "meter" + (hot ? " hot" : "")}, el("span"));
  m.firstChild.style.width = Math.min(100, Math.max(0, frac * 100)).toFixed(1) + "%";
  return m;
}

function totalsTable(table, rows) {
  const cols = ["Model group", "Requests", "Error rate", "p50 latency", "p95 latency", "p50 TTFT", "p95 TTFT", "Cache hits", "Saved", "Spend"];
  const head = el("tr", {}, cols.map((c, i) => el("th", {class: i ? "num" : null}, c)));
  const body = rows.map((t) => el("tr", {"data-group": t.model_group},
    el("td", {}, t.model_group), el("td", {class: "num"}, int(t.requests)),
    el("td", {class: "num"}, el("span", {class: "pill " + (t.error_rate > 0.05 ? "bad" : "ok")}, pct(t.error_rate))),
    el("td", {class: "num"}, ms(t.latency_p50_ms)), el("td", {class: "num"}, ms(t.latency_p95_ms)),
    el("td", {class: "num"}, ms(t.ttft_p50_ms)), el("td", {class: "num"}, ms(t.ttft_p95_ms)),
    el("td", {class: "num"}, pct(t.cache_hit_rate)), el("td", {class: "num"}, usd(t.saved_usd)),
    el("td", {class: "num"}, usd(t.cost_usd))));
  if (!rows.length) body.push(el("tr", {}, el("td", {colspan: cols.length, class: "muted"}, "No requests in this range yet")));
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, body));
}

// ---- deployments ----
async function loadHealth() {
  const h = await api("/health");
  $("#health-summary").textContent =
    `Lumen ${h.version || ""} · up ${Math.round((h.uptime_s || 0) / 60)} min · ${int(h.in_flight)} in flight`;
  const head = el("tr", {}, el("th", {}, "Model group"), el("th", {}, "Deployment"), el("th", {}, "Provider"),
    el("th", {}, "Upstream model"), el("th", {}, "Circuit"));
  const body = [];
  for (const group of Object.keys(h.model_groups || {}).sort()) {
    for (const d of h.model_groups[group]) {
      body.push(el("tr", {"data-deployment": d.id}, el("td", {}, group), el("td", {}, d.id), el("td", {}, d.provider),
        el("td", {}, d.model), el("td", {}, el("span", {class: "pill " + d.state}, d.state))));
    }
  }
  $("#health-table").replaceChildren(el("thead", {}, head), el("tbody", {}, body));
}

// ---- requests ----
let nextCursor = "";

function requestQuery(cursor) {
  const f = new FormData($("#req-filters"));
  const p = new URLSearchParams({since: range(), limit: "50"});
  for (const k of ["key", "model", "deployment"]) if (f.get(k)) p.set(k, f.get(k).trim());
  if (f.get("errors")) p.set("errors", "true");
  if (cursor) p.set("cursor", cursor);
  return "/admin/requests?" + p;
}

async function loadRequests(more) {
  const page = await api(requestQuery(more === true ? nextCursor : ""));
  nextCursor = page.next || "";
  $("#more-requests").hidden = !nextCursor;
  const table = $("#requests-table");
  const rows = page.entries.map((e) => el("tr", {"data-request": e.request_id},
    el("td", {}, when(e.time)), el("td", {}, e.key_name || "–"), el("td", {}, e.model_group),
    el("td", {}, e.deployment || "–"),
    el("td", {}, el("span", {class: "pill " + (e.status >= 400 ? "bad" : "ok")}, e.status), e.error_type ? " " + e.error_type : ""),
    el("td", {class: "num"}, int(e.usage.prompt_tokens)), el("td", {class: "num"}, int(e.usage.completion_tokens)),
    el("td", {class: "num"}, int(e.usage.cached_tokens)), el("td", {class: "num"}, usd(e.cost_usd)),
    el("td", {class: "num"}, ms(nsToMs(e.latency))), el("td", {class: "num"}, ms(nsToMs(e.ttft))),
    el("td", {}, [e.stream ? "stream" : "", e.cache_hit ? "cache hit" : "", e.attempts > 1 ? e.attempts + " attempts" : ""].filter(Boolean).join(", ")),
    el("td", {}, (e.tags || []).join(", "))));
  if (more === true) {
    table.tBodies[0].append(...rows);
    return;
  }
  const cols = ["Time (UTC)", "Key", "Model group", "Deployment", "Status", "In", "Out", "Cached", "Cost", "Latency", "TTFT", "", "Tags"];
  const head = el("tr", {}, cols.map((c) => el("th", {class: ["In", "Out", "Cached", "Cost", "Latency", "TTFT"].includes(c) ? "num" : null}, c)));
  if (!rows.length) rows.push(el("tr", {}, el("td", {colspan: cols.length, class: "muted"}, "No requests match")));
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
}

// ---- keys ----
async function loadKeys() {
  const res = await api("/admin/keys");
  const cols = ["Name", "Id", "Key", "Status", "Budget", "Spent", "", "RPM", "TPM", "Models", "Tags", "Expires", ""];
  const head = el("tr", {}, cols.map((c) => el("th", {}, c)));
  const now = Date.now();
  const rows = res.data.slice().reverse().map((k) => {
    const revoked = k.revoked_at && !k.revoked_at.startsWith("0001-");
    const expired = !revoked && k.expires_at && new Date(k.expires_at).getTime() <= now;
    const status = revoked ? "revoked" : expired ? "expired" : "live";
    const u = k.usage || {};
    const budget = k.budget_usd ? `${usd(k.budget_usd)} ${u.period || "total"}` : "none";
    const frac = k.budget_usd ? (u.spent_usd + u.reserved_usd) / k.budget_usd : 0;
    const actions = el("td", {class: "actions"});
    if (!revoked) {
      actions.append(
        el("button", {type: "button", class: "small secondary rotate", onclick: () => rotateKey(k)}, "Rotate"), " ",
        confirmButton("Revoke", "Confirm revoke", () => revokeKey(k)));
    }
    return el("tr", {"data-key-id": k.id, "data-key-name": k.name, "data-status": status, class: status},
      el("td", {}, k.name), el("td", {}, el("code", {}, k.id)), el("td", {}, el("code", {}, k.prefix + "…")),
      el("td", {class: "status"}, el("span", {class: "pill " + status}, status)),
      el("td", {}, budget),
      el("td", {class: "num", title: u.resets_at ? "resets " + when(u.resets_at) : null}, usd(u.spent_usd)),
      el("td", {}, k.budget_usd ? meter(frac, frac >= 0.9) : ""),
      el("td", {class: "num"}, k.rpm || "–"), el("td", {class: "num"}, k.tpm || "–"),
      el("td", {}, (k.models || []).join(", ") || "all"),
      el("td", {}, Object.entries(k.tags || {}).map(([a, b]) => a + "=" + b).join(", ")),
      el("td", {}, when(k.expires_at)), actions);
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", {colspan: cols.length, class: "muted"}, "No keys yet")));
  $("#keys-table").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  await loadBudgets();
}

// loadBudgets shows the budgets of the config's limits (hidden when none).
async function loadBudgets() {
  const res = await api("/admin/budgets");
  const scopes = {global: "gateway", model_group: "model group", tag: "key tag"};
  const rows = res.data.map((b) => {
    const frac = (b.spent_usd + b.reserved_usd) / b.budget_usd;
    return el("tr", {"data-budget": b.scope + ":" + (b.name || "")},
      el("td", {}, scopes[b.scope] || b.scope), el("td", {}, b.name || "all traffic"),
      el("td", {}, `${usd(b.budget_usd)} ${b.period}`),
      el("td", {class: "num", title: b.resets_at ? "resets " + when(b.resets_at) : null}, usd(b.spent_usd)),
      el("td", {class: "num"}, usd(b.remaining_usd)),
      el("td", {}, meter(frac, frac >= 0.9)));
  });
  const head = el("tr", {}, ["Scope", "Name", "Budget", "Spent", "Left", ""].map((c) => el("th", {}, c)));
  $("#budgets-table").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  $("#budgets-card").hidden = !rows.length;
}

// confirmButton asks for a second click before a destructive action.
function confirmButton(label, confirmLabel, action) {
  const b = el("button", {type: "button", class: "small secondary revoke"}, label);
  b.addEventListener("click", async () => {
    if (!b.classList.contains("danger")) {
      b.classList.replace("secondary", "danger");
      b.textContent = confirmLabel;
      b.classList.add("confirm");
      return;
    }
    b.disabled = true;
    await action();
  });
  return b;
}

function showSecret(title, secret) {
  $("#secret-title").textContent = title;
  $("#new-secret").textContent = secret;
  $("#secret-box").hidden = false;
}

function hideSecret() {
  $("#new-secret").textContent = "";
  $("#secret-box").hidden = true;
}

async function createKey(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = {name: f.get("name").trim()};
  const num = (k, parse) => { const v = String(f.get(k) || "").trim(); if (v !== "") body[k] = parse(v); };
  num("budget_usd", parseFloat);
  num("rpm", (v) => parseInt(v, 10));
  num("tpm", (v) => parseInt(v, 10));
  if (f.get("budget_period")) body.budget_period = f.get("budget_period");
  const models = String(f.get("models") || "").split(",").map((s) => s.trim()).filter(Boolean);
  if (models.length) body.models = models;
  if (String(f.get("expires_in") || "").trim()) body.expires_in = f.get("expires_in").trim();
  const tags = {};
  for (const pair of String(f.get("tags") || "").split(",").map((s) => s.trim()).filter(Boolean)) {
    const i = pair.indexOf("=");
    if (i <= 0) { showError(new Error(`tag "${pair}" must be name=value`)); return; }
    tags[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  if (Object.keys(tags).length) body.tags = tags;
  showError(null);
  try {
    const k = await api("/admin/keys", {method: "POST", body});
    ev.target.reset();
    showSecret(`New key "${k.name}" (${k.id})`, k.key);
    await loadKeys();
  } catch (err) {
    showError(err);
  }
}

async function revokeKey(k) {
  try {
    await api("/admin/keys/" + encodeURIComponent(k.id) + "/revoke", {method: "POST"});
    hideSecret(); // a revoked key's secret is of no use to anyone
    await loadKeys();
  } catch (err) {
    showError(err);
  }
}

async function rotateKey(k) {
  try {
    const r = await api("/admin/keys/" + encodeURIComponent(k.id) + "/rotate", {method: "POST"});
    showSecret(`New secret for "${r.name}" (${r.id}); the old one no longer works`, r.key);
    await loadKeys();
  } catch (err) {
    showError(err);
  }
}

// ---- wiring ----
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", () => { hideSecret(); logout(); });
  $("#refresh").addEventListener("click", show);
  $("#range").addEventListener("change", show);
  $("#req-filters").addEventListener("submit", (ev) => { ev.preventDefault(); show(); });
  $("#more-requests").addEventListener("click", () => loadRequests(true).catch(showError));
  $("#key-form").addEventListener("submit", createKey);
  $("#hide-secret").addEventListener("click", hideSecret);
  $("#copy-secret").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("#new-secret").textContent));
  window.addEventListener("hashchange", () => { if (sessionStorage.getItem(KEY)) show(); });
  if (sessionStorage.getItem(KEY)) start(); else logout();
});
