// The knowledge-base page: read for every agent, edit for managers. Text goes in as text only.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const manager = document.getElementById("kb").dataset.manager === "yes";
  const $ = (id) => document.getElementById(id);
  let entries = [];

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function say(id, message) {
    $(id).textContent = message;
    $(id).hidden = !message;
  }

  async function api(method, path, body, isForm) {
    const headers = { Accept: "application/json", "X-CSRF-Token": csrf };
    if (body !== undefined && !isForm) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : (isForm ? body : JSON.stringify(body)),
    });
    if (response.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    return data;
  }

  function render() {
    $("kb-entries").replaceChildren(...entries.map((entry) => {
      const item = el("li", "kb-entry");
      item.dataset.id = entry.id;
      const head = el("div", "kb-head");
      head.append(el("strong", "", entry.title));
      if (entry.keywords) head.append(el("span", "muted", ` (${entry.keywords})`));
      if (!entry.embedded) head.append(el("span", "badge", "indexing…"));
      item.append(head, el("div", "text", entry.body));
      if (manager) {
        const actions = el("div", "composer-actions");
        const edit = el("button", "secondary", "Edit");
        edit.type = "button";
        edit.addEventListener("click", () => startEdit(entry));
        const remove = el("button", "secondary", "Delete");
        remove.type = "button";
        remove.addEventListener("click", () => removeEntry(entry));
        actions.append(edit, remove);
        item.append(actions);
      }
      return item;
    }));
  }

  async function load() {
    entries = (await api("GET", "/api/knowledge")).entries;
    render();
  }

  function startEdit(entry) {
    $("kb-id").value = entry.id;
    $("kb-title").value = entry.title;
    $("kb-keywords").value = entry.keywords;
    $("kb-body").value = entry.body;
    $("kb-save").textContent = "Save";
    $("kb-cancel").hidden = false;
    $("kb-title").focus();
  }

  function resetForm() {
    $("kb-form").reset();
    $("kb-id").value = "";
    $("kb-save").textContent = "Add entry";
    $("kb-cancel").hidden = true;
  }

  async function removeEntry(entry) {
    if (!window.confirm(`Delete "${entry.title}"?`)) return;
    try {
      await api("DELETE", `/api/knowledge/${entry.id}`);
      await load();
    } catch (error) { say("kb-error", error.message); }
  }

  if (manager) {
    $("kb-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { title: $("kb-title").value, keywords: $("kb-keywords").value, body: $("kb-body").value };
      try {
        if ($("kb-id").value) await api("PUT", `/api/knowledge/${$("kb-id").value}`, body);
        else await api("POST", "/api/knowledge", body);
        resetForm();
        say("kb-error", "");
        await load();
      } catch (error) { say("kb-error", error.message); }
    });
    $("kb-cancel").addEventListener("click", resetForm);
    $("kb-import").addEventListener("submit", async (e) => {
      e.preventDefault();
      const file = $("kb-file").files[0];
      if (!file) return;
      const form = new FormData();
      form.append("file", file);
      try {
        const result = await api("POST", "/api/knowledge/import", form, true);
        say("kb-notice", `Imported: ${result.added} added, ${result.updated} updated.`);
        say("kb-error", "");
        await load();
      } catch (error) { say("kb-error", error.message); }
    });
  }
  load().catch((error) => say("kb-error", error.message));
})();
