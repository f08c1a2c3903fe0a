// callml console: reads the REST API with the browser's credentials for this origin and
// builds every element through the DOM; captured text is only ever set as textContent.
"use strict";

const ACCOUNT = document.body.dataset.accountSid;
const ROOT = `/2010-04-01/Accounts/${ACCOUNT}`;
const LIVE_EVERY_MS = 2000;
const MAX_LADDER_MESSAGES = 5000;
// The timer refreshing the view shown, stopped when another is shown.
let refreshing = null;

// One line about each Twilio error code callml reports.
const ERROR_CODES = {
  11100: "Invalid URL format: the document or callback URL is not an http(s) URL.",
  11200: "HTTP retrieval failure: the application answered with an error or an unusable body.",
  11205: "HTTP connection failure: the application could not be reached in time.",
  11210: "HTTP bad host name: the application's host name does not resolve.",
  11215: "HTTP too many redirects.",
  11220: "TLS handshake error with the application.",
  12100: "Document parse failure: the TwiML is not well formed.",
  12200: "Schema validation warning: a verb or attribute is not allowed here.",
  12400: "Internal failure in callml.",
  13224: "The number cannot be called: no trunk, or the number is invalid.",
  13254: "Dial->Sip: the SIP URI's host does not resolve.",
  13420: "Play: the file is not audio callml can play.",
  13520: "Say: the text could not be spoken (espeak-ng missing?).",
  31480: "Client unavailable: no device registered for that client.",
  31503: "Service unavailable.",
  32009: "The SIP user is not registered with the domain.",
  32011: "Error communicating with the SIP infrastructure (no answer, transport failure).",
  32014: "No audio received for the media timeout: the call was ended.",
  32015: "The call exceeded the maximum call duration.",
  32022: "ACK not received from the SIP endpoint.",
  32102: "SIP: bad SDP, or an SRTP offer callml cannot serve.",
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (name === "class") {
      node.className = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { const body = await response.json(); message = `${body.code}: ${body.message}`; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response.json();
}

function status(value) {
  return el("span", { class: `status ${value || ""}` }, value || "");
}

function callLink(sid) {
  return el("a", { href: `/console/calls/${encodeURIComponent(sid)}`, class: "mono" }, sid);
}

function explain(code) {
  return ERROR_CODES[code] || "See https://www.twilio.com/docs/errors/" + code;
}

function callsTable(calls, empty) {
  if (!calls.length) return el("p", { class: "empty" }, empty);
  return el("table", {},
    el("thead", {}, el("tr", {}, ["Call", "From", "To", "Direction", "Status", "Started", "Duration"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, calls.map((call) => el("tr", { "data-call-sid": call.sid },
      el("td", {}, callLink(call.sid)),
      el("td", { class: "mono" }, call.from),
      el("td", { class: "mono" }, call.to),
      el("td", {}, call.direction),
      el("td", {}, status(call.status)),
      el("td", {}, call.start_time || ""),
      el("td", {}, call.duration ? `${call.duration} s` : ""),
    ))));
}

// ---- The calls page: live calls and the call log.

async function liveCalls(section) {
  const statuses = ["in-progress", "ringing", "queued"];
  const pages = await Promise.all(statuses.map((s) => api(`${ROOT}/Calls.json?Status=${s}&PageSize=200`)));
  const calls = pages.flatMap((page) => page.calls);
  section.replaceChildren(
    el("h2", {}, `Live calls (${calls.length})`),
    callsTable(calls, "No call is live."),
  );
}

function callLog(section, query) {
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter the call log" },
    el("label", {}, "Status", el("select", { name: "Status" },
      ["", "queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"]
        .map((s) => el("option", { value: s, selected: query.get("Status") === s && s !== "" }, s || "any")))),
    el("label", {}, "From", el("input", { name: "From", value: query.get("From") || "", size: 18 })),
    el("label", {}, "To", el("input", { name: "To", value: query.get("To") || "", size: 18 })),
    el("label", {}, "Started on or after", el("input", { name: "StartTime>", type: "date", value: query.get("StartTime>") || "" })),
    el("label", {}, "Page size", el("select", { name: "PageSize" },
      ["20", "50", "100"].map((n) => el("option", { value: n, selected: (query.get("PageSize") || "20") === n }, n)))),
    el("button", { type: "submit" }, "Filter"));
  const results = el("div", { "aria-live": "polite" });
  section.replaceChildren(el("h2", {}, "Call log"), form, results);
  const load = async (path) => {
    results.replaceChildren(el("p", {}, "Loading…"));
    try {
      const page = await api(path);
      const pager = el("div", { class: "pager" },
        el("button", { type: "button", disabled: !page.previous_page_uri, on: { click: () => load(page.previous_page_uri) } }, "← Newer"),
        el("span", {}, `Page ${page.page + 1}`),
        el("button", { type: "button", disabled: !page.next_page_uri, on: { click: () => load(page.next_page_uri) } }, "Older →"));
      results.replaceChildren(callsTable(page.calls, "No call matches."), pager);
    } catch (error) {
      results.replaceChildren(el("p", { class: "error" }, `Could not load calls: ${error.message}`));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) params.set(name, value);
    history.replaceState(null, "", `/console?${params}`);
    load(`${ROOT}/Calls.json?${params}`);
  });
  const params = new URLSearchParams();
  for (const name of ["Status", "From", "To", "StartTime>", "PageSize"]) if (query.get(name)) params.set(name, query.get(name));
  if (!params.has("PageSize")) params.set("PageSize", "20");
  load(`${ROOT}/Calls.json?${params}`);
}

function callsPage(main) {
  const live = el("section", { id: "live", "aria-live": "polite" }, el("h2", {}, "Live calls"));
  const log = el("section", { id: "log" });
  main.replaceChildren(el("h1", {}, "Calls"), live, log);
  const refresh = () => liveCalls(live).catch((error) => live.replaceChildren(el("h2", {}, "Live calls"), el("p", { class: "error" }, error.message)));
  refresh();
  refreshing = setInterval(refresh, LIVE_EVERY_MS);
  callLog(log, new URLSearchParams(location.search));
}

// ---- A call's page.

async function allPages(path, key, limit) {
  const rows = [];
  let next = path;
  while (next && rows.length < limit) {
    const page = await api(next);
    rows.push(...page[key]);
    next = page.next_page_uri;
  }
  return rows;
}

function shortLabel(message) {
  const line = message.first_line;
  if (line.startsWith("SIP/2.0 ")) return line.slice(8);
  return line.split(" ")[0];
}

function ladder(messages, detail) {
  if (!messages.length) return el("p", { class: "empty" }, "No SIP message was captured for this call.");
  const remotes = [];
  for (const m of messages) if (!remotes.includes(m.remote_address)) remotes.push(m.remote_address);
  // The first far end on the left, callml next, the others to the right.
  const columns = [remotes[0], "callml", ...remotes.slice(1)];
  const gap = 260, left = 130, top = 50, row = 30;
  const width = left * 2 + gap * (columns.length - 1);
  const height = top + row * messages.length + 20;
  const x = (name) => left + gap * columns.indexOf(name);
  const drawing = svg("svg", { class: "ladder", width, height, viewBox: `0 0 ${width} ${height}`, role: "list", "aria-label": "SIP ladder" });
  for (const name of columns) {
    drawing.append(svg("text", { x: x(name), y: 20, "text-anchor": "middle", class: "head" }, name === "callml" ? "callml" : name));
    drawing.append(svg("line", { x1: x(name), y1: 28, x2: x(name), y2: height, class: "lifeline" }));
  }
  const start = Date.parse(messages[0].timestamp);
  let selected = null;
  messages.forEach((m, i) => {
    const y = top + row * i;
    const from = m.direction === "in" ? x(m.remote_address) : x("callml");
    const to = m.direction === "in" ? x("callml") : x(m.remote_address);
    const label = shortLabel(m);
    const code = parseInt(label, 10);
    const classes = ["msg", m.direction];
    if (code >= 400) classes.push("final-error");
    const g = svg("g", { class: classes.join(" "), tabindex: 0, role: "listitem",
      "aria-label": `${m.direction === "in" ? "received" : "sent"} ${m.first_line} ${m.direction === "in" ? "from" : "to"} ${m.remote_address}`,
      "data-first-line": m.first_line });
    const lo = Math.min(from, to), hi = Math.max(from, to);
    g.append(svg("rect", { x: lo - 4, y: y - 16, width: hi - lo + 8, height: row - 2, class: "hit" }));
    g.append(svg("line", { x1: from, y1: y, x2: to, y2: y }));
    const dir = to > from ? -1 : 1;
    g.append(svg("polygon", { points: `${to},${y} ${to + dir * 8},${y - 4} ${to + dir * 8},${y + 4}` }));
    g.append(svg("text", { x: (from + to) / 2, y: y - 5, "text-anchor": "middle", class: "label" }, `${label} (${m.transport})`));
    const offset = ((Date.parse(m.timestamp) - start) / 1000).toFixed(3);
    g.append(svg("text", { x: 6, y: y + 4, class: "when" }, `+${offset}s`));
    const open = () => {
      if (selected) selected.classList.remove("selected");
      selected = g;
      g.classList.add("selected");
      detail.replaceChildren(
        el("h2", {}, m.first_line),
        el("p", { class: "mono" }, `${m.timestamp} · ${m.direction === "in" ? "from" : "to"} ${m.remote_address} · ${m.transport} · local ${m.local_address}` + (m.call_sid ? ` · ${m.call_sid}` : "")),
        el("pre", { class: "message" }, m.message));
    };
    g.addEventListener("click", open);
    g.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); }
      if (event.key === "ArrowDown" && g.nextSibling) { event.preventDefault(); g.nextSibling.focus(); }
      if (event.key === "ArrowUp" && g.previousSibling && g.previousSibling.tagName === "g") { event.preventDefault(); g.previousSibling.focus(); }
    });
    drawing.append(g);
  });
  return el("div", { class: "ladder-wrap" }, drawing);
}

