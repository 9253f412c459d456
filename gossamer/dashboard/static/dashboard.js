// Gossamer dashboard: polls the JSON endpoints every 2 s and draws them. No libraries.
"use strict";

const REFRESH_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_W = 160, NODE_H = 46, COL_W = 270, ROW_H = 76, PAD = 24;
const XDS = ["cds", "eds", "lds", "rds"];

// -- DOM helpers: text always goes in as text nodes (never parsed as HTML) --
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v; else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}
function replace(id, ...nodes) { document.getElementById(id).replaceChildren(...nodes); }
function table(headers, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map(x => h("th", {}, x)))), h("tbody", {}, rows));
}
function badge(text, cls) { return h("span", { class: "badge " + (cls || text) }, text); }
function rps(x) { return x >= 10 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(2); }
function pct(x) { return (x * 100).toFixed(x < 0.1 ? 1 : 0) + "%"; }

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

// -- tabs --
let tab = "graph";
function showTab() {
  const [name, query] = (location.hash || "#graph").slice(1).split("?");
  tab = name;
  if (query) prefillExplain(new URLSearchParams(query));
  if (!["graph", "workloads", "config"].includes(tab)) tab = "graph";
  for (const el of document.querySelectorAll(".tab")) el.hidden = el.id !== "tab-" + tab;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.tab === tab);
  refresh();
}

// -- graph --
function nodeSub(n) {
  if (n.type === "service") return "service · " + (n.namespace || n.host);
  const parts = [n.namespace];
  if (n.version) parts.push(n.version);
  if (n.pods) parts.push(n.ready + "/" + n.pods + " ready");
  if (n.pods && !n.sidecar) parts.push("no sidecar");
  return parts.join(" · ");
}
function edgeClass(e) {
  if (e.type === "selects") return "selects";
  if (e.rps <= 0) return "idle";
  if (e.errorRatio >= 0.05) return "err";
  if (e.errorRatio > 0) return "warn";
  return "ok";
}
function trim(text, max) { return text.length > max ? text.slice(0, max - 1) + "…" : text; }

