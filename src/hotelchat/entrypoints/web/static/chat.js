// HotelChat guest web chat. The guest's identity is a signed token kept in this browser's
// localStorage; bringing it back shows their history. Every text is inserted as text, never HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const slug = $("chat").dataset.hotel;
  const storageKey = `hotelchat:${slug}`;
  const state = { token: localStorage.getItem(storageKey), lastSeen: 0, socket: null, lastTyped: 0 };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    node.className = className;
    node.textContent = text;
    return node;
  }

  function showError(message) {
    $("chat-error").textContent = message;
    $("chat-error").hidden = !message;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`/chat/${encodeURIComponent(slug)}${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    return data;
  }

  function render(m) {
    const who = m.author === "guest" ? "guest" : m.author === "agent" ? "agent" : "ai";
    const item = el("li", `bubble ${who}`, "");
    item.dataset.id = m.id;
    if (m.body) item.append(el("div", "text", m.body));
    if (m.media && m.media.length) {
      const box = el("div", "media", "");
      for (const f of m.media) {
        if (f.kind === "photo") box.append(photo(f.url));
      }
      item.append(box);
    }
    return item;
  }

  // The guest's files need their token, which an <img> cannot send: fetch, then show a blob.
  function photo(url) {
    const img = el("img", "media-photo", "");
    img.alt = "Photo";
    fetch(url, { headers: { Authorization: `Bearer ${state.token}` } })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((blob) => { img.src = URL.createObjectURL(blob); })
      .catch(() => { img.alt = "Photo (could not load)"; });
    return img;
  }

  async function uploadPhoto(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    const response = await fetch(`/chat/${encodeURIComponent(slug)}/uploads`, {
      method: "POST", body: form,
      headers: { Accept: "application/json", Authorization: `Bearer ${state.token}` },
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    return data.token;
  }

  function add(messages) {
    const list = $("chat-messages");
    for (const m of messages) {
      if (list.querySelector(`li[data-id="${m.id}"]`)) continue;
      list.append(render(m));
      state.lastSeen = Math.max(state.lastSeen, m.id);
    }
    list.scrollTop = list.scrollHeight;
    window.scrollTo(0, document.body.scrollHeight);
  }

  async function catchUp() {
    const data = await api("GET", `/messages?after=${state.lastSeen}&limit=100`);
    add(data.messages);
    if (data.messages.length === 100) await catchUp();
  }

  async function send(text, file) {
    const clientId = crypto.randomUUID();
    const attachments = file ? [await uploadPhoto(file)] : [];
    for (let attempt = 0; ; attempt++) {
      try {
        const message = { body: text, client_id: clientId };
        if (attachments.length) message.attachments = attachments;
        await api("POST", "/messages", message);
        return;
      } catch (error) {
        if (attempt >= 2 || !(error instanceof TypeError)) throw error;
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
    }
  }

  function connect() {
    const socket = io("/guest", { transports: ["websocket"], auth: { token: state.token } });
    state.socket = socket;
    socket.on("connect", () => {
      $("chat-status").textContent = "online";
      catchUp().catch((e) => showError(e.message));
    });
    socket.on("disconnect", () => { $("chat-status").textContent = "reconnecting…"; });
    socket.on("message", () => catchUp().catch((e) => showError(e.message)));
    socket.on("ai_delta", (event) => {
      const box = $("chat-streaming");
      if (box.hidden) { box.textContent = ""; box.hidden = false; }
      box.textContent += event.text;
    });
    for (const name of ["ai_done", "ai_aborted"]) {
      socket.on(name, () => { $("chat-streaming").hidden = true; });
    }
    socket.on("typing", () => {
      $("chat-typing").hidden = false;
      clearTimeout(state.typingTimer);
      state.typingTimer = setTimeout(() => { $("chat-typing").hidden = true; }, 3000);
    });
  }

  // A reservation link the hotel sent (`#r=…`, or `?r=…`). Once the session has taken it, it
  // is cleared from the address bar so it is not bookmarked, shared or sent again.
  function reservationLink() {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("r");
    return fromHash || new URL(location.href).searchParams.get("r") || undefined;
  }

  function clearReservationLink() {
    const url = new URL(location.href);
    url.searchParams.delete("r");
    history.replaceState(null, "", url.pathname + url.search);
  }

  async function start() {
    const reservation = reservationLink();
    const session = await api("POST", "/session", reservation ? { reservation } : {});
    if (reservation) clearReservationLink();
    state.token = session.token;
    localStorage.setItem(storageKey, session.token);
    connect();
  }

  $("chat-composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("chat-body");
    const text = input.value.trim();
    const file = $("chat-photo").files[0];
    if (!text && !file) return;
    input.value = "";
    try {
      await send(text, file);
      $("chat-photo").value = "";
      showError("");
      await catchUp();
    } catch (error) {
      input.value = text;
      showError(error.message);
    }
  });
  $("chat-body").addEventListener("input", () => {
    const now = Date.now();
    if (state.socket && state.socket.connected && now - state.lastTyped > 1500) {
      state.lastTyped = now;
      state.socket.emit("typing", {});
    }
  });

  start().catch((error) => showError(error.message));
})();
