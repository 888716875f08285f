// Admin tools on the project list: JSONL upload straight to the import API.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const out = document.getElementById("import-status");
  for (const input of document.querySelectorAll("input.import-file")) {
    input.addEventListener("change", async () => {
      const file = input.files[0];
      if (!file) return;
      out.textContent = "Importing " + file.name + "…";
      const res = await fetch("/api/projects/" + input.dataset.project + "/items?source=" +
                              encodeURIComponent(file.name), {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-ndjson" },
        credentials: "same-origin",
        body: file,
      });
      const body = await res.json().catch(() => ({}));
      if (res.ok) {
        out.textContent = "Imported " + body.items + " item(s) from " + file.name + ".";
      } else {
        const rows = (body.rows || []).slice(0, 10).map((r) => "line " + r.line + ": " + r.message);
        out.textContent = (body.error || ("HTTP " + res.status)) + (rows.length ? "\n" + rows.join("\n") : "");
      }
      input.value = "";
    });
  }
})();