// One webhook (a document fetch or a status callback) as it was captured.
function webhookItem(entry) {
  const { request = {}, response = {} } = entry.data || {};
  const code = response.response_code;
  const failed = !code || code >= 400;
  const params = Object.entries(request.parameters || {});
  return el("li", { class: `webhook ${failed ? "failed" : ""}`, "data-kind": entry.kind },
    el("div", { class: "when" }, entry.timestamp, " · ", entry.kind === "document" ? "document" : "status callback", ` · ${entry.call_sid}`),
    el("div", {}, el("strong", {}, request.method), " ", el("span", { class: "mono" }, request.url)),
    el("div", {}, "→ ", el("strong", { class: failed ? "error" : "" }, code ? `HTTP ${code}` : "no response"),
      ` in ${response.request_duration} ms`, response.content_type ? ` · ${response.content_type}` : ""),
    el("details", {}, el("summary", {}, `Parameters (${params.length})`),
      el("dl", { class: "facts" }, params.map(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]))),
    response.response_body ? el("details", {}, el("summary", {}, "Response body"), el("pre", { class: "message" }, response.response_body)) : null);
}

// One verb: its start with its attributes, and its outcome once it ended.
function verbItem(started, ended) {
  const data = started.data;
  const outcome = ended ? ended.data.outcome : "running";
  const failed = ["failed", "busy", "no-answer", "canceled"].includes(outcome);
  const took = ended ? ` in ${((Date.parse(ended.timestamp) - Date.parse(started.timestamp)) / 1000).toFixed(2)} s` : "";
  const attributes = Object.entries(data.attributes || {});
  return el("li", { class: `verb ${failed ? "failed" : ""}`, "data-verb": data.verb, "data-outcome": outcome },
    el("div", { class: "when" }, started.timestamp, ` · line ${data.line} · ${started.call_sid}`),
    el("div", {}, el("strong", {}, `<${data.verb}>`), " ",
      attributes.map(([name, value]) => el("span", { class: "attr mono" }, `${name}="${value}"`))),
    el("div", {}, "→ ", el("strong", { class: failed ? "error" : "" }, outcome), took));
}

