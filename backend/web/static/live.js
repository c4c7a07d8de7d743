// Live worklist (issue 13): the server sends "look again" events over SSE (they carry no patient
// data); we re-fetch the rows, which the server renders within the user's scope, and merge them
// into the table in place: a row whose content did not change is not touched, a row with a note
// being typed or the focus keeps its form, and the focus and caret are restored after rows move.
// Actions (kvittering, kvittér alle, kvittér alle grønne, handover) are sent with fetch so a
// refused note stays where it was typed. No inline script: the Content-Security-Policy forbids it.
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("select[data-autosubmit]"), function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  Array.prototype.forEach.call(document.querySelectorAll("button[data-print]"), function (el) {
    el.addEventListener("click", function () { window.print(); });
  });
  // ---- escalation countdown (worklist and patient page) -----------------------------------------
  function tick() {
    var holders = document.querySelectorAll("[data-escalates]");
    Array.prototype.forEach.call(holders, function (holder) {
      var soon = holder.getAttribute("data-escalates"), late = holder.getAttribute("data-overdue");
      Array.prototype.forEach.call(holder.querySelectorAll(".countdown[data-due]"), function (el) {
        var left = Math.round((Date.parse(el.getAttribute("data-due")) - Date.now()) / 60000);
        if (left < 0) { el.textContent = late; el.classList.add("overdue"); return; }
        el.textContent = soon + " " + (left >= 120 ? Math.floor(left / 60) + " t " + (left % 60) + " min" : left + " min");
      });
    });
  }
  tick();
  setInterval(tick, 15000);

  var body = document.getElementById("worklist-rows");
  if (!body) return;
  var status = document.getElementById("live-status");
  var flash = document.getElementById("worklist-flash");
  var search = document.getElementById("wl-search");
  var severity = document.getElementById("wl-severity");
  var counts = document.getElementById("worklist-counts");
  var greenForm = document.getElementById("kvitter-green-form");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function say(text, bad) {
    if (!flash) return;
    flash.textContent = text;
    flash.className = "flash" + (bad ? " bad" : "");
    flash.hidden = false;
  }

  // ---- merging fresh rows in place ----------------------------------------------------------
  function dirty(node) {
    if (node.contains(document.activeElement) && document.activeElement !== document.body) return true;
    var inputs = node.querySelectorAll("input[name=note], input[type=text]");
    for (var i = 0; i < inputs.length; i++) if (inputs[i].value) return true;
    return false;
  }
  function carryOver(oldRow, newRow) {
    // Forms with typed text or the focus move into the new row (same key); open <details> stay open.
    var forms = oldRow.querySelectorAll("form[data-key]");
    for (var i = 0; i < forms.length; i++) {
      var f = forms[i];
      if (!dirty(f)) continue;
      var twin = newRow.querySelector('form[data-key="' + f.getAttribute("data-key") + '"]');
      if (!twin) return false;  // its alert is gone from the row: keep the old row until the note is sent or cleared
      twin.parentNode.replaceChild(f, twin);
    }
    var opened = oldRow.querySelectorAll("details[open]");
    for (var j = 0; j < opened.length; j++) {
      var d = opened[j].querySelector("form[data-key]");
      var same = d && newRow.querySelector('form[data-key="' + d.getAttribute("data-key") + '"]');
      if (same && same.closest("details")) same.closest("details").open = true;
    }
    return true;
  }
  function merge(html) {
    var active = document.activeElement;
    var selStart = null, selEnd = null;
    try { selStart = active.selectionStart; selEnd = active.selectionEnd; } catch (e) { /* not a text field */ }
    var tpl = document.createElement("tbody");
    tpl.innerHTML = html;
    var wanted = [];
    var seen = {};
    Array.prototype.slice.call(tpl.children).forEach(function (row) {
      var old = row.id ? document.getElementById(row.id) : null;
      if (old && old.parentNode === body) {
        seen[row.id] = true;
        if (old.getAttribute("data-version") === row.getAttribute("data-version")) { wanted.push(old); return; }
        if (dirty(old) && !carryOver(old, row)) { wanted.push(old); return; }
        wanted.push(row);
        return;
      }
      wanted.push(row);
    });
    // Rows no longer listed go, unless someone is typing in them.
    Array.prototype.slice.call(body.children).forEach(function (row) {
      if (row.id && seen[row.id]) return;
      if (wanted.indexOf(row) >= 0) return;
      if (dirty(row)) { wanted.push(row); return; }
      body.removeChild(row);
    });
    // Put the rows in order, moving as few as possible (a moved node loses focus: restored below).
    for (var i = 0; i < wanted.length; i++) {
      var at = body.children[i];
      if (at !== wanted[i]) body.insertBefore(wanted[i], at || null);
    }
    while (body.children.length > wanted.length) body.removeChild(body.lastElementChild);
    if (active && active !== document.body && document.activeElement !== active && document.contains(active)) {
      active.focus();
      if (selStart !== null) { try { active.setSelectionRange(selStart, selEnd); } catch (e) { /* ignore */ } }
    }
    body.setAttribute("data-refreshed", String(Date.now()));
    applyFilter();
    tick();
  }

  var pending = false, again = false;
  function refresh() {
    if (pending) { again = true; return; }
    pending = true;
    fetch(body.getAttribute("data-src"), { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(merge)
      .catch(function () {})
      .then(function () { pending = false; if (again) { again = false; refresh(); } });
  }

  // ---- search, severity filter and counts -------------------------------------------------------
  var ORDER = ["red", "yellow", "blue", "technical", "handled", "green"];
  function category(row) {
    return row.getAttribute("data-handled") === "1" ? "handled" : row.getAttribute("data-severity");
  }
  function applyFilter() {
    var q = search ? search.value.trim().toLowerCase() : "";
    var sev = severity ? severity.value : "";
    var n = {};
    Array.prototype.forEach.call(body.querySelectorAll("tr[data-patient]"), function (row) {
      var cat = category(row);
      var show = (!q || (row.getAttribute("data-search") || "").indexOf(q) >= 0) &&
        (!sev || cat === sev || (sev !== "handled" && row.getAttribute("data-severity") === sev && cat !== "handled"));
      if (dirty(row)) show = true;  // never hide a row with work in it
      row.hidden = !show;
      if (show) n[cat] = (n[cat] || 0) + 1;
    });
    if (counts) {
      var parts = [];
      ORDER.forEach(function (c) { if (n[c]) parts.push(counts.getAttribute("data-" + c).replace("{n}", n[c])); });
      counts.textContent = parts.join(" · ");
    }
    var shown = document.getElementById("green-shown");
    if (shown) shown.textContent = String(n.green || 0);
  }
  if (search) search.addEventListener("input", applyFilter);
  if (severity) severity.addEventListener("change", applyFilter);

  // ---- actions without losing the note ---------------------------------------------------------
  function post(form, data) {
    return fetch(form.getAttribute("action"), {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-Nearcare-Fetch": "1", "Accept": "application/json" },
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, message: r.statusText || String(r.status) }; });
    });
  }
  body.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.matches("form.kvitter-form, form.handover-form")) return;
    ev.preventDefault();
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    post(form, new FormData(form)).then(function (answer) {
      say(answer.message, !answer.ok);
      var note = form.querySelector("input[name=note]");
      if (answer.ok) {
        if (note) { note.value = ""; note.blur(); }
        refresh();
      } else if (note) {
        note.setCustomValidity(answer.message);
        note.reportValidity();
        note.addEventListener("input", function () { note.setCustomValidity(""); }, { once: true });
      }
    }).catch(function () { say(document.documentElement.lang === "en" ? "Not sent: try again." : "Ikke sendt: prøv igen.", true); })
      .then(function () { if (button) button.disabled = false; });
  });
  if (greenForm) {
    greenForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var ids = Array.prototype.filter.call(body.querySelectorAll('tr[data-severity="green"][data-patient]'),
        function (row) { return !row.hidden && row.getAttribute("data-handled") !== "1"; })
        .map(function (row) { return row.getAttribute("data-patient"); });
      if (!ids.length) { say(greenForm.getAttribute("data-none"), true); return; }
      if (!window.confirm(greenForm.getAttribute("data-confirm").replace("{n}", ids.length))) return;
      var data = new FormData();
      data.append("csrf", csrf);
      data.append("back", "/worklist");
      ids.forEach(function (id) { data.append("patient_id", id); });
      post(greenForm, data).then(function (answer) { say(answer.message, !answer.ok); refresh(); })
        .catch(function () { say("…", true); });
    });
  }

  // ---- keyboard: j/k move between rows, Enter goes to the row's first note -----------------------
  var current = null;
  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key !== "j" && ev.key !== "k" && ev.key !== "Enter") return;
    var rows = Array.prototype.filter.call(body.querySelectorAll("tr[data-patient]"), function (r) { return !r.hidden; });
    if (!rows.length) return;
    if (ev.key === "Enter") {
      if (!current) return;
      var note = current.querySelector("input[name=note]");
      if (note) { ev.preventDefault(); note.focus(); }
      return;
    }
    var i = rows.indexOf(current);
    i = ev.key === "j" ? Math.min(rows.length - 1, i + 1) : Math.max(0, i - 1);
    if (current) current.classList.remove("current");
    current = rows[i];
    current.classList.add("current");
    current.scrollIntoView({ block: "nearest" });
  });

  // ---- the event stream ----------------------------------------------------------------------
  // The server ends each stream after ~25 s and the browser reconnects at once: that is not
  // "offline". Only a stream that stays away for OFFLINE_AFTER_MS says so.
  var OFFLINE_AFTER_MS = 8000;
  var offlineTimer = null, es = null, opened = 0;
  function show(state) {
    if (!status) return;
    status.textContent = status.getAttribute("data-" + state) || state;
    status.className = "live " + state;
  }
  function connect() {
    es = new EventSource("/events");
    es.addEventListener("open", function () {
      if (offlineTimer) { clearTimeout(offlineTimer); offlineTimer = null; }
      show("on");
      if (opened++ > 0) refresh();  // after a reconnect: catch up on what happened in the gap
    });
    es.addEventListener("error", function () {
      if (es.readyState === EventSource.CLOSED) {  // the browser gave up (e.g. 403): retry ourselves
        es.close();
        setTimeout(connect, 3000);
      }
      if (!offlineTimer) offlineTimer = setTimeout(function () { offlineTimer = null; show("off"); }, OFFLINE_AFTER_MS);
    });
    es.addEventListener("alert", refresh);
    es.addEventListener("reading", function () {
      if (readingTimer) return;
      readingTimer = setTimeout(function () { readingTimer = null; refresh(); }, 5000);
    });
  }
  var readingTimer = null;
  connect();
  setInterval(refresh, 60000);  // a safety net if an event was lost while reconnecting
  applyFilter();
})();
