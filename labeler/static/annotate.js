// The annotation page: renders tasks (text only, never HTML), autosaves drafts (kept in this
// browser until the server has them, so a reload loses nothing), renews leases while the page
// is open, prefetches the next item, and maps keys to actions. Two tabs of one annotator get
// the same item (the server hands back the lease they hold); when the other tab submitted it
// first, this one says so, keeps what was typed here on screen for copying, and moves on.
// The last action's confirmation ("Submitted", "Skipped") stays in view on the next item,
// with undo of the last submit while the server allows it; the progress line and the answers
// a reviewer sent back are refreshed after every action. Rating pages: thumbs, aspect scores
// (keys only: `a` moves the focus, digits score it) and a comment. Messages about an item (a missing
// choice, a failed submit) go when the item changes or the annotator fixes what they said.
"use strict";
(function () {
  const root = document.getElementById("annotator");
  if (!root) return;
  const project = root.dataset.project;
  const kind = root.dataset.kind;
  // Preference projects that rank all answers (`ranking`) instead of comparing two.
  const ranking = (root.dataset.ranking || "").toLowerCase() === "true";
  // Model pre-labels: "shown" with the item, "hidden" only once it is answered.
  const prelabels = root.dataset.prelabels || "";
  const leaseSeconds = Number(root.dataset.leaseSeconds) || 300;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  let current = null;
  let prefetched = null;
  let prefetching = null;
  let shownAt = Date.now();
  let saveTimer = null;
  let busy = false;

  function api(method, path, body, extraHeaders, keepalive) {
    const headers = Object.assign({ "X-CSRF-Token": csrf }, extraHeaders || {});
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      keepalive: !!keepalive,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  // Edits the server has not acknowledged yet live in localStorage: written on every change,
  // so that a reload or a closed tab inside autosave's pause loses nothing, and dropped once
  // the server holds the same draft, or the item is submitted or skipped.
  const localKey = (task) => "jielong-draft-" + task.assignment_id;
  function keepLocal(task, body) {
    try { localStorage.setItem(localKey(task), JSON.stringify(body)); } catch (e) { /* full or off */ }
  }
  function localDraft(task) {
    try { return JSON.parse(localStorage.getItem(localKey(task))); } catch (e) { return null; }
  }
  function dropLocal(task) {
    try { localStorage.removeItem(localKey(task)); } catch (e) { /* off */ }
  }

  // `status`: about the item on screen (draft saved, what is missing); `flash`: the last
  // action's outcome, kept across the move to the next item until the next action.
  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }
  function clearError() { if (status.classList.contains("error")) say(""); }
  let undoAssignment = null;
  function flash(text, warn) {
    $("flash-text").textContent = text;
    $("flash").classList.toggle("warn", !!warn);
    $("flash").hidden = false;
  }
  function showUndo(assignment) {
    undoAssignment = assignment;
    $("undo").hidden = assignment == null;
    if (assignment == null && !$("flash-text").textContent) $("flash").hidden = true;
  }

  // The progress line, the undo offer and the answers sent back, from the server.
  async function refreshMine() {
    try {
      const res = await api("GET", "/api/projects/" + project + "/mine");
      if (!res.ok) return;
      const mine = await res.json();
      const p = mine.progress;
      $("progress").textContent = p.left + " of " + p.items + " left in this project, " +
        p.done_today + " done today";
      showUndo(mine.undo);
      const list = $("rejections-list");
      list.replaceChildren();
      for (const r of mine.rejected) {
        const li = document.createElement("li");
        const line = (cls, text) => {
          const el = document.createElement("p");
          el.className = cls;
          el.textContent = text;
          li.append(el);
        };
        line("question", r.question);
        line("submitted", "You: " + r.submitted);
        line("comment", (r.reviewer || "Reviewer") + ": " + r.comment);
        list.append(li);
      }
      $("rejections-count").textContent = String(mine.rejected.length);
      $("rejections").hidden = mine.rejected.length === 0;
    } catch (e) { /* the line stays as it was */ }
  }

  // The model's suggestion for an assignment, as a sentence, to `then` (nothing when none).
  async function showSuggestion(assignment, then) {
    try {
      const res = await api("GET", "/api/assignments/" + assignment + "/suggestion");
      if (res.status !== 200) return;
      const s = await res.json();
      const verdict = s.label === true ? "thumbs up" : s.label === false ? "thumbs down" :
        s.winner ? "answer " + s.winner + " is better" : "neither answer shown";
      then("Model suggestion (" + s.source + "): " + verdict + ".");
    } catch (e) { /* no suggestion */ }
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + "-" + Math.random().toString(16).slice(2);
  }

  function render(task) {
    current = task;
    if (!task) {
      $("task").hidden = true;
      $("done").hidden = false;
      return;
    }
    task.idempotencyKey = task.idempotencyKey || newKey();
    $("done").hidden = true;
    $("task").hidden = false;
    const list = $("conversation");
    list.replaceChildren();
    for (const m of task.prompt) {
      const li = document.createElement("li");
      li.className = "turn " + m.role;
      const who = document.createElement("span");
      who.className = "role";
      who.textContent = m.role;
      const text = document.createElement("div");
      text.className = "content";
      text.textContent = m.content;
      li.append(who, text);
      list.append(li);
    }
    const unsent = localDraft(task);
    const saved = unsent || task.saved_draft || {};
    if (kind === "sft") {
      $("answer").value = saved.answer != null ? saved.answer : (task.model_draft || "");
      $("answer").focus();
    } else if (ranking) {
      renderRanking(task, saved);
      document.activeElement && document.activeElement.blur();
    } else if (kind === "rating") {
      $("answer-a").textContent = task.answers[0] ? task.answers[0].content : "";
      const label = saved.label === true ? "up" : saved.label === false ? "down" : null;
      const scores = saved.scores || {};
      for (const r of document.querySelectorAll('input[name="label"]')) r.checked = r.value === label;
      for (const f of aspects) {
        for (const r of f.querySelectorAll("input")) {
          r.checked = Number(r.value) === scores[f.dataset.aspect];
        }
      }
      $("comment").value = saved.comment || "";
      focusAspect(0);
      document.activeElement && document.activeElement.blur();
    } else {
      $("answer-a").textContent = task.answers[0] ? task.answers[0].content : "";
      $("answer-b").textContent = task.answers[1] ? task.answers[1].content : "";
      for (const r of document.querySelectorAll('input[name="choice"], input[name="strength"]')) {
        r.checked = (r.name === "choice" && r.value === saved.choice) ||
                    (r.name === "strength" && r.value === saved.strength);
      }
      $("rationale").value = saved.rationale || "";
      document.activeElement && document.activeElement.blur();
    }
    $("suggestion").hidden = true;
    if (prelabels === "shown") showSuggestion(task.assignment_id, (text) => {
      if (current === task) { $("suggestion").textContent = text; $("suggestion").hidden = false; }
    });
    shownAt = Date.now();
    say("");
    if (unsent) scheduleSave();
    prefetch();
  }

  // Rating: the aspects scored 1-5; `a` moves the focus, the digits score the one in focus.
  const aspects = Array.from(document.querySelectorAll("fieldset.aspect"));
  let aspectAt = 0;
  function focusAspect(i) {
    if (!aspects.length) return;
    aspectAt = i % aspects.length;
    aspects.forEach((f, j) => f.classList.toggle("focus", j === aspectAt));
    $("aspect-focus").textContent = aspects[aspectAt].dataset.aspect;
  }
  function score(n) {
    const f = aspects[aspectAt];
    if (!f) return;
    for (const r of f.querySelectorAll("input")) r.checked = n > 0 && Number(r.value) === n;
    scheduleSave();
  }

  // Ranking: one card per answer with its rank; digits rank the card in focus.
  let rankAt = 0;
  function rankCards() { return Array.from(document.querySelectorAll("#ranked-answers li")); }
  function renderRanking(task, saved) {
    const list = $("ranked-answers");
    list.replaceChildren();
    const ranks = saved.ranking || [];
    task.answers.forEach((a, i) => {
      const li = document.createElement("li");
      li.className = "ranked";
      const head = document.createElement("h2");
      head.textContent = a.label + " ";
      const select = document.createElement("select");
      select.className = "rank";
      select.setAttribute("aria-label", "Rank of " + a.label);
      for (let n = 0; n <= task.answers.length; n++) {
        const o = document.createElement("option");
        o.value = n ? String(n) : "";
        o.textContent = n ? "rank " + n : "rank —";
        select.append(o);
      }
      select.value = ranks[i] ? String(ranks[i]) : "";
      head.append(select);
      const body = document.createElement("div");
      body.className = "answer";
      body.textContent = a.content;
      li.append(head, body);
      list.append(li);
    });
    $("rationale").value = saved.rationale || "";
    focusRank(0);
  }
  function focusRank(i) {
    const cards = rankCards();
    if (!cards.length) return;
    rankAt = Math.max(0, Math.min(i, cards.length - 1));
    cards.forEach((c, j) => c.classList.toggle("focus", j === rankAt));
  }
  function rank(n) {
    const cards = rankCards();
    if (!cards[rankAt] || n > cards.length) return;
    cards[rankAt].querySelector("select").value = n ? String(n) : "";
    scheduleSave();
    if (n) focusRank(rankAt + 1);
  }

  function collect() {
    if (kind === "sft") return { answer: $("answer").value };
    if (ranking) {
      const out = {
        ranking: rankCards().map((c) => Number(c.querySelector("select").value) || null),
      };
      const rationale = $("rationale").value;
      if (rationale.trim()) out.rationale = rationale;
      return out;
    }
    if (kind === "rating") {
      const r = document.querySelector('input[name="label"]:checked');
      const out = { label: r ? r.value === "up" : null, scores: {} };
      for (const f of aspects) {
        const s = f.querySelector("input:checked");
        if (s) out.scores[f.dataset.aspect] = Number(s.value);
      }
      const comment = $("comment").value;
      if (comment.trim()) out.comment = comment;
      return out;
    }
    const pick = (name) => {
      const r = document.querySelector('input[name="' + name + '"]:checked');
      return r ? r.value : null;
    };
    const out = { choice: pick("choice") };
    const strength = pick("strength");
    if (strength && (out.choice === "a" || out.choice === "b")) out.strength = strength;
    const rationale = $("rationale").value;
    if (rationale.trim()) out.rationale = rationale;
    return out;
  }

  function scheduleSave() {
    if (!current) return;
    keepLocal(current, collect());
    clearTimeout(saveTimer);
    saveTimer = setTimeout(saveDraft, 600);
  }

  async function saveDraft() {
    if (!current) return;
    const task = current;
    const body = collect();
    try {
      const res = await api("PUT", "/api/assignments/" + task.assignment_id + "/draft", body);
      // Typing during the request made a newer local copy: keep that one.
      if (res.ok && JSON.stringify(localDraft(task)) === JSON.stringify(body)) dropLocal(task);
      say(res.ok ? "Draft saved" : "Draft not saved (" + res.status + "); kept in this browser");
    } catch (e) {
      say("Draft not saved (network); kept in this browser");
    }
  }

  // Leaving with edits unsent: send them anyway (keepalive outlives the page), so that the
  // draft also follows the annotator to another browser.
  window.addEventListener("pagehide", () => {
    if (!current || !localDraft(current)) return;
    api("PUT", "/api/assignments/" + current.assignment_id + "/draft", collect(), undefined, true)
      .catch(() => {});
  });

  async function fetchNext(exclude) {
    const q = exclude.length ? "?exclude=" + exclude.join(",") : "";
    const res = await api("POST", "/api/projects/" + project + "/next" + q);
    if (res.status === 204) return null;
    if (!res.ok) throw new Error("next: " + res.status);
    return res.json();
  }

  function prefetch() {
    if (!current || prefetched || prefetching) return;
    prefetching = fetchNext([current.assignment_id])
      .then((t) => { prefetched = t; })
      .catch(() => { prefetched = null; })
      .finally(() => { prefetching = null; });
  }

  async function advance() {
    if (prefetching) await prefetching;
    let next = prefetched;
    prefetched = null;
    if (!next) next = await fetchNext([]);
    render(next);
  }

  // What the annotator typed for `body`, as text to copy.
  function typedText(body) {
    if (kind === "sft") return body.answer;
    if (ranking) {
      return "ranking: " + (body.ranking || []).join(", ") + (body.rationale ? "\n" + body.rationale : "");
    }
    if (kind === "rating") {
      const parts = [body.label ? "thumbs up" : "thumbs down"];
      for (const k of Object.keys(body.scores || {})) parts.push(k + " " + body.scores[k]);
      return parts.join(", ") + (body.comment ? "\n" + body.comment : "");
    }
    const lines = [];
    if (body.choice) lines.push("choice: " + body.choice + (body.strength ? " (" + body.strength + ")" : ""));
    if (body.rationale) lines.push(body.rationale);
    return lines.join("\n");
  }

  // The item was answered in another tab: its answer is stored, this one is not. The text
  // stays in view (outside the task, so it survives the move) and the page moves on.
  async function answeredElsewhere(task, body) {
    $("unsaved-why").textContent = "Already submitted in another tab: that answer is stored, " +
      "this one was not. Moved on to the next item.";
    $("unsaved-text").value = typedText(body);
    $("unsaved").hidden = false;
    dropLocal(task);
    await advance();
    say("Already submitted in another tab");
  }

  async function submit() {
    if (!current || busy) return;
    const body = collect();
    if (kind === "sft" && !body.answer.trim()) { say("Write an answer first", true); return; }
    if (ranking && body.ranking.some((r) => r === null)) {
      say("Rank every answer first (1 = best)", true);
      return;
    }
    if (kind === "preference" && !ranking && !body.choice) { say("Choose 1-4 first", true); return; }
    if (kind === "rating" && body.label === null) { say("Thumbs up (y) or down (n) first", true); return; }
    body.time_spent_ms = Date.now() - shownAt;
    busy = true;
    clearTimeout(saveTimer);
    try {
      const res = await api("POST", "/api/assignments/" + current.assignment_id + "/submit", body,
                            { "Idempotency-Key": current.idempotencyKey });
      if (res.ok) {
        dropLocal(current);
        flash("Submitted. Your answer is saved.");
        showUndo(current.assignment_id);
        if (prelabels === "hidden") {
          showSuggestion(current.assignment_id, (text) => flash("Submitted. Your answer is saved. " + text));
        }
        await advance();
        refreshMine();
      } else {
        const err = await res.json().catch(() => ({}));
        if (res.status === 409 && err.code === "already_submitted") {
          await answeredElsewhere(current, body);
        } else {
          say("Not submitted: " + (err.error || res.status), true);
        }
      }
    } catch (e) {
      say("Network error; your draft is kept. Try again.", true);
    } finally {
      busy = false;
    }
  }

  async function skip() {
    if (!current || busy) return;
    busy = true;
    const reason = $("skip-reason").value.trim();
    try {
      const res = await api("POST", "/api/assignments/" + current.assignment_id + "/skip",
                            reason ? { reason: reason } : {});
      if (!res.ok && res.status !== 404) {
        const err = await res.json().catch(() => ({}));
        say("Not skipped: " + (err.error || res.status), true);
        return;
      }
      dropLocal(current);
      $("skip-reason").value = "";
      flash(reason ? "Skipped (reason kept for the project's leads)." : "Skipped.");
      await advance();
      refreshMine();
    } catch (e) {
      say("Network error; not skipped. Try again.", true);
    } finally {
      busy = false;
    }
  }

  // Takes back the last submit: its item comes back with the answer in place, and the item
  // that was on screen comes next again.
  async function undo() {
    if (busy || undoAssignment == null) return;
    busy = true;
    try {
      const res = await api("POST", "/api/projects/" + project + "/undo",
                            { assignment_id: undoAssignment });
      if (res.ok) {
        const task = await res.json();
        if (current && current.assignment_id !== task.assignment_id) {
          // The item on screen comes next again; one prefetched before stays leased to
          // this annotator and comes back after it.
          keepLocal(current, collect());
          prefetched = current;
        }
        render(task);
        flash("Undone: your last answer is back; change it and submit again.");
        showUndo(null);
      } else {
        const err = await res.json().catch(() => ({}));
        flash("Not undone: " + (err.error || res.status), true);
        showUndo(null);
      }
      refreshMine();
    } catch (e) {
      say("Network error; not undone. Try again.", true);
    } finally {
      busy = false;
    }
  }

  function renew() {
    for (const t of [current, prefetched]) {
      if (t) api("POST", "/api/assignments/" + t.assignment_id + "/renew");
    }
  }
  setInterval(renew, Math.max(5, leaseSeconds / 3) * 1000);

  function choose(name, value) {
    const r = document.querySelector('input[name="' + name + '"][value="' + value + '"]');
    if (r) { r.checked = true; scheduleSave(); }
  }

  // The skip reason is not part of the draft.
  const inDraft = (e) => e.target !== $("skip-reason");
  document.addEventListener("input", (e) => { clearError(); if (inDraft(e)) scheduleSave(); });
  document.addEventListener("change", (e) => { clearError(); if (inDraft(e)) scheduleSave(); });
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("unsaved-dismiss").addEventListener("click", () => { $("unsaved").hidden = true; });

  document.addEventListener("keydown", (e) => {
    const typing = e.target && (e.target.tagName === "TEXTAREA" || e.target.tagName === "INPUT") &&
                   e.target.type !== "radio";
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); return; }
    if (e.altKey && (e.key === "k" || e.key === "K")) { e.preventDefault(); skip(); return; }
    if (e.altKey && (e.key === "u" || e.key === "U")) { e.preventDefault(); undo(); return; }
    if (e.key === "Enter" && e.target === $("skip-reason")) { e.preventDefault(); skip(); return; }
    if (e.key === "Escape" && typing) { e.target.blur(); return; }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    const keys = {
      "1": () => choose("choice", "a"), "2": () => choose("choice", "b"),
      "3": () => choose("choice", "tie"), "4": () => choose("choice", "both_bad"),
      "q": () => choose("strength", "slightly"), "w": () => choose("strength", "much"),
      "r": () => $("rationale") && $("rationale").focus(),
      "k": skip, "Enter": submit, "u": undo,
      "g": () => { const d = document.querySelector(".guidelines-box"); d.open = !d.open; },
    };
    const ratingKeys = {
      "y": () => choose("label", "up"), "n": () => choose("label", "down"),
      "a": () => focusAspect(aspectAt + 1), "c": () => $("comment").focus(),
      "0": () => score(0), "1": () => score(1), "2": () => score(2), "3": () => score(3),
      "4": () => score(4), "5": () => score(5),
    };
    if (kind === "rating" && ratingKeys[e.key]) { e.preventDefault(); ratingKeys[e.key](); return; }
    if (ranking) {
      const move = { "ArrowDown": 1, "j": 1, "ArrowUp": -1, "i": -1 }[e.key];
      if (move) { e.preventDefault(); focusRank(rankAt + move); return; }
      if (/^[0-9]$/.test(e.key)) { e.preventDefault(); rank(Number(e.key)); return; }
      if (["q", "w"].includes(e.key)) return;
    }
    const action = keys[e.key];
    if (action && (kind === "preference" || ["g", "k", "u", "Enter"].includes(e.key))) {
      e.preventDefault();
      action();
    }
  });

  if (root.dataset.undo) undoAssignment = Number(root.dataset.undo);
  render(JSON.parse($("first-task").textContent));
})();
