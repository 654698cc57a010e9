// HotelChat agent dashboard. Guest and AI text is only ever inserted as text (textContent),
// never as HTML. Live updates come over Socket.IO; after any (re)connect the page catches up by
// fetching what it missed since the last message id it has seen, so a dropped connection or a
// Redis restart loses nothing on screen.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const me = Number(document.getElementById("me").dataset.agentId);
  const $ = (id) => document.getElementById(id);
  const state = {
    filter: "",
    conversations: new Map(), // id -> summary
    open: null, // conversation id
    lastSeen: 0, // last message id shown in the open conversation
    firstSeen: null,
    typingTimer: null,
    lastTyped: 0,
  };

  const LABELS = {
    ai: "AI answering",
    needs_human: "Needs a human",
    agent: "With an agent",
    resolved: "Resolved",
  };
  const TICKS = {
    pending: "sending…", sending: "sending…", accepted: "✓", queued: "✓", sent: "✓",
    delivered: "✓✓", read: "✓✓ read", failed: "failed", undelivered: "not delivered",
  };
  // Statuses only move forwards (as on the server), whatever order events and fetches arrive in.
  const RANK = {
    received: 0, pending: 0, sending: 1, accepted: 2, queued: 3, sent: 4, delivered: 5,
    undelivered: 6, failed: 6, read: 7,
  };
  const statuses = new Map(); // message id -> furthest status seen
  const partStatuses = new Map(); // message id -> furthest status of each part, in order

  function furthestParts(id, parts) {
    const known = partStatuses.get(id) || [];
    const merged = (parts || []).map((s, i) =>
      known[i] !== undefined && RANK[known[i]] >= RANK[s] ? known[i] : s);
    if (merged.length) partStatuses.set(id, merged);
    return partStatuses.get(id) || [];
  }

  // A reply sent in parts (over 1,600 characters) shows one tick per part.
  function renderParts(holder, id, parts) {
    const ticks = furthestParts(id, parts);
    holder.replaceChildren(...ticks.map((s, i) =>
      el("span", `part-tick status-${s}`, `${i + 1}/${ticks.length} ${TICKS[s] || s}`)));
    holder.hidden = ticks.length === 0;
  }

  function furthest(id, status) {
    const known = statuses.get(id);
    if (known === undefined || RANK[status] > RANK[known]) statuses.set(id, status);
    return statuses.get(id);
  }

  async function api(method, path, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body);
    } else if (method !== "GET") {
      options.headers["X-CSRF-Token"] = csrf;
    }
    const response = await fetch(path, options);
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("logged out");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    }
    return data;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function time(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // --- conversation list ------------------------------------------------------------------

  function renderList() {
    const list = $("conversations");
    const rows = [...state.conversations.values()]
      .filter((c) => !state.filter || c.state === state.filter)
      .sort((a, b) => (a.last_message_at < b.last_message_at ? 1 : -1));
    list.replaceChildren(...rows.map(renderRow));
    $("empty-list").hidden = rows.length > 0;
  }

  function renderRow(c) {
    const item = el("li", "conversation-row" + (c.id === state.open ? " open" : ""));
    item.dataset.id = c.id;
    item.tabIndex = 0;
    const top = el("div", "row-top");
    top.append(el("span", "guest", c.guest_name || c.guest_phone || "Guest"));
    top.append(el("span", `channel ${c.channel}`, c.channel === "whatsapp" ? "WhatsApp" : "Web"));
    if (c.unread > 0) top.append(el("span", "unread", c.unread));
    const bottom = el("div", "row-bottom");
    bottom.append(el("span", `badge state-${c.state}`, LABELS[c.state] || c.state));
    bottom.append(el("span", "preview", c.preview));
    bottom.append(el("span", "when", time(c.last_message_at)));
    item.append(top, bottom);
    item.addEventListener("click", () => openConversation(c.id));
    item.addEventListener("keydown", (e) => { if (e.key === "Enter") openConversation(c.id); });
    return item;
  }

  async function loadList() {
    const data = await api("GET", "/api/conversations?limit=200");
    state.conversations = new Map(data.conversations.map((c) => [c.id, c]));
    renderList();
    if (state.open && state.conversations.has(state.open)) renderHead(state.conversations.get(state.open));
  }

  // --- one conversation ---------------------------------------------------------------------

  function renderHead(c) {
    $("guest-name").textContent = c.guest_name || c.guest_phone || "Guest";
    $("guest-channel").textContent = c.channel === "whatsapp" ? "WhatsApp" : "Web chat";
    $("guest-phone").textContent = c.channel === "whatsapp" && c.guest_phone ? c.guest_phone : "";
    const state_ = $("state");
    state_.textContent = LABELS[c.state] || c.state;
    state_.className = `badge state-${c.state}`;
    $("owner").textContent = c.state === "agent" && c.assigned_agent_name ? `· ${c.assigned_agent_name}` : "";
    // The guest sent STOP (or another opt-out keyword): no templates or journeys; replies to
    // their own messages are still allowed.
    const optedOut = $("opted-out");
    optedOut.hidden = !c.opted_out_at;
    optedOut.textContent = c.opted_out_at ? "Opted out" : "";
    optedOut.title = c.opted_out_at
      ? `Opted out of proactive messages since ${new Date(c.opted_out_at).toLocaleString()}` : "";
    const handoff = $("handoff");
    handoff.hidden = !(c.state === "needs_human" && c.handoff_reason);
    handoff.textContent = c.handoff_reason ? `Handed to staff: ${c.handoff_reason}` : "";
    renderWindow(c);
    const mine = c.state === "agent" && c.assigned_agent_id === me;
    const byOther = c.state === "agent" && c.assigned_agent_id !== me;
    for (const button of document.querySelectorAll(".actions button")) {
      const action = button.dataset.action;
      button.hidden =
        (action === "takeover" && (mine || c.state === "resolved")) ||
        (action === "handback" && (c.state === "ai" || c.state === "resolved")) ||
        (action === "resolve" && c.state === "resolved") ||
        (action === "reopen" && c.state !== "resolved");
      button.disabled = byOther && action !== "reopen";
    }
    $("send").disabled = byOther;
    // templates.js offers templates when WhatsApp's window is closed.
    document.dispatchEvent(new CustomEvent("hc:conversation", { detail: c }));
  }

  function renderWindow(c) {
    const box = $("window");
    if (c.channel !== "whatsapp") { box.textContent = ""; return; }
    if (!c.window_closes_at) { box.textContent = "· WhatsApp window closed"; return; }
    const left = new Date(c.window_closes_at) - new Date();
    if (left <= 0) { box.textContent = "· WhatsApp 24-hour window closed: the guest must write first"; return; }
    const hours = Math.floor(left / 3600000);
    const minutes = Math.floor((left % 3600000) / 60000);
    box.textContent = `· WhatsApp window closes in ${hours} h ${minutes} min`;
  }

  function renderMessage(m) {
    const who = m.direction === "internal" ? "note" : m.author;
    const item = el("li", `bubble ${who}`);
    item.dataset.id = m.id;
    const meta = el("div", "meta");
    const label =
      m.direction === "internal" ? `Internal note · ${m.agent_name || "agent"}` :
      m.author === "guest" ? "Guest" :
      m.author === "agent" ? (m.agent_name || "Agent") :
      m.author === "ai" ? (m.responder === "knowledge_base" ? "AI (knowledge base)" : "AI") : "System";
    meta.append(el("span", "who", label), el("span", "when", time(m.created_at)));
    if (m.direction === "outbound") {
      const status = furthest(m.id, m.status);
      meta.append(el("span", `tick status-${status}`, TICKS[status] || status));
    }
    item.append(meta);
    if (m.body) item.append(el("div", "text", m.body));
    if (m.media && m.media.length) item.append(renderMedia(m.media));
    if (m.direction === "outbound") {
      const holder = el("div", "parts");
      renderParts(holder, m.id, m.parts);
      item.append(holder);
    }
    if (m.sources && m.sources.length) {
      // What the assistant's reply was grounded in, for staff to check it.
      const sources = el("div", "sources", "Sources: ");
      sources.append(m.sources.map((s) => `${s.title} (${Number(s.score).toFixed(2)})`).join(" · "));
      item.append(sources);
    }
    if (m.tool_calls && m.tool_calls.length) {
      // What the assistant did on the way (looked up a booking, filed a request…).
      const actions = el("div", "sources", "Actions: ");
      actions.append(m.tool_calls.map((t) => `${t.name}: ${t.outcome}`).join(" · "));
      item.append(actions);
    }
    return item;
  }

  // A message's files: photos inline, other files as download links, and what became of
  // those that could not be stored (shown to staff as the server states it).
  function renderMedia(media) {
    const box = el("div", "media");
    for (const f of media) {
      if (f.state === "stored" && f.kind === "photo") {
        const img = el("img", "media-photo");
        img.src = f.url;
        img.alt = "Photo";
        img.loading = "lazy";
        const link = el("a", "media-link");
        link.href = f.url;
        link.target = "_blank";
        link.rel = "noopener";
        link.append(img);
        box.append(link);
      } else if (f.state === "stored") {
        const link = el("a", "media-file", `${f.kind}${f.filename ? `: ${f.filename}` : ""}`);
        link.href = f.url;
        link.download = f.filename || "";
        box.append(link);
      } else if (f.state === "pending") {
        box.append(el("span", "media-pending", `${f.kind}: downloading…`));
      } else {
        box.append(el("span", "media-problem", `${f.kind} ${f.state}: ${f.error || "unknown reason"}`));
      }
    }
    return box;
  }

  async function refreshMessage(id) {
    const data = await api("GET", `/api/conversations/${state.open}/messages?after=${id - 1}&limit=1`);
    const m = data.messages.find((x) => x.id === id);
    const old = $("messages").querySelector(`li[data-id="${id}"]`);
    if (m && old) old.replaceWith(renderMessage(m));
  }

  async function uploadAttachment(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    const response = await fetch(`/api/conversations/${state.open}/uploads`, {
      method: "POST", body: form, credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf },
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    return data.token;
  }

  function addMessages(messages, { prepend = false } = {}) {
    const list = $("messages");
    const nodes = [];
    for (const m of messages) {
      if (list.querySelector(`li[data-id="${m.id}"]`)) continue;
      nodes.push(renderMessage(m));
      state.lastSeen = Math.max(state.lastSeen, m.id);
      state.firstSeen = state.firstSeen === null ? m.id : Math.min(state.firstSeen, m.id);
    }
    if (prepend) list.prepend(...nodes); else list.append(...nodes);
    if (!prepend) $("timeline").scrollTop = $("timeline").scrollHeight;
  }

  async function catchUp() {
    if (!state.open) return;
    const id = state.open;
    const data = await api("GET", `/api/conversations/${id}/messages?after=${state.lastSeen}&limit=100`);
    if (state.open !== id) return;
    addMessages(data.messages);
    if (data.messages.length === 100) return catchUp();
    if (data.messages.length) {
      api("POST", `/api/conversations/${id}/read`, { up_to: state.lastSeen }).catch(() => {});
    }
  }

  async function openConversation(id) {
    state.open = id;
    state.lastSeen = 0;
    state.firstSeen = null;
    $("messages").replaceChildren();
    $("streaming").hidden = true;
    $("typing").hidden = true;
    showError("");
    $("placeholder").hidden = true;
    $("conversation").hidden = false;
    history.replaceState(null, "", `/dashboard?c=${id}`);
    const summary = await api("GET", `/api/conversations/${id}`);
    state.conversations.set(id, summary);
    renderHead(summary);
    renderList();
    if (socket.connected) socket.emit("watch", { conversation_id: id });
    const data = await api("GET", `/api/conversations/${id}/messages?limit=50`);
    addMessages(data.messages);
    $("older").hidden = data.messages.length < 50;
    if (data.messages.length) {
      api("POST", `/api/conversations/${id}/read`, { up_to: state.lastSeen }).catch(() => {});
    }
  }

  async function loadOlder() {
    if (!state.open || state.firstSeen === null) return;
    const data = await api("GET", `/api/conversations/${state.open}/messages?before=${state.firstSeen}&limit=50`);
    addMessages(data.messages, { prepend: true });
    $("older").hidden = data.messages.length < 50;
  }

  // --- agent actions ------------------------------------------------------------------------

  async function submit(kind) {
    const text = $("body").value.trim();
    const file = kind === "reply" ? $("attach").files[0] : undefined;
    if ((!text && !file) || !state.open) return;
    const clientId = crypto.randomUUID();
    const path = `/api/conversations/${state.open}/${kind === "note" ? "notes" : "messages"}`;
    $("send").disabled = $("note").disabled = true;
    try {
      const attachments = file ? [await uploadAttachment(file)] : [];
      // A retry with the same client id stores the message once.
      for (let attempt = 0; ; attempt++) {
        try {
          const message = { body: text, client_id: clientId };
          if (attachments.length) message.attachments = attachments;
          const result = await api("POST", path, message);
          if (result.conversation) {
            state.conversations.set(state.open, result.conversation);
            renderHead(result.conversation);
            renderList();
          }
          break;
        } catch (error) {
          if (attempt >= 2 || !(error instanceof TypeError)) throw error;
          await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
        }
      }
      $("body").value = "";
      $("attach").value = "";
      showError("");
      await catchUp();
    } catch (error) {
      showError(error.message);
    } finally {
      $("send").disabled = $("note").disabled = false;
    }
  }

  async function act(action) {
    if (!state.open) return;
    try {
      const summary = await api("POST", `/api/conversations/${state.open}/${action}`);
      state.conversations.set(summary.id, summary);
      renderHead(summary);
      renderList();
      showError("");
    } catch (error) {
      showError(error.message);
    }
  }

  // --- service requests and the assistant's budget ------------------------------------------

  const KINDS = {
    housekeeping: "Housekeeping", late_checkout: "Late check-out", early_checkin: "Early check-in",
    taxi: "Taxi", maintenance: "Maintenance", room_service: "Room service",
    amenities: "Amenities", other: "Other",
  };
  const requests = new Map(); // id -> request, as the API and the `service_request` event send it
  let arriving = null; // requests from events that came while the list was being fetched
  const assistant = { dirty: false }; // dirty: the settings form has edits not saved yet

  function say(id, message) {
    const box = $(id);
    if (!box) return;
    box.textContent = message;
    box.hidden = !message;
  }

  function age(iso) {
    const minutes = Math.max(0, Math.floor((Date.now() - new Date(iso)) / 60000));
    if (minutes < 1) return "just now";
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.floor(minutes / 60);
    return hours < 24 ? `${hours} h ago` : `${Math.floor(hours / 24)} d ago`;
  }

  function renderRequests() {
    const open = [...requests.values()]
      .filter((r) => r.status === "open")
      .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    $("requests").replaceChildren(...open.map(renderRequest));
    $("no-requests").hidden = open.length > 0;
    $("requests-count").textContent = String(open.length);
    $("requests-count").hidden = open.length === 0;
  }

  function renderRequest(r) {
    const item = el("li", "request");
    item.dataset.id = r.id;
    const top = el("div", "row-top");
    top.append(
      el("span", "badge kind", KINDS[r.kind] || r.kind),
      el("span", "guest", r.guest_name || "Guest"),
      el("span", "when", age(r.created_at)),
    );
    const actions = el("div", "request-actions");
    const link = el("a", "open-link", "Open conversation");
    link.href = `/dashboard?c=${Number(r.conversation_id)}`;
    link.addEventListener("click", (e) => {
      e.preventDefault();
      openConversation(Number(r.conversation_id)).catch((error) => showError(error.message));
    });
    const done = el("button", "", "Done");
    done.type = "button";
    done.dataset.close = "done";
    done.addEventListener("click", () => closeRequest(r.id, "done", item));
    const cancel = el("button", "secondary", "Cancel");
    cancel.type = "button";
    cancel.dataset.close = "cancelled";
    cancel.addEventListener("click", () => closeRequest(r.id, "cancelled", item));
    actions.append(link, done, cancel);
    item.append(top, el("div", "details", r.details), actions);
    return item;
  }

  // A request is only ever closed once, so a closed state beats an open one whatever order the
  // event and a fetch arrive in.
  function mergeRequest(r) {
    const known = requests.get(r.id);
    if (known && known.status !== "open" && r.status === "open") return;
    requests.set(r.id, r);
  }

  async function loadRequests() {
    const arrived = [];
    arriving = arrived;
    try {
      const data = await api("GET", "/api/service-requests?status=open&limit=200");
      requests.clear();
      for (const r of data.requests) mergeRequest(r);
      for (const r of arrived) mergeRequest(r);
    } finally {
      if (arriving === arrived) arriving = null;
    }
    renderRequests();
  }

  async function closeRequest(id, status, item) {
    for (const button of item.querySelectorAll("button")) button.disabled = true;
    try {
      const closed = await api("POST", `/api/service-requests/${id}/close`, { status });
      mergeRequest(closed);
      say("requests-error", "");
      renderRequests();
    } catch (error) {
      say("requests-error", error.message);
      await loadRequests().catch(() => {}); // closed by someone else, perhaps: show the truth
    }
  }

  function money(value) {
    return `$${Number(value).toFixed(2)}`;
  }

  // `spend` as the API and the `budget` event send it: {spent_usd, budget_usd, used}.
  function renderBudget(spend) {
    const banner = $("budget-banner");
    const used = spend.used;
    if (used === null || used === undefined || used < 0.8) {
      banner.hidden = true;
      banner.textContent = "";
    } else if (used >= 1) {
      banner.className = "budget-banner reached";
      banner.textContent = "AI budget reached: the assistant is paused and new conversations go " +
        "to staff until the budget is raised or the month turns";
      banner.hidden = false;
    } else {
      banner.className = "budget-banner warning";
      banner.textContent = `AI budget ${Math.floor(used * 100)} % used this month`;
      banner.hidden = false;
    }
    $("spend").textContent = spend.budget_usd === null || spend.budget_usd === undefined
      ? `AI spend this month: ${money(spend.spent_usd)} (no budget)`
      : `AI spend this month: ${money(spend.spent_usd)} of ${money(spend.budget_usd)}` +
        ` (${Math.floor((used || 0) * 100)} %)`;
  }

  function fillSettings(settings) {
    $("ai-enabled").checked = settings.ai_enabled;
    $("image-understanding").checked = settings.image_understanding;
    $("budget").value = settings.monthly_budget_usd === null ? "" : String(settings.monthly_budget_usd);
    $("context-tokens").value = String(settings.context_token_budget);
    $("model").value = settings.ai_model || "";
    $("model").placeholder = `default (${settings.default_model})`;
  }

  function showAssistant(data) {
    renderBudget(data.spend);
    if (!data.ai_enabled) $("spend").textContent += " · the assistant is off";
    if (data.settings && $("assistant-form") && !assistant.dirty) fillSettings(data.settings);
  }

  async function loadAssistant() {
    showAssistant(await api("GET", "/api/assistant"));
  }

  async function saveSettings() {
    const budget = $("budget").value.trim();
    const body = {
      ai_enabled: $("ai-enabled").checked,
      ai_model: $("model").value.trim() || null,
      monthly_budget_usd: budget === "" ? null : Number(budget),
      context_token_budget: Number($("context-tokens").value),
      image_understanding: $("image-understanding").checked,
    };
    $("assistant-save").disabled = true;
    try {
      assistant.dirty = false;
      showAssistant(await api("PUT", "/api/assistant", body));
      say("assistant-error", "");
      say("assistant-notice", "Saved.");
    } catch (error) {
      assistant.dirty = true;
      say("assistant-notice", "");
      say("assistant-error", error.message);
    } finally {
      $("assistant-save").disabled = false;
    }
  }

  // --- live updates ---------------------------------------------------------------------------

  const socket = io("/agent", { transports: ["websocket"], withCredentials: true });
  const presence = new Map();

  function setConnection(text, online) {
    const box = $("connection");
    box.textContent = text;
    box.dataset.state = online ? "online" : "offline";
  }

  socket.on("connect", async () => {
    setConnection("live", true);
    socket.emit("presence", { status: document.hidden ? "away" : "online" });
    if (state.open) socket.emit("watch", { conversation_id: state.open });
    try {
      await loadList();
      await catchUp();
      await loadRequests();
      await loadAssistant();
    } catch (error) {
      showError(error.message);
    }
  });
  socket.on("disconnect", () => setConnection("reconnecting…", false));
  socket.on("connect_error", () => setConnection("offline, retrying…", false));

  socket.on("conversation", (c) => {
    state.conversations.set(c.id, { ...state.conversations.get(c.id), ...c });
    renderList();
    if (c.id === state.open) renderHead(state.conversations.get(c.id));
  });
  socket.on("message", (event) => {
    if (event.conversation_id === state.open) catchUp().catch((e) => showError(e.message));
  });
  socket.on("media", (event) => {
    if (event.conversation_id === state.open) refreshMessage(event.id).catch((e) => showError(e.message));
  });
  socket.on("status", (event) => {
    if (event.conversation_id !== state.open) return;
    // Remembered even if the message is not on screen yet: its fetch may still be on the way.
    const status = furthest(event.id, event.status);
    const item = $("messages").querySelector(`li[data-id="${event.id}"] .tick`);
    if (item) {
      item.textContent = TICKS[status] || status;
      item.className = `tick status-${status}`;
    }
    if (event.parts) {
      const holder = $("messages").querySelector(`li[data-id="${event.id}"] .parts`);
      if (holder) renderParts(holder, event.id, event.parts);
      else furthestParts(event.id, event.parts);
    }
  });
  socket.on("ai_delta", (event) => {
    if (event.conversation_id !== state.open) return;
    const box = $("streaming");
    if (box.hidden) { box.textContent = ""; box.hidden = false; }
    box.textContent += event.text;
    $("timeline").scrollTop = $("timeline").scrollHeight;
  });
  for (const name of ["ai_done", "ai_aborted"]) {
    socket.on(name, (event) => {
      if (event.conversation_id === state.open) $("streaming").hidden = true;
    });
  }
  socket.on("service_request", (r) => {
    if (arriving) arriving.push(r);
    mergeRequest(r);
    renderRequests();
  });
  socket.on("budget", (spend) => {
    renderBudget(spend);
    loadAssistant().catch(() => {}); // the rest (the assistant on or off) as it now stands
  });
  socket.on("typing", (event) => {
    if (event.conversation_id !== state.open) return;
    const box = $("typing");
    box.textContent = event.guest ? "The guest is typing…" : `${event.name} is typing…`;
    box.hidden = false;
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(() => { box.hidden = true; }, 3000);
  });
  function renderPresence() {
    $("presence").textContent = [...presence.values()]
      .map((p) => `${p.name} (${p.status})`).join(", ");
  }
  socket.on("presence_list", (event) => {
    presence.clear();
    for (const agent of event.agents) presence.set(agent.agent_id, agent);
    renderPresence();
  });
  // Changes come batched per hotel: the agents that changed, as they are now.
  socket.on("presence", (event) => {
    for (const agent of event.agents) {
      if (agent.status === "offline") presence.delete(agent.agent_id);
      else presence.set(agent.agent_id, agent);
    }
    renderPresence();
  });
  setInterval(() => {
    if (socket.connected) socket.emit("presence", { status: document.hidden ? "away" : "online" });
  }, 30000);

  document.addEventListener("visibilitychange", () => {
    if (socket.connected) socket.emit("presence", { status: document.hidden ? "away" : "online" });
  });

  // --- wiring ---------------------------------------------------------------------------------

  $("composer").addEventListener("submit", (e) => { e.preventDefault(); submit("reply"); });
  $("note").addEventListener("click", () => submit("note"));
  $("older").addEventListener("click", () => loadOlder().catch((e) => showError(e.message)));
  $("body").addEventListener("input", () => {
    const now = Date.now();
    if (state.open && socket.connected && now - state.lastTyped > 1500) {
      state.lastTyped = now;
      socket.emit("typing", { conversation_id: state.open });
    }
  });
  $("body").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit("reply"); }
  });
  for (const button of document.querySelectorAll(".actions button")) {
    button.addEventListener("click", () => act(button.dataset.action));
  }
  for (const button of document.querySelectorAll(".filters button")) {
    button.addEventListener("click", () => {
      state.filter = button.dataset.filter;
      for (const other of document.querySelectorAll(".filters button")) other.classList.toggle("active", other === button);
      renderList();
    });
  }
  $("hotel-select").addEventListener("change", () => $("hotel-switch").submit());
  setInterval(() => {
    if (state.open && state.conversations.has(state.open)) renderWindow(state.conversations.get(state.open));
    renderRequests(); // their ages
    loadAssistant().catch(() => {}); // the spend between the 80 % and 100 % events
  }, 60000);
  if ($("assistant-form")) {
    $("assistant-form").addEventListener("input", () => { assistant.dirty = true; });
    $("assistant-form").addEventListener("submit", (e) => { e.preventDefault(); saveSettings(); });
  }

  document.addEventListener("hc:sent", (e) => {
    if (e.detail && e.detail.conversation) {
      state.conversations.set(e.detail.conversation.id, e.detail.conversation);
      renderHead(e.detail.conversation);
      renderList();
    }
    catchUp().catch((error) => showError(error.message));
  });
  const initial = Number(new URLSearchParams(location.search).get("c"));
  loadList()
    .then(() => { if (initial) return openConversation(initial); })
    .catch((error) => showError(error.message));
  loadRequests().catch((error) => say("requests-error", error.message));
  loadAssistant().catch(() => {});
})();
