// Operator pages: list imports with an upload progress bar, and "copy" for a secret shown once.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');

  document.querySelectorAll("form[data-import]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.XMLHttpRequest || !window.FormData) return; // the plain form post still works
      event.preventDefault();
      var bar = form.querySelector("progress");
      var status = form.querySelector("[data-import-status]");
      var button = form.querySelector("button[type=submit]");
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("Accept", "application/json");
      request.setRequestHeader("X-CSRF-Token", meta ? meta.content : "");
      bar.hidden = false;
      bar.value = 0;
      button.disabled = true;
      status.textContent = "Uploading…";
      request.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) {
          bar.value = Math.round((e.loaded / e.total) * 100);
          status.textContent = "Uploading… " + bar.value + "%";
        }
      });
      request.upload.addEventListener("load", function () {
        bar.value = 100;
        status.textContent = "Uploaded; importing…";
      });
      request.addEventListener("load", function () {
        button.disabled = false;
        var answer = {};
        try { answer = JSON.parse(request.responseText); } catch (e) { answer = { message: "The server answered " + request.status + "." }; }
        status.textContent = answer.message || answer.detail || ("The server answered " + request.status + ".");
        status.className = request.status === 200 ? "notice" : "alert";
        if (request.status === 200) {
          var link = document.createElement("a");
          link.href = window.location.pathname;
          link.textContent = " Show the list";
          status.appendChild(link);
        }
      });
      request.addEventListener("error", function () {
        button.disabled = false;
        status.textContent = "The upload failed: the connection was lost.";
        status.className = "alert";
      });
      request.send(new FormData(form));
    });
  });

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var secret = button.parentElement.querySelector("[data-secret]");
      if (secret && navigator.clipboard) {
        navigator.clipboard.writeText(secret.textContent).then(function () { button.textContent = "Copied"; });
      }
    });
  });
})();