// Webhooks and verbs in the order they happened; a verb's end joins its start.
function timeline(entries) {
  const items = [];
  const running = new Map();
  for (const entry of entries) {
    if (entry.kind === "document" || entry.kind === "callback") {
      items.push(() => webhookItem(entry));
    } else if (entry.kind === "verb" && entry.data.event === "started") {
      const slot = { started: entry, ended: null };
      running.set(`${entry.call_sid} ${entry.data.verb} ${entry.data.line}`, slot);
      items.push(() => verbItem(slot.started, slot.ended));
    } else if (entry.kind === "verb" && entry.data.event === "ended") {
      const key = `${entry.call_sid} ${entry.data.verb} ${entry.data.line}`;
      const slot = running.get(key);
      if (slot) { slot.ended = entry; running.delete(key); }
    }
  }
  if (!items.length) return el("p", { class: "empty" }, "No request to the application and no verb was captured for this call.");
  return el("ol", { class: "timeline" }, items.map((make) => make()));
}

// Each leg's media facts, captured when the leg ended.
function media(entries) {
  const legs = entries.filter((entry) => entry.kind === "media");
  if (!legs.length) return el("p", { class: "empty" }, "No media facts yet (they are kept when a leg ends).");
  const number = (value, digits) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
  return el("table", { class: "media" },
    el("thead", {}, el("tr", {}, ["Leg", "Codec", "Packets sent", "Packets received", "Lost", "Loss", "Jitter", "Round trip", "MOS"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, legs.map(({ call_sid, data }) => el("tr", { "data-call-sid": call_sid },
      el("td", {}, callLink(call_sid)),
      el("td", {}, data.codec),
      el("td", {}, String(data.packets_sent)),
      el("td", {}, String(data.packets_received)),
      el("td", {}, String(data.packets_lost)),
      el("td", {}, `${number(data.loss_permille / 10, 1)} %`),
      el("td", {}, `${number(data.jitter_ms, 1)} ms`),
      el("td", {}, data.round_trip_ms === null || data.round_trip_ms === undefined ? "no RTCP" : `${number(data.round_trip_ms, 1)} ms`),
      el("td", { class: "mos" }, data.mos === null || data.mos === undefined ? "–" : number(data.mos, 2)),
    ))));
}

function facts(call) {
  const rows = [
    ["Call SID", call.sid], ["Parent", call.parent_call_sid], ["From", call.from], ["To", call.to],
    ["Direction", call.direction], ["Status", call.status], ["Started", call.start_time],
    ["Ended", call.end_time], ["Duration", call.duration ? `${call.duration} s` : null],
  ];
  return el("dl", { class: "facts" }, rows.filter(([, v]) => v).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function errors(call, children, notifications) {
  const boxes = [];
  for (const leg of [call, ...children]) {
    if (leg.error_code) boxes.push(el("div", { class: "error-box", role: "alert" },
      el("strong", {}, `Error ${leg.error_code}`), ` on ${leg.sid}: ${explain(leg.error_code)}`,
      leg.error_message ? el("div", { class: "mono" }, leg.error_message) : null));
  }
  for (const n of notifications) {
    boxes.push(el("div", { class: n.log === "0" ? "error-box" : "warn-box" },
      el("strong", {}, `${n.log === "0" ? "Error" : "Warning"} ${n.error_code}`), `: ${explain(n.error_code)}`,
      el("div", { class: "mono" }, n.message_text || "")));
  }
  return boxes.length ? boxes : [el("p", { class: "empty" }, "No error.")];
}

async function callPage(main, sid) {
  main.replaceChildren(el("h1", {}, "Call ", el("span", { class: "mono" }, sid)), el("p", {}, "Loading…"));
  let call;
  try {
    call = await api(`${ROOT}/Calls/${encodeURIComponent(sid)}.json`);
  } catch (error) {
    main.replaceChildren(el("h1", {}, "Call ", el("span", { class: "mono" }, sid)), el("p", { class: "error" }, error.message));
    return;
  }
  const [children, messages, entries, notifications, recordings] = await Promise.all([
    allPages(`${ROOT}/Calls.json?ParentCallSid=${encodeURIComponent(sid)}&PageSize=1000`, "calls", 1000),
    allPages(`${ROOT}/Calls/${encodeURIComponent(sid)}/Sip.json?PageSize=1000`, "messages", MAX_LADDER_MESSAGES),
    allPages(`${ROOT}/Calls/${encodeURIComponent(sid)}/Timeline.json?PageSize=1000`, "entries", 20000),
    allPages(`${ROOT}/Calls/${encodeURIComponent(sid)}/Notifications.json?PageSize=1000`, "notifications", 1000),
    allPages(`${ROOT}/Calls/${encodeURIComponent(sid)}/Recordings.json?PageSize=1000`, "recordings", 1000),
  ]);
  const detail = el("section", { id: "message", "aria-live": "polite" }, el("p", { class: "empty" }, "Select a message in the ladder (Tab, then Enter) to see it whole."));
  main.replaceChildren(...[
    el("h1", {}, "Call ", el("span", { class: "mono" }, sid), " ", status(call.status)),
    el("section", { id: "summary" }, el("h2", {}, "Summary"), facts(call)),
    el("section", { id: "errors" }, el("h2", {}, "Errors"), errors(call, children, notifications)),
    children.length ? el("section", { id: "legs" }, el("h2", {}, `Child legs (${children.length})`), callsTable(children, "")) : null,
    el("div", { class: "columns" },
      el("section", { id: "ladder" }, el("h2", {}, `SIP ladder (${messages.length} messages)`), ladder(messages, detail)),
      el("div", {}, detail,
        el("section", { id: "timeline" }, el("h2", {}, "Timeline: webhooks, documents and verbs"), timeline(entries)))),
    el("section", { id: "media" }, el("h2", {}, "Media"), media(entries)),
    recordings.length ? el("section", { id: "recordings" }, el("h2", {}, "Recordings"),
      recordings.map((r) => el("div", {}, el("span", { class: "mono" }, r.sid), ` ${r.duration || "?"} s `,
        el("audio", { controls: true, preload: "none", src: `${ROOT}/Recordings/${encodeURIComponent(r.sid)}.wav` })))) : null,
  ].filter(Boolean));
}

// ---- Rooms, queues and registrations: tables read from the REST API, refreshed by themselves.

function table(headers, rows, empty) {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell) => el("td", {}, cell))))));
}

