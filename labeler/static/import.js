// The import page: a chosen file is checked by the server first (the preview: counts, the
// first rows, every refused line with its number; nothing written), and only a clean file
// can then be imported, with one click (the button stays off while a request runs).
"use strict";
(function () {
  const root = document.getElementById("importer");
  if (!root) return;
  const project = root.dataset.project;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const button = $("import-button");
  const out = $("import-status");
  const isSft = root.dataset.kind === "sft";
  let file = null;

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-ndjson" },
      credentials: "same-origin",
      body: body,
    });
  }

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }

  function show(p) {
    $("preview").hidden = false;
    const parts = [p.rows + " row(s) read"];
    if (p.errors_total === 0) {
      parts.push(p.items + " item(s) to import");
      parts.push(p.with_id + " with an id");
      if (isSft) parts.push(p.with_draft + " with a draft");
      else parts.push(p.candidates + " candidate answer(s)");
    } else {
      parts.push(p.errors_total + " refused line(s): fix them, nothing is imported until then");
    }
    $("preview-summary").textContent = parts.join(" · ");
    const body = $("preview-rows").querySelector("tbody");
    body.replaceChildren();
    for (const r of p.first) {
      const tr = document.createElement("tr");
      cell(tr, String(r.line));
      cell(tr, r.id || "");
      cell(tr, r.prompt);
      cell(tr, String(r.turns));
      cell(tr, isSft ? (r.draft ? "yes" : "") : String(r.candidates));
      body.append(tr);
    }
    $("preview-rows").hidden = p.first.length === 0;
    const errors = $("preview-errors");
    errors.replaceChildren();
    for (const e of p.errors) {
      const li = document.createElement("li");
      li.textContent = "line " + e.line + ": " + e.message;
      errors.append(li);
    }
    if (p.errors_total > p.errors.length) {
      const li = document.createElement("li");
      li.textContent = "… and " + (p.errors_total - p.errors.length) + " more";
      errors.append(li);
    }
    button.disabled = !(p.items > 0 && p.errors_total === 0);
    button.textContent = p.items > 0 ? "Import " + p.items + " item(s)" : "Import";
  }

  $("import-file").addEventListener("change", async () => {
    file = $("import-file").files[0] || null;
    button.disabled = true;
    out.textContent = "";
    $("preview").hidden = true;
    if (!file) return;
    out.textContent = "Checking " + file.name + "…";
    try {
      const res = await post("/api/projects/" + project + "/items/preview", file);
      const body = await res.json().catch(() => ({}));
      if (res.ok) {
        out.textContent = "";
        show(body);
      } else {
        out.textContent = "Not checked: " + (body.error || ("HTTP " + res.status));
      }
    } catch (e) {
      out.textContent = "Not checked (network error).";
    }
  });

  button.addEventListener("click", async () => {
    if (!file || button.disabled) return;
    button.disabled = true;
    const name = file.name;
    out.textContent = "Importing " + name + "…";
    try {
      const res = await post("/api/projects/" + project + "/items?source=" +
                             encodeURIComponent(name), file);
      const body = await res.json().catch(() => ({}));
      if (res.ok) {
        out.textContent = "Imported " + body.items + " item(s) from " + name + ".";
        file = null;
        $("import-file").value = "";
      } else {
        const rows = (body.rows || []).slice(0, 10).map((r) => "line " + r.line + ": " + r.message);
        out.textContent = (body.error || ("HTTP " + res.status)) + (rows.length ? "\n" + rows.join("\n") : "");
      }
    } catch (e) {
      out.textContent = "Not imported (network error); try again.";
      button.disabled = false;
    }
  });
})();
