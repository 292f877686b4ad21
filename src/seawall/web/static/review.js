// Review console: keyboard grading and deliberate reveals. The pages work without it (plain forms);
// with it, every grading choice has a key, "?" shows them, and a reveal shows the one item's
// original in place and reports, when hidden or when the page goes away, how long it was shown.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.content : "";
  var figure = document.querySelector(".review-media");
  var gradeForm = document.getElementById("grade-form");
  var keymap = document.getElementById("keymap");
  var revealed = document.getElementById("revealed");
  var blurred = document.getElementById("blurred");
  var hold = figure && figure.getAttribute("data-hold") === "1";
  var current = null; // {id, shownSince, shown}
  var pending = false;
  var holding = false; // reveal-on-hold: the key is down

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    if (tag === "textarea" || tag === "select") return true;
    if (tag === "input") {
      var type = (target.getAttribute("type") || "text").toLowerCase();
      return type !== "radio" && type !== "checkbox";
    }
    return false;
  }

  function endReveal() {
    if (!current) return;
    var seconds = current.shown + (performance.now() - current.shownSince) / 1000;
    var body = new FormData();
    body.append("csrf_token", csrf);
    body.append("seconds", seconds.toFixed(3));
    navigator.sendBeacon("/review/reveals/" + current.id + "/end", body);
    current = null;
    while (revealed.firstChild) revealed.removeChild(revealed.firstChild);
    revealed.hidden = true;
    blurred.hidden = false;
    var button = document.getElementById("reveal-button");
    if (button) button.textContent = "Reveal ";
    if (button) { var k = document.createElement("kbd"); k.textContent = "r"; button.appendChild(k); }
    figure.setAttribute("data-revealed", "0");
  }

  function startReveal() {
    if (!figure || current || pending) return;
    pending = true;
    var body = new FormData();
    body.append("csrf_token", csrf);
    fetch("/review/items/" + figure.getAttribute("data-item") + "/reveal", {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
    }).then(function (r) {
      if (r.status === 423) { window.location.href = "/review/break"; throw new Error("break"); }
      if (!r.ok) throw new Error("reveal refused: " + r.status);
      return r.json();
    }).then(function (data) {
      var el;
      if (data.media === "video") {
        el = document.createElement("video");
        el.muted = true; el.controls = true; el.preload = "metadata"; el.setAttribute("playsinline", "");
      } else {
        el = document.createElement("img");
        el.alt = "Revealed item " + figure.getAttribute("data-item");
      }
      el.id = "revealed-media";
      el.src = data.url;
      revealed.appendChild(el);
      revealed.hidden = false;
      blurred.hidden = true;
      current = { id: data.reveal, shownSince: performance.now(), shown: 0 };
      figure.setAttribute("data-revealed", "1");
      figure.setAttribute("data-reveal-id", String(data.reveal));
      var button = document.getElementById("reveal-button");
      if (button) { button.textContent = "Hide "; var k = document.createElement("kbd"); k.textContent = "r"; button.appendChild(k); }
      if (hold && !holding) endReveal(); // let go before the original arrived
    }).catch(function () { /* the blurred preview stays */ }).then(function () { pending = false; });
  }

  function toggleReveal() { if (current) endReveal(); else startReveal(); }

  var revealForm = document.getElementById("reveal-form");
  if (revealForm) {
    revealForm.addEventListener("submit", function (e) { e.preventDefault(); toggleReveal(); });
  }
  var hideForm = document.getElementById("hide-form");
  var loadedAt = performance.now();
  if (hideForm) {
    hideForm.addEventListener("submit", function () {
      var field = document.createElement("input");
      field.type = "hidden"; field.name = "seconds";
      field.value = ((performance.now() - loadedAt) / 1000).toFixed(3);
      hideForm.appendChild(field);
    });
  }

  function showKeymap() {
    if (!keymap) return;
    if (keymap.open) keymap.close(); else keymap.showModal();
  }
  var keymapButton = document.getElementById("keymap-button");
  if (keymapButton) keymapButton.addEventListener("click", showKeymap);

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape") { if (keymap && keymap.open) keymap.close(); return; }
    if (typing(e.target)) return;
    if (e.key === "?") { e.preventDefault(); showKeymap(); return; }
    if (keymap && keymap.open) return;
    if (e.key === "r" && figure && revealForm) {
      e.preventDefault();
      if (e.repeat) return;
      if (hold) { holding = true; startReveal(); } else toggleReveal();
      return;
    }
    if (e.key === "Enter" && gradeForm) {
      e.preventDefault();
      gradeForm.requestSubmit();
      return;
    }
    if (!gradeForm || e.key.length !== 1) return;
    var input = gradeForm.querySelector('[data-key="' + e.key.toLowerCase().replace(/["\\]/g, "") + '"]');
    if (!input) return;
    e.preventDefault();
    if (input.type === "checkbox") input.checked = !input.checked; else input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    input.focus();
  });
  document.addEventListener("keyup", function (e) {
    if (hold && e.key === "r") { holding = false; endReveal(); }
  });
  // Leaving the page ends the reveal: its duration is reported whatever way the page goes away.
  window.addEventListener("pagehide", endReveal);
  document.addEventListener("visibilitychange", function () { if (document.hidden) endReveal(); });
  if (gradeForm) gradeForm.addEventListener("submit", endReveal);
})();