async function roomsView(section) {
  const page = await api(`${ROOT}/Conferences.json?Status=in-progress&PageSize=200`);
  const rooms = await Promise.all(page.conferences.map(async (room) => {
    const people = await api(`${ROOT}/Conferences/${encodeURIComponent(room.sid)}/Participants.json?PageSize=200`);
    return [room, people.participants];
  }));
  section.replaceChildren(
    el("h2", {}, `Open rooms (${rooms.length})`),
    table(["Room", "Conference", "Participants", "Since"], rooms.map(([room, people]) => [
      room.friendly_name,
      el("span", { class: "mono" }, room.sid),
      people.length ? el("ul", { class: "plain" }, people.map((p) => el("li", {}, callLink(p.call_sid),
        p.label ? ` ${p.label}` : "", p.muted ? " · muted" : "", p.hold ? " · on hold" : ""))) : "none",
      room.date_created,
    ]), "No room is open."));
}

async function queuesView(section) {
  const page = await api(`${ROOT}/Queues.json?PageSize=1000`);
  const queues = await Promise.all(page.queues.map(async (queue) => {
    const members = await api(`${ROOT}/Queues/${encodeURIComponent(queue.sid)}/Members.json?PageSize=1000`);
    return [queue, members.queue_members];
  }));
  section.replaceChildren(
    el("h2", {}, `Queues (${queues.length})`),
    table(["Queue", "Waiting", "Max size", "Average wait", "Members"], queues.map(([queue, members]) => [
      queue.friendly_name,
      String(queue.current_size),
      String(queue.max_size),
      `${queue.average_wait_time} s`,
      members.length ? el("ol", { class: "plain" }, members.map((m) => el("li", {}, callLink(m.call_sid), ` since ${m.date_enqueued}`))) : "none",
    ]), "No queue exists."));
}

