// The minikafka console: polls the JSON API and renders topics, groups, rate charts and the
// message browser. Every piece of broker data goes into the page through textContent (never
// innerHTML), so record keys and values cannot inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#2f6fde", "#e07b24", "#2e8b57", "#a23fc4", "#c43d3d", "#1b9aaa", "#8a6d3b", "#d6409f"];
const state = {
  topics: [],
  latestRates: {},
  rateUnit: "records",
  rateWindowS: 300,
  selectedTopic: null,
  selectedGroup: null,
  lastPage: null,
  colors: {},
  cluster: null,
};
window.consoleState = state; // for the browser test and for curious operators

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fmtNum(v) {
  if (v >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(1);
}

function fmtBytes(v) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
}

function colorFor(topic) {
  if (!state.colors[topic]) {
    state.colors[topic] = PALETTE[Object.keys(state.colors).length % PALETTE.length];
  }
  return state.colors[topic];
}

// A broker started with --auth-token wants it on every API call: asked once, kept for the tab.
const TOKEN_KEY = "minikafka-auth-token";
let tokenAsk = null;
let tokenDeclined = false;

// `sent` is the token the refused request carried: if another request has obtained a newer one
// meanwhile, retry with it instead of asking again.
function askToken(sent) {
  if (sessionStorage.getItem(TOKEN_KEY) !== sent) return Promise.resolve(true);
  if (tokenDeclined) return Promise.resolve(false);
  if (!tokenAsk) {
    tokenAsk = Promise.resolve().then(() => {
      const t = window.prompt("This broker needs its auth token:");
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else tokenDeclined = true;
      tokenAsk = null;
      return Boolean(t);
    });
  }
  return tokenAsk;
}

async function api(path, opts = {}) {
  let resp;
  for (let attempt = 0; ; attempt++) {
    const headers = { ...(opts.headers || {}) };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.authorization = "Bearer " + token;
    resp = await fetch(path, { ...opts, headers });
    if (resp.status !== 401 || attempt > 0 || !(await askToken(token))) break;
  }
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON: reported below */ }
  if (!resp.ok) throw new Error((body && body.error) || resp.status + " " + resp.statusText);
  return body;
}

function setStatus(ok, text) {
  const s = $("conn-status");
  s.dataset.state = ok ? "ok" : "error";
  s.textContent = text;
}

function replaceRows(tbody, rows, emptyText, cols) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: cols }, emptyText))]));
}

// ---- topics --------------------------------------------------------------------------------

// Who leads a partition and which replicas are in sync ("leader 1 · replicas [1,2,3] · isr [1,3]").
function leadership(p) {
  if (p.replicas === undefined) return "";
  const list = (ids) => "[" + ids.join(",") + "]";
  const leader = p.leader === null ? "no leader" : "leader " + p.leader;
  return leader + " · replicas " + list(p.replicas) + " · isr " + list(p.isr);
}

function renderTopics() {
  const rows = [];
  for (const t of state.topics) {
    const r = state.latestRates[t.name] || {};
    const unit = state.rateUnit === "bytes" ? fmtBytes : fmtNum;
    const row = el("tr", {
      class: "clickable" + (t.name === state.selectedTopic ? " selected" : ""),
      "data-topic": t.name,
      onclick: () => selectTopic(t.name),
    },
      el("td", {}, el("span", { class: "swatch-dot", style: "color:" + colorFor(t.name) }, "● "), t.name),
      el("td", { class: "num" }, t.partitions.length),
      el("td", { class: "num" }, fmtNum(t.records)),
      el("td", { class: "num" }, fmtBytes(t.size_bytes)),
      el("td", { class: "num" }, t.segments),
      el("td", { class: "num", "data-rate": "in" }, unit(state.rateUnit === "bytes" ? r.produce_bytes || 0 : r.produce_records || 0)),
      el("td", { class: "num", "data-rate": "out" }, unit(state.rateUnit === "bytes" ? r.consume_bytes || 0 : r.consume_records || 0)));
    rows.push(row);
    // Damaged data the broker does not serve, always shown, with the error naming the file.
    const offline = (text) => el("tr", { class: "offline" },
      el("td", { colspan: 7, style: "color:var(--bad)" }, text));
    if (t.offline) rows.push(offline("offline: " + t.offline));
    for (const p of t.partitions) {
      if (p.offline) rows.push(offline("partition " + p.partition + " offline: " + p.offline));
    }
    if (t.name === state.selectedTopic) {
      for (const p of t.partitions.filter((p) => !p.offline)) {
        rows.push(el("tr", { class: "partition", "data-partition": p.partition },
          el("td", { colspan: 2 }, "partition " + p.partition + ": offsets " + p.log_start_offset + " .. " + p.next_offset),
          el("td", { class: "num" }, fmtNum(p.records)),
          el("td", { class: "num" }, fmtBytes(p.size_bytes)),
          el("td", { class: "num" }, p.segments),
          el("td", { colspan: 2, class: "leadership" }, leadership(p))));
      }
    }
  }
  replaceRows($("topics-body"), rows, "no topics yet", 7);
  $("stat-topics").textContent = state.topics.length;
  $("stat-records").textContent = fmtNum(state.topics.reduce((a, t) => a + t.records, 0));
  $("stat-size").textContent = fmtBytes(state.topics.reduce((a, t) => a + t.size_bytes, 0));
  syncBrowserSelects();
}

