// HotelChat dashboard: the template picker. Outside WhatsApp's 24-hour window (or after Twilio
// answered 63016) only an approved template reaches the guest: this offers the hotel's templates,
// the variables to fill in, a live preview, and the same checks the server makes (every
// variable given; no newline, tab or more than four spaces in a row; at most 200 characters
// each and 1,024 in all: https://www.twilio.com/docs/api/errors/21656). Text only ever goes in
// as textContent.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]{1,32})\s*\}\}/g;
  const BAD = /[\n\r\t]| {5,}/;
  const picker = { conversation: null, templates: [], limits: { body: 1024, variable: 200 } };

  function closed(c) {
    if (c.channel !== "whatsapp") return false;
    return !c.window_closes_at || new Date(c.window_closes_at) <= new Date();
  }

  function current() {
    return picker.templates.find((t) => t.content_sid === $("template-select").value);
  }

  function values() {
    const found = {};
    for (const input of $("template-variables").querySelectorAll("input")) {
      found[input.dataset.name] = input.value;
    }
    return found;
  }

  function render(body, given) {
    return body.replace(PLACEHOLDER, (whole, name) => (given[name] || "").trim() || whole);
  }

  function problems(template, given) {
    const found = [];
    for (const name of template.placeholders) {
      const value = given[name] || "";
      const input = $("template-variables").querySelector(`input[data-name="${name}"]`);
      let problem = "";
      if (!value.trim()) problem = `{{${name}}} is missing`;
      else if (value.length > picker.limits.variable) problem = `{{${name}}} is longer than ${picker.limits.variable} characters`;
      else if (BAD.test(value)) problem = `{{${name}}} has a newline, a tab or more than four spaces in a row`;
      if (input) input.setAttribute("aria-invalid", problem ? "true" : "false");
      if (problem) found.push(problem);
    }
    if (!found.length && render(template.body, given).length > picker.limits.body) {
      found.push(`the message is longer than ${picker.limits.body} characters`);
    }
    return found;
  }

  function showProblems(list) {
    const box = $("template-problems");
    box.replaceChildren(...list.map((p) => Object.assign(document.createElement("li"), { textContent: p })));
    box.hidden = list.length === 0;
  }

  function update({ show = false } = {}) {
    const template = current();
    if (!template) return;
    const given = values();
    $("template-preview").textContent = render(template.body, given);
    const found = problems(template, given);
    if (show || !$("template-problems").hidden) showProblems(found);
    return found;
  }

  function choose() {
    const template = current();
    const box = $("template-variables");
    box.replaceChildren();
    if (!template) return;
    for (const name of template.placeholders) {
      const input = document.createElement("input");
      input.type = "text";
      input.dataset.name = name;
      input.maxLength = picker.limits.variable + 50; // over the limit shows the problem
      input.placeholder = template.samples[name] || `{{${name}}}`;
      input.setAttribute("aria-label", `Variable {{${name}}}`);
      input.addEventListener("input", () => update());
      box.append(input);
    }
    showProblems([]);
    update();
  }

  async function load(c) {
    const response = await fetch(`/api/conversations/${c.id}/templates`, {
      headers: { Accept: "application/json" }, credentials: "same-origin",
    });
    if (!response.ok) return;
    const data = await response.json();
    if (!picker.conversation || picker.conversation.id !== c.id) return;
    picker.templates = data.templates;
    picker.limits = data.limits || picker.limits;
    const select = $("template-select");
    select.replaceChildren(...data.templates.map((t) => {
      const option = document.createElement("option");
      option.value = t.content_sid;
      option.textContent = `${t.name} (${t.language})`;
      return option;
    }));
    if (data.suggested) select.value = data.suggested;
    $("template-why").textContent = data.templates.length
      ? "The guest last wrote more than 24 hours ago: WhatsApp only delivers an approved template."
      : "The guest last wrote more than 24 hours ago, and this hotel has no approved template yet.";
    $("template-send").disabled = data.templates.length === 0;
    choose();
  }

  async function send() {
    const template = current();
    if (!template || !picker.conversation) return;
    const found = update({ show: true });
    if (found && found.length) return;
    $("template-send").disabled = true;
    try {
      const response = await fetch(`/api/conversations/${picker.conversation.id}/templates`, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({
          content_sid: template.content_sid,
          variables: Object.fromEntries(Object.entries(values()).map(([k, v]) => [k, v.trim()])),
          client_id: crypto.randomUUID(),
        }),
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        showProblems([(data.error && data.error.message) || `HTTP ${response.status}`]);
        return;
      }
      showProblems([]);
      for (const input of $("template-variables").querySelectorAll("input")) input.value = "";
      update();
      document.dispatchEvent(new CustomEvent("hc:sent", { detail: data }));
    } finally {
      $("template-send").disabled = false;
    }
  }

  document.addEventListener("hc:conversation", (e) => {
    const c = e.detail;
    const same = picker.conversation && picker.conversation.id === c.id;
    picker.conversation = c;
    const show = closed(c);
    $("template-picker").hidden = !show;
    if (show && (!same || picker.templates.length === 0)) load(c).catch(() => {});
    if (!show) picker.templates = [];
  });
  async function loadJourneys() {
    const list = $("journeys");
    if (!list) return; // managers only
    const response = await fetch("/api/journeys", { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    const day = (n) => (n === 0 ? "on the day" : n < 0 ? `${-n} d before` : `${n} d after`);
    list.replaceChildren(...data.journeys.map((j) => Object.assign(document.createElement("li"), {
      textContent: `${j.name}: ${j.template}, ${day(j.offset_days)} ${j.anchor === "check_in" ? "check-in" : "check-out"} at ${j.send_time}`
        + (j.quiet_hours ? `, quiet ${j.quiet_hours}` : "") + (j.enabled ? "" : " (off)"),
    })));
    $("no-journeys").hidden = data.journeys.length > 0;
  }

  loadJourneys().catch(() => {});
  $("template-select").addEventListener("change", choose);
  $("template-picker").addEventListener("submit", (e) => { e.preventDefault(); send(); });
})();