function drawGraph(g) {
  const svg = document.getElementById("graph");
  const pos = {};
  let maxLayer = 0, maxOrder = 0;
  for (const n of g.nodes) {
    pos[n.id] = { x: PAD + n.layer * COL_W, y: PAD + n.order * ROW_H };
    maxLayer = Math.max(maxLayer, n.layer); maxOrder = Math.max(maxOrder, n.order);
  }
  const width = PAD * 2 + maxLayer * COL_W + NODE_W, height = PAD * 2 + maxOrder * ROW_H + NODE_H;
  // Natural size when it fits, scaled down to the page's width when it does not.
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.maxWidth = width + "px";
  const defs = s("defs");
  for (const c of ["ok", "idle", "warn", "err", "selects"]) {
    const m = s("marker", { id: "arrow-" + c, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
                            markerHeight: 7, orient: "auto-start-reverse" });
    m.append(s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead-" + c }));
    defs.append(m);
  }
  const edgesG = s("g"), labelsG = s("g"), nodesG = s("g");
  for (const e of g.edges) {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) continue;
    const cls = edgeClass(e);
    let x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x - 2, y2 = b.y + NODE_H / 2, d;
    if (b.x > a.x) {
      const dx = (x2 - x1) / 2;
      d = `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
    } else {  // back or same-layer edge: loop under the nodes
      x1 = a.x + NODE_W / 2; y1 = a.y + NODE_H; x2 = b.x + NODE_W / 2; y2 = b.y + NODE_H + 2;
      const low = Math.max(y1, y2) + ROW_H / 2;
      d = `M${x1},${y1} C${x1},${low} ${x2},${low} ${x2},${y2}`;
    }
    const path = s("path", { d, class: "edge " + cls, "marker-end": `url(#arrow-${cls})` });
    path.append(s("title", {}, `${e.source} → ${e.target}\n${rps(e.rps)} req/s, ${pct(e.errorRatio)} errors` +
                                `\n${e.requests} requests in total (reporter ${e.reporter || "-"})`));
    edgesG.append(path);
    if (e.type !== "selects" && e.requests > 0) {
      // Request rate above the curve's middle, error share (if any) below it.
      const mx = (x1 + x2) / 2, my = b.x > a.x ? (y1 + y2) / 2 : Math.max(y1, y2) + ROW_H / 2 - 6;
      labelsG.append(s("text", { x: mx, y: my - 5, "text-anchor": "middle", class: "elabel" },
                       e.rps > 0 ? rps(e.rps) + " rps" : "idle"));
      if (e.errorRatio > 0) {
        labelsG.append(s("text", { x: mx, y: my + 13, "text-anchor": "middle", class: "elabel err" },
                         pct(e.errorRatio) + " 5xx"));
      }
    }
  }
  for (const n of g.nodes) {
    const p = pos[n.id];
    const unhealthy = n.type === "workload" && n.pods > 0 && n.ready < n.pods;
    const grp = s("g", { class: `node ${n.type}${unhealthy ? " unhealthy" : ""}`,
                         transform: `translate(${p.x},${p.y})` });
    grp.append(s("rect", { width: NODE_W, height: NODE_H, rx: n.type === "service" ? 22 : 5 }));
    grp.append(s("text", { x: NODE_W / 2, y: 19, "text-anchor": "middle", class: "name" }, trim(n.name, 21)));
    grp.append(s("text", { x: NODE_W / 2, y: 35, "text-anchor": "middle", class: "sub" }, trim(nodeSub(n), 28)));
    grp.append(s("title", {}, n.type === "service" ? n.host : `${n.namespace}/${n.name}`));
    nodesG.append(grp);
  }
  const children = [defs, edgesG, nodesG, labelsG];
  if (!g.nodes.length) children.push(s("text", { x: PAD, y: PAD + 20, class: "empty" }, "No services yet."));
  svg.replaceChildren(...children);
}

function renderGraph(g) {
  drawGraph(g);
  const names = Object.fromEntries(g.nodes.map(n => [n.id, n.type === "service" ? n.host : n.name]));
  const traffic = g.edges.filter(e => e.type !== "selects");
  document.getElementById("graph-caption").textContent =
    `${g.nodes.length} nodes, ${traffic.length} traffic edges; rates over the last ${g.windowSeconds}s`;
  replace("edges", traffic.length ? table(
    ["source", "destination", "req/s", "5xx/s", "4xx/s", "error %", "requests", "reporter"],
    traffic.map(e => h("tr", { class: e.errorRatio >= 0.05 ? "bad" : null },
      h("td", {}, names[e.source] || e.source), h("td", {}, names[e.target] || e.target),
      h("td", { class: "num" }, rps(e.rps)), h("td", { class: "num" }, rps(e.errorRps)),
      h("td", { class: "num" }, rps(e.clientErrorRps)), h("td", { class: "num" }, pct(e.errorRatio)),
      h("td", { class: "num" }, e.requests), h("td", {}, e.reporter))))
    : h("p", { class: "muted" }, "No traffic recorded yet: send some requests through the mesh."));
}

// -- workloads --
function renderWorkloads(w) {
  const sm = w.summary;
  document.getElementById("pods-summary").textContent =
    `${sm.ready}/${sm.pods} ready, ${sm.restarts} restarts`;
  document.getElementById("proxies-summary").textContent =
    `${sm.synced}/${sm.proxies} in sync` + (sm.nacked ? `, ${sm.nacked} NACKED` : "");
  replace("nacks", ...w.proxies.flatMap(p => p.nacks.map(msg =>
    h("div", { class: "alert" }, h("b", {}, "NACK"), `${p.pod || p.nodeId}: ${msg}`))));
  replace("pods", table(["namespace", "pod", "ready", "phase", "restarts", "IP", "sidecar", "deployment"],
    w.pods.map(p => h("tr", { class: p.ready ? null : "bad" },
      h("td", {}, p.namespace), h("td", { class: "mono" }, p.name),
      h("td", {}, badge(p.ready ? "yes" : "no"), " ", p.containersReady), h("td", {}, p.phase),
      h("td", { class: "num" }, p.restarts), h("td", { class: "mono" }, p.ip),
      h("td", {}, p.hasSidecar ? p.proxyType : badge("none")), h("td", {}, p.deployment)))));
  replace("proxies", table(["proxy", "pod", ...XDS.map(t => t.toUpperCase()), "stream", "errors"],
    w.proxies.map(p => h("tr", { class: p.state === "NACKED" ? "bad" : null },
      h("td", { class: "mono" }, p.nodeId), h("td", {}, p.pod || "-"),
      XDS.map(t => h("td", {}, p.types[t] ? badge(p.types[t].state)
                                          : h("span", { class: "muted" }, "-"))),
      h("td", {}, p.delta ? "delta" : "sotw"),
      h("td", {}, p.nacks.map(m => h("div", { class: "warning" }, m)))))));
  const select = document.getElementById("ex-pod");
  const want = w.pods.filter(p => p.hasSidecar).map(p => `${p.namespace}/${p.name}`);
  const have = [...select.options].map(o => o.value);
  if (want.join() !== have.join()) {
    const current = select.value;
    if (current.includes("/deploy/") && !want.includes(current)) want.push(current);  // a deep link's ref
    select.replaceChildren(...want.map(v => h("option", { value: v }, v)));
    const preferred = want.find(v => v.includes("/productpage-")) || want[0];
    select.value = want.includes(current) ? current : preferred;
  }
}

// -- config --
function renderConfig(c) {
  document.getElementById("config-summary").textContent =
    `${c.items.length} objects` + (c.warnings ? `, ${c.warnings} warnings` : "");
  replace("config", c.items.length ? table(["kind", "namespace", "name", "hosts", "what", "source", "version"],
    c.items.map(i => h("tr", { class: i.warnings.length ? "bad" : null },
      h("td", {}, i.kind), h("td", {}, i.namespace), h("td", { class: "mono" }, i.name),
      h("td", { class: "mono" }, i.hosts.join(", ")),
      h("td", {}, i.summary, i.warnings.map(x => h("div", { class: "warning", title: x.text },
        `line ${x.line}: ` + (x.field ? `${x.field}: ` : "") + x.message))),
      h("td", { class: "mono", title: i.source }, shortPath(i.source)),
      h("td", { class: "num" }, i.resourceVersion))))
    : h("p", { class: "muted" }, "No Istio config applied (gossamer apply -f FILE)."));
  const msgs = c.analysis || [];
  document.getElementById("analysis-summary").textContent = `${msgs.length} messages`;
  replace("analysis", msgs.length ? table(["level", "code", "object", "source", "message"],
    msgs.map(m => h("tr", { class: m.level === "Error" ? "bad" : null },
      h("td", {}, badge(m.level, m.level === "Error" ? "no" : m.level === "Warning" ? "STALE" : "none")),
      h("td", { class: "mono", title: m.name }, m.code),
      h("td", { class: "mono" }, `${m.kind} ${m.namespace ? m.namespace + "/" : ""}${m.resource}`),
      h("td", { class: "mono", title: `${m.file}:${m.line}` }, shortPath(`${m.file}:${m.line}`)),
      h("td", {}, (m.field ? `${m.field}: ` : "") + m.message))))
    : h("p", { class: "muted" }, "No analysis messages."));
}

function shortPath(p) { const parts = p.split("/"); return parts.length > 3 ? "…/" + parts.slice(-3).join("/") : p; }

// -- explain --
function step(k, v, cls) { return h("div", { class: "step " + (cls || "") }, h("span", { class: "k" }, k),
                                    h("span", { class: "v" }, v)); }
function ruleName(r) {
  const name = r.name ? ` '${r.name}'` : "", index = r.index ? `#${r.index}` : "";
  const origin = r.source === "default" ? " (built-in default route)" : r.source ? ` from ${r.source}` : "";
  return `${index}${name}${origin}`.trim();
}
function renderExplanation(b) {
  const req = b.request || {}, out = [];
  out.push(step("request", `${req.method} ${req.url} ${req.inbound ? "to" : "from"} pod ${b.pod || "?"}`));
  out.push(step("Host", req.authority || ""));
  for (const [k, v] of Object.entries(req.headers || {})) out.push(step("header", `${k}: ${v}`, "dim"));
  const dest = b.destination || {};
  if (dest.address === null || dest.address === undefined) {
    out.push(step("destination", dest.resolution || "", "bad"));
  } else {
    out.push(step("destination", `${dest.address}:${dest.port} (${dest.resolution || ""})`));
    if (b.error) out.push(step("error", b.error, "bad"));
    if (b.listener) out.push(step("listener", `${b.listener.name} - ${b.listener.why}`));
    if (b.filterChain) out.push(step("filter chain", `${b.filterChain.name} - ${b.filterChain.why}`));
    if (b.routeConfig) out.push(step("route table", b.routeConfig));
    if (b.virtualHost) out.push(step("virtual host", `${b.virtualHost.name} - matched ${b.virtualHost.why}`));
    for (const r of b.notMatched || []) out.push(step("no match", `${ruleName(r)}: ${r.why} did not match`, "dim"));
    if (b.route) out.push(step("route", ruleName(b.route) + (b.route.why ? `: ${b.route.why} matched` : ""), "good"));
    for (const c of b.clusters || []) {
      out.push(step("cluster", `${c.name} (weight ${c.weight}${c.type ? ", " + c.type : ""})`));
      for (const ep of c.endpoints || []) {
        out.push(step("  endpoint", ep.address + (ep.health && ep.health !== "UNKNOWN" ? " " + ep.health : ""), "dim"));
      }
      if (c.note) out.push(step("", c.note, "warn"));
    }
    for (const [k, v] of b.requestHeadersToAdd || []) out.push(step("adds header", `${k}: ${v}`));
  }
  if (b.verdict) out.push(step("result", b.verdict, b.status && b.status >= 400 ? "bad" : "good"));
  const sync = b.sync || {};
  if (Object.keys(sync).length) {
    out.push(step("proxy sync", Object.entries(sync).map(([t, x]) => `${t.toUpperCase()} ${x.state}`).join(", ")));
  }
  for (const w of b.warnings || []) out.push(step("warning", w, "warn"));
  replace("explain-out", h("div", { class: "steps" }, out));
}
function prefillExplain(q) {
  const select = document.getElementById("ex-pod");
  const pod = q.get("pod");
  if (pod && ![...select.options].some(o => o.value === pod)) select.append(h("option", { value: pod }, pod));
  if (pod) select.value = pod;
  if (q.get("url")) document.getElementById("ex-url").value = q.get("url");
  if (q.get("method")) document.getElementById("ex-method").value = q.get("method").toUpperCase();
  document.getElementById("ex-headers").value = q.getAll("header").join("\n");
  document.getElementById("ex-inbound").checked = q.get("inbound") === "1";
  if (pod) explain();
}
async function explain(ev) {
  if (ev) ev.preventDefault();
  const [namespace, ...rest] = document.getElementById("ex-pod").value.split("/");
  const ref = rest.join("/");
  const headers = document.getElementById("ex-headers").value.split("\n").map(x => x.trim()).filter(Boolean);
  const body = { namespace, ref, url: document.getElementById("ex-url").value.trim(),
                 method: document.getElementById("ex-method").value, headers,
                 inbound: document.getElementById("ex-inbound").checked };
  try {
    const r = await fetch("/api/explain", { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify(body) });
    const b = await r.json();
    if (!r.ok) replace("explain-out", h("div", { class: "alert" }, h("b", {}, "error"), b.error || "HTTP " + r.status));
    else renderExplanation(b);
  } catch (e) {
    replace("explain-out", h("div", { class: "alert" }, h("b", {}, "error"), String(e)));
  }
}

// -- polling: redraw only what changed (keeps selections and scroll positions) --
const last = {};
async function load(name, path, render) {
  const data = await getJSON(path);
  const key = JSON.stringify(data);
  if (last[name] !== key) { last[name] = key; render(data); }
}
let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  const state = document.getElementById("mesh-state");
  try {
    const jobs = [load("overview", "/api/overview", o => {
      state.textContent = (o.ready ? "mesh ready" : "mesh starting") + ` · revision ${o.revision} · ingress ${o.ingress}`;
      state.className = "mesh-state " + (o.ready ? "ok" : "bad");
    })];
    if (tab === "graph") jobs.push(load("graph", "/api/graph", renderGraph));
    // The explain form's pod list comes from the workloads view.
    if (tab === "workloads" || tab === "config") jobs.push(load("workloads", "/api/workloads", renderWorkloads));
    if (tab === "config") jobs.push(load("config", "/api/config", renderConfig));
    await Promise.all(jobs);
  } catch (e) {
    delete last.overview;
    state.textContent = "control plane unreachable";
    state.className = "mesh-state bad";
  } finally {
    busy = false;
  }
}

window.addEventListener("hashchange", showTab);
document.getElementById("explain-form").addEventListener("submit", explain);
showTab();
setInterval(refresh, REFRESH_MS);