function selectTopic(name) {
  state.selectedTopic = state.selectedTopic === name ? null : name;
  if (state.selectedTopic) {
    $("browser-topic").value = name;
    syncBrowserSelects();
  }
  renderTopics();
  refreshTopicDetail().catch(showError);
}

// The selected topic's id and configs: every config with its value and where it comes from
// (set on the topic, a broker flag, or the default); the ones set on the topic stand out.
async function refreshTopicDetail() {
  const name = state.selectedTopic;
  if (!name || !state.topics.some((t) => t.name === name)) {
    $("topic-detail").hidden = true;
    return;
  }
  const t = await api("/api/topics/" + encodeURIComponent(name));
  if (state.selectedTopic !== name) return; // another topic was chosen meanwhile
  $("topic-detail-name").textContent = t.name;
  $("topic-detail-id").textContent = t.topic_id ? "id " + t.topic_id : "";
  replaceRows($("topic-configs-body"), (t.configs || []).map((c) => el("tr", {
    "data-config": c.name,
    "data-source": c.source,
    class: c.source === "topic" ? "config-set" : "",
  },
    el("td", {}, c.name),
    el("td", {}, c.value === null ? "–" : c.value),
    el("td", {}, c.source + (c.read_only ? " (read-only)" : "")))),
  t.offline ? "offline: " + t.offline : "no configs", 3);
  $("topic-detail").hidden = false;
}

async function refreshTopics() {
  state.topics = await api("/api/topics");
  renderTopics();
  await refreshTopicDetail();
}

// ---- groups --------------------------------------------------------------------------------

async function refreshGroups() {
  const groups = await api("/api/groups");
  $("stat-groups").textContent = groups.length;
  replaceRows($("groups-body"), groups.map((g) => el("tr", {
    class: "clickable" + (g.group === state.selectedGroup ? " selected" : ""),
    "data-group": g.group,
    onclick: () => { state.selectedGroup = g.group; refreshGroups().catch(showError); },
  },
    el("td", {}, g.group),
    el("td", {}, g.topics.join(", ")),
    el("td", { class: "num" }, g.partitions),
    el("td", { class: "num" + (g.total_lag > 0 ? " lag-high" : "") }, fmtNum(g.total_lag)))),
  "no committed offsets yet", 4);
  if (state.selectedGroup && groups.some((g) => g.group === state.selectedGroup)) {
    const d = await api("/api/groups/" + encodeURIComponent(state.selectedGroup));
    $("group-detail-name").textContent = d.group;
    $("group-detail-members").textContent = "state: " + d.state + " · " + (d.members.length
      ? d.members.length + " live member" + (d.members.length === 1 ? "" : "s")
      : "no live members (offsets only)");
    const details = d.member_details || [];
    replaceRows($("group-members-body"), details.map((m) => el("tr", {},
      el("td", {}, m.member_id),
      el("td", {}, m.client_id),
      el("td", {}, m.client_host),
      el("td", {}, m.assigned.map(([t, ps]) => t + ": " + ps.join(",")).join("; ") || "–"))),
    "no live members", 4);
    $("group-members").hidden = details.length === 0;
    replaceRows($("group-detail-body"), d.offsets.map((o) => el("tr", {},
      el("td", {}, o.topic),
      el("td", { class: "num" }, o.partition),
      el("td", { class: "num" }, o.committed_offset),
      el("td", { class: "num" }, o.log_end_offset === null ? "gone" : o.log_end_offset),
      el("td", { class: "num" + (o.lag > 0 ? " lag-high" : "") }, o.lag === null ? "–" : o.lag))),
    "no offsets", 5);
    $("group-detail").hidden = false;
  } else {
    $("group-detail").hidden = true;
  }
}

// ---- rates ---------------------------------------------------------------------------------

