// Live worklist: the server sends "look again" events over SSE; we re-fetch the rows, which the
// server renders within the user's scope. The events themselves carry no patient data.
(function () {
  "use strict";
  // Filters submit on change (no inline handlers: the Content-Security-Policy allows no inline script).
  Array.prototype.forEach.call(document.querySelectorAll("select[data-autosubmit]"), function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  var body = document.getElementById("worklist-rows");
  if (!body) return;
  var status = document.getElementById("live-status");
  var pending = false;
  function refresh() {
    if (pending) return;
    pending = true;
    fetch(body.getAttribute("data-src"), { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { body.innerHTML = html; body.setAttribute("data-refreshed", String(Date.now())); })
      .catch(function () {})
      .then(function () { pending = false; });
  }
  var es = new EventSource("/events");
  var opened = 0;
  es.addEventListener("open", function () {
    if (status) { status.textContent = "live"; status.className = "live on"; }
    if (opened++ > 0) refresh();  // after a reconnect: catch up on what happened in the gap
  });
  es.addEventListener("error", function () { if (status) { status.textContent = "offline"; status.className = "live off"; } });
  es.addEventListener("alert", refresh);
  // New readings may add green rows; they come often, so at most one re-read per 5 s for them.
  var readingTimer = null;
  es.addEventListener("reading", function () {
    if (readingTimer) return;
    readingTimer = setTimeout(function () { readingTimer = null; refresh(); }, 5000);
  });
  setInterval(refresh, 60000);  // a safety net if an event was lost while reconnecting
})();