function registration(trunk) {
  const state = el("span", { class: `status ${trunk.registration_status}` }, trunk.registration_status);
  if (trunk.registration_status === "registered") return [state, ` for ${trunk.registration_expires} s`];
  if (trunk.registration_status === "failed") {
    return [state, el("div", { class: "error" }, `${trunk.registration_failure_status || "no answer"}: ${trunk.registration_failure_reason || ""}`),
      el("div", {}, `next attempt in ${trunk.registration_retry_in} s`)];
  }
  return [state];
}

async function registrationsView(section) {
  const [page, bindings] = await Promise.all([
    api(`${ROOT}/Trunks.json?PageSize=1000`),
    api(`${ROOT}/SIP/Registrations.json?PageSize=1000`),
  ]);
  section.replaceChildren(
    el("h2", {}, `Registered phones (${bindings.registrations.length})`),
    table(["Address of record", "Contact", "Expires in", "User agent", "Source"], bindings.registrations.map((r) => [
      el("span", { class: "mono" }, r.address_of_record),
      el("span", { class: "mono" }, r.contact),
      `${r.expires} s`,
      r.user_agent || "",
      el("span", { class: "mono" }, `${r.transport} ${r.source}`),
    ]), "No phone is registered."),
    el("h2", {}, `Trunks (${page.trunks.length})`),
    table(["Trunk", "Origin", "Host", "Transport", "Account", "Registration"], page.trunks.map((trunk) => [
      el("span", { class: "mono" }, trunk.sid),
      trunk.origin,
      el("span", { class: "mono" }, `${trunk.host}:${trunk.port}`),
      trunk.transport,
      trunk.username || "",
      registration(trunk),
    ]), "No trunk is configured."));
}