async function refreshRates() {
  const view = await api("/api/rates");
  const bytes = state.rateUnit === "bytes";
  const byTopic = {};
  for (const s of view.samples) {
    for (const [topic, r] of Object.entries(s.topics)) {
      const e = byTopic[topic] || (byTopic[topic] = { produce: [], consume: [] });
      e.produce.push([s.ts_ms, bytes ? r.produce_bytes : r.produce_records]);
      e.consume.push([s.ts_ms, bytes ? r.consume_bytes : r.consume_records]);
    }
  }
  const last = view.samples.length ? view.samples[view.samples.length - 1] : null;
  state.latestRates = last ? last.topics : {};
  // The busiest topics first; at most eight so the chart stays readable.
  const total = (pts) => pts.reduce((a, [, v]) => a + v, 0);
  const topics = Object.keys(byTopic)
    .sort((a, b) => total(byTopic[b].produce) + total(byTopic[b].consume) - total(byTopic[a].produce) - total(byTopic[a].consume))
    .slice(0, 8);
  const series = [];
  const legend = [];
  for (const t of topics) {
    const c = colorFor(t);
    series.push({ label: t + " in", color: c, dashed: false, points: byTopic[t].produce });
    series.push({ label: t + " out", color: c, dashed: true, points: byTopic[t].consume });
    legend.push(el("span", {}, el("span", { class: "swatch", style: "background:" + c }), t + " produced"));
    legend.push(el("span", {}, el("span", { class: "swatch dashed", style: "border-color:" + c }), t + " consumed"));
  }
  const canvas = $("rate-chart");
  const nowMs = last ? Math.max(last.ts_ms, Date.now()) : Date.now();
  drawLineChart(canvas, series, {
    windowMs: Math.min(state.rateWindowS * 1000, view.window_samples * view.interval_ms),
    nowMs,
    format: bytes ? fmtBytes : fmtNum,
  });
  const sum = (k) => Object.values(state.latestRates).reduce((a, r) => a + r[k], 0);
  canvas.dataset.samples = view.samples.length;
  canvas.dataset.produceNow = sum("produce_records");
  canvas.dataset.consumeNow = sum("consume_records");
  $("rate-legend").replaceChildren(...legend);
  renderTopics();
}

// ---- cluster -------------------------------------------------------------------------------

const partName = (p) => p.topic + "/" + p.partition;
// The throttle in MB/s, 1 MB = 1,000,000 bytes as `--throttle-mb-per-s` counts them.
const fmtMB = (bytes) => (bytes / 1e6).toLocaleString("en-US", { maximumFractionDigits: 2 });

// What `cluster status` means by each state and role, for the cells' tooltips.
const STATE_HINTS = {
  alive: "heartbeating, takes replicas",
  fenced: "missed its heartbeats or shut down: leads nothing until it is back",
  decommissioning: "decommissioned: its replicas are being moved away, then it is fenced",
  decommissioned: "decommissioned and emptied: fenced for good (until --cancel)",
};
const ROLE_HINTS = {
  controller: "the active controller: leads the metadata quorum",
  voter: "a metadata voter: a controller candidate",
  broker: "follows the metadata, takes no part in electing the controller",
};
const idList = (ids) => "[" + ids.join(",") + "]";

// A broker's partitions, "leads a/0, a/1 · follows a/2, b/0": the ones it follows out of sync
// stand out; long lists are cut.
function brokerPartitions(id, leads, follows) {
  const MAX = 24;
  const out = [];
  const list = (label, parts, outOfSync) => {
    if (!parts.length) return;
    if (out.length) out.push(" · ");
    out.push(label + " ");
    parts.slice(0, MAX).forEach((p, i) => {
      if (i) out.push(", ");
      const lagging = outOfSync(p);
      out.push(el("span", lagging ? { class: "out-of-sync", title: "not in sync" } : {},
        partName(p) + (lagging ? " (out of sync)" : "")));
    });
    if (parts.length > MAX) out.push(" … " + (parts.length - MAX) + " more");
  };
  list("leads", leads, () => false);
  list("follows", follows, (p) => !p.isr.includes(id));
  return out.length ? out : ["–"];
}

function brokerAddresses(b) {
  const lines = [["native", b.native_addr], ["kafka", b.kafka_addr], ["cluster", b.cluster_addr]]
    .filter(([, a]) => a)
    .map(([name, a]) => el("div", {}, name + " " + a));
  return lines.length ? lines : ["–"];
}

function attentionRow(p, what) {
  return el("tr", { class: what, "data-topic": p.topic, "data-partition": p.partition, "data-state": what },
    el("td", {}, p.topic),
    el("td", { class: "num" }, p.partition),
    el("td", {}, what),
    el("td", {}, p.leader === null ? "none" : p.leader),
    el("td", {}, idList(p.replicas)),
    el("td", {}, idList(p.isr)));
}

