// The dashboard's one script, served from /assets/dashboard.js: the pages carry no
// script of their own and no inline handler (the Content-Security-Policy allows
// scripts from this origin only), and every piece of data reaches it as data:
// data-* attributes and JSON, never as code.
"use strict";

// Buttons that act: <button data-post="URL" data-confirm="TEXT" data-then="task">.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-post]");
  if (!button) return;
  const ask = button.dataset.confirm;
  if (ask && !confirm(ask)) return;
  const response = await fetch(button.dataset.post, { method: "POST", credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    alert(body.error || response.statusText);
  } else if (button.dataset.then === "task" && body.id) {
    location.href = `${document.body.dataset.base}/tasks/${encodeURIComponent(body.id)}`;
  } else {
    location.reload();
  }
});

const live = document.getElementById("live");
const stream = live && live.dataset.stream ? new EventSource(live.dataset.stream) : null;
const updated = () => { live.textContent = "live, updated " + new Date().toLocaleTimeString(); };

// The overview: cards by data-key, queue cells by data-queue and data-state.
if (stream && document.querySelector("[data-key]")) {
  stream.addEventListener("overview", (message) => {
    const data = JSON.parse(message.data);
    for (const el of document.querySelectorAll("[data-key]")) {
      if (el.dataset.key in data) el.textContent = data[el.dataset.key];
    }
    const queues = new Map((data.queues || []).map((q) => [q.queue, q]));
    for (const el of document.querySelectorAll("[data-queue][data-state]")) {
      const q = queues.get(el.dataset.queue);
      if (q && el.dataset.state in q) el.textContent = q[el.dataset.state];
    }
    updated();
  });
}

// The events page: rows rebuilt with text nodes only.
const events = document.querySelector("#events tbody");
if (stream && events) {
  stream.addEventListener("events", (message) => {
    const list = JSON.parse(message.data);
    if (!Array.isArray(list)) return;
    const cell = (text) => { const td = document.createElement("td"); td.textContent = text ?? ""; return td; };
    const head = events.querySelector("tr");
    const rows = list.map((e) => {
      const tr = document.createElement("tr");
      tr.append(cell(e.at), cell(e.kind), cell(e.task));
      const id = document.createElement("td");
      if (e.task_id) {
        const a = document.createElement("a");
        a.href = `${document.body.dataset.base}/tasks/${encodeURIComponent(e.task_id)}`;
        const code = document.createElement("code");
        code.textContent = e.task_id;
        a.append(code);
        id.append(a);
      }
      tr.append(id, cell(e.worker), cell(e.detail));
      return tr;
    });
    events.replaceChildren(...(head ? [head] : []), ...rows);
    updated();
  });
}