const VIEWS = {
  rooms: ["Rooms", roomsView],
  queues: ["Queues", queuesView],
  registrations: ["Registrations", registrationsView],
};

function showView(main, name) {
  const [title, view] = VIEWS[name];
  document.title = `${title} · callml console`;
  const section = el("section", { id: name, "aria-live": "polite" }, el("p", {}, "Loading…"));
  main.replaceChildren(el("h1", {}, title), section);
  const refresh = () => view(section).catch((error) => section.replaceChildren(el("p", { class: "error" }, error.message)));
  refresh();
  refreshing = setInterval(refresh, LIVE_EVERY_MS);
}

function route() {
  document.getElementById("account").textContent = ACCOUNT;
  const main = document.getElementById("main");
  if (refreshing) clearInterval(refreshing);
  refreshing = null;
  const view = location.hash.slice(1);
  for (const link of document.querySelectorAll("nav a")) {
    const current = link.getAttribute("href") === `/console${location.hash}` && location.pathname === "/console";
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  const match = location.pathname.match(/^\/console\/calls\/([^/]+)$/);
  if (match) {
    document.title = `${decodeURIComponent(match[1])} · callml console`;
    callPage(main, decodeURIComponent(match[1]));
  } else if (Object.hasOwn(VIEWS, view)) {
    showView(main, view);
  } else {
    callsPage(main);
  }
  main.focus();
}

window.addEventListener("hashchange", route);
route();