// What each added replica not yet in sync still has to copy, with a bar of the share of the
// leader's log it holds. Only the partition's leader counts: served by another broker, the page
// can only say the replica is catching up (and a leader of an earlier release counts records).
function reassignmentProgress(r) {
  const waiting = r.adding.filter((a) => !r.isr.includes(a));
  if (!waiting.length) return [el("div", {}, "dropping old replicas")];
  return waiting.map((a) => {
    const b = r.behind.find((x) => x.replica === a);
    const who = "broker " + a + ": ";
    if (!b) return el("div", { "data-replica": a }, who + "catching up");
    const records = b.records.toLocaleString("en-US") + " records";
    if (b.bytes === null || b.log_bytes === null) {
      return el("div", { "data-replica": a }, who + records + " to copy");
    }
    const done = Math.max(0, b.log_bytes - b.bytes);
    const pct = b.log_bytes ? Math.floor((done * 100) / b.log_bytes) : 100;
    return el("div", { "data-replica": a, "data-copied": done, "data-total": b.log_bytes },
      el("progress", { max: Math.max(1, b.log_bytes), value: done }),
      " " + who + pct + "% copied, " + fmtBytes(b.bytes) + " (" + records + ") to copy");
  });
}

// A move under way (`minikafka topic reassign`).
function reassignmentRow(r) {
  return el("tr", { "data-topic": r.topic, "data-partition": r.partition },
    el("td", {}, r.topic),
    el("td", { class: "num" }, r.partition),
    el("td", { title: "adding " + idList(r.adding) + ", removing " + idList(r.removing) }, idList(r.target)),
    el("td", {}, idList(r.isr)),
    el("td", {}, r.leader === null ? "none" : r.leader),
    el("td", { class: "plist" }, ...reassignmentProgress(r)));
}

async function refreshCluster() {
  const c = await api("/api/cluster");
  state.cluster = c;
  const brokers = [...c.brokers].sort((a, b) => a.id - b.id);
  const parts = c.partitions || [];
  $("cluster-single").hidden = c.clustered;
  $("cluster-summary").textContent = c.clustered
    ? brokers.length + " broker" + (brokers.length === 1 ? "" : "s") + " · controller " +
      (c.controller === null ? "unknown" : c.controller) + " · this console is broker " + c.node_id
    : "single broker";
  replaceRows($("cluster-brokers-body"), brokers.map((b) => {
    const leads = parts.filter((p) => p.leader === b.id);
    const follows = parts.filter((p) => p.leader !== null && p.leader !== b.id && p.replicas.includes(b.id));
    const controller = c.controller === b.id;
    return el("tr", {
      "data-broker": b.id,
      "data-state": b.state,
      "data-role": b.role,
      "data-controller": String(controller),
    },
      el("td", {}, String(b.id), controller ? el("span", { class: "badge" }, "controller") : null),
      el("td", { class: "addrs" }, ...brokerAddresses(b)),
      el("td", { class: "state state-" + b.state, title: STATE_HINTS[b.state] || "" }, b.state),
      el("td", { class: "role", title: ROLE_HINTS[b.role] || "" }, b.role),
      el("td", { class: "num", "data-count": "leads" }, leads.length),
      el("td", { class: "num", "data-count": "follows" }, follows.length),
      el("td", { class: "plist" }, ...brokerPartitions(b.id, leads, follows)));
  }), "no brokers registered yet", 7);
  replaceRows($("cluster-attention-body"), [
    ...c.offline.map((p) => attentionRow(p, "offline")),
    ...c.under_replicated.map((p) => attentionRow(p, "under-replicated")),
  ], "every partition has a leader and all its replicas in sync", 6);
  const moves = c.reassignments || [];
  replaceRows($("cluster-reassignments-body"), moves.map(reassignmentRow), "", 6);
  const throttle = c.throttle_bytes_per_s;
  $("cluster-throttle").hidden = throttle === null || throttle === undefined;
  $("cluster-throttle").textContent = $("cluster-throttle").hidden ? "" :
    "throttled to " + fmtMB(throttle) + " MB/s per broker";
  $("cluster-reassignments").hidden = moves.length === 0 && $("cluster-throttle").hidden;
}

// ---- message browser -----------------------------------------------------------------------

function syncBrowserSelects() {
  const tsel = $("browser-topic");
  const names = state.topics.map((t) => t.name);
  const current = tsel.value;
  if (tsel.options.length !== names.length || names.some((n, i) => tsel.options[i].value !== n)) {
    tsel.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(current)) tsel.value = current;
  }
  const topic = state.topics.find((t) => t.name === tsel.value);
  const psel = $("browser-partition");
  const parts = topic ? topic.partitions.map((p) => String(p.partition)) : [];
  if (psel.options.length !== parts.length || parts.some((p, i) => psel.options[i].value !== p)) {
    const pcur = psel.value;
    psel.replaceChildren(...parts.map((p) => el("option", { value: p }, p)));
    if (parts.includes(pcur)) psel.value = pcur;
  }
}

function bytesCell(b) {
  if (b === null || b === undefined) return el("span", { class: "null" }, "null");
  const hex = $("browser-hex").checked || b.text === null;
  const shown = hex ? b.hex : b.text;
  return el("span", { title: b.len + " bytes" + (hex && b.text === null ? " (not UTF-8)" : "") },
    shown, b.truncated ? el("span", { class: "cut" }, " … (" + b.len + " bytes)") : null);
}

function renderPage() {
  const page = state.lastPage;
  if (!page) return;
  $("browser-info").textContent =
    page.topic + " / partition " + page.partition + ": log holds offsets " + page.log_start_offset +
    " .. " + page.high_watermark + "; showing " + page.records.length + " record(s)" +
    (page.records.length ? " from " + page.records[0].offset : "");
  replaceRows($("records-body"), page.records.map((r) => el("tr", { "data-offset": r.offset },
    el("td", { class: "num" }, r.offset),
    el("td", { title: String(r.timestamp_ms) }, new Date(r.timestamp_ms).toISOString()),
    el("td", {}, bytesCell(r.key)),
    el("td", { class: "value" }, bytesCell(r.value)),
    el("td", {}, ...r.headers.map((h) => el("span", { class: "hdr" }, bytesCell(h.key), " = ", bytesCell(h.value))),
      ...(r.headers_total > r.headers.length ? [el("span", { class: "hdr" }, "… " + (r.headers_total - r.headers.length) + " more")] : [])))),
  "no records at this offset", 5);
  $("browse-next").disabled = page.next_offset >= page.high_watermark;
}

async function browse(offset) {
  const topic = $("browser-topic").value;
  const partition = $("browser-partition").value;
  if (!topic || partition === "") return;
  const params = new URLSearchParams();
  if (offset !== null && offset !== "") params.set("offset", offset);
  params.set("limit", $("browser-limit").value || "50");
  const path = "/api/topics/" + encodeURIComponent(topic) + "/partitions/" + partition + "/records?" + params;
  try {
    state.lastPage = await api(path);
    renderPage();
  } catch (e) {
    $("browser-info").textContent = "error: " + e.message;
  }
}

// ---- wiring --------------------------------------------------------------------------------

function showError(e) {
  setStatus(false, "broker unreachable: " + e.message);
}

function poll(fn, everyMs) {
  const tick = async () => {
    try {
      await fn();
      setStatus(true, "live");
    } catch (e) {
      showError(e);
    }
    setTimeout(tick, everyMs);
  };
  tick();
}

$("browse-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  browse($("browser-offset").value);
});
$("browse-next").addEventListener("click", () => {
  if (state.lastPage) {
    $("browser-offset").value = state.lastPage.next_offset;
    browse(state.lastPage.next_offset);
  }
});
$("browser-topic").addEventListener("change", syncBrowserSelects);
$("browser-hex").addEventListener("change", renderPage);
for (const r of document.querySelectorAll('input[name="rate-unit"]')) {
  r.addEventListener("change", () => { state.rateUnit = r.value; refreshRates().catch(showError); });
}
$("create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const status = $("create-status");
  const name = $("create-name").value.trim();
  const partitions = parseInt($("create-partitions").value, 10) || 1;
  try {
    await api("/api/topics", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name, partitions }),
    });
    status.className = "form-status ok";
    status.textContent = "created " + name;
    $("create-name").value = "";
    await refreshTopics();
  } catch (e) {
    status.className = "form-status error";
    status.textContent = e.message;
  }
});
for (const r of document.querySelectorAll('input[name="rate-window"]')) {
  r.addEventListener("change", () => {
    state.rateWindowS = Number(r.value);
    $("rate-window-hint").textContent =
      "last " + (state.rateWindowS === 60 ? "minute" : "5 minutes") + ", per second";
    refreshRates().catch(showError);
  });
}
window.addEventListener("resize", () => refreshRates().catch(showError));

poll(refreshTopics, 2000);
poll(refreshGroups, 3000);
poll(refreshRates, 1000);
poll(refreshCluster, 2000);
