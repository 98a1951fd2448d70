// The stimuli pages (workspace/stimuli.html, stimuli_import.html), no framework:
// - the upload form is sent with XMLHttpRequest, so the upload shows a progress bar;
//   then the import job's JSON is polled for the import's bar. When it has finished
//   the gallery is loaded again with ?import=<id>: the counts, the filters and the
//   cards include the new stimuli, and the server shows that import's per-file report
//   (imported / skipped / rejected, with the reason) in the upload card.
//   Without JavaScript the form posts normally and leads to the job's page.
// - the job's page follows a running import and reloads itself when it has finished.
// - removing a stimulus asks first.
(function () {
  "use strict";

  function fetchJob(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      });
  }

  // Polls the job until it has finished; onUpdate sees every state, the promise the last.
  function follow(url, onUpdate) {
    return new Promise(function (resolve) {
      var delay = 400;
      function tick() {
        fetchJob(url).then(function (data) {
          onUpdate(data.job);
          if (data.job.finished) { resolve(data.job); return; }
          window.setTimeout(tick, delay);
          delay = Math.min(2000, Math.round(delay * 1.5));
        }).catch(function () { window.setTimeout(tick, 5000); });
      }
      tick();
    });
  }

  function setBar(bar, done, total) {
    bar.max = Math.max(total, 1);
    bar.value = Math.min(done, bar.max);
  }

  function importProgress(bar, label, job) {
    if (job.status === "done") {
      setBar(bar, job.total, job.total);
    } else if (job.total) {
      setBar(bar, job.done, job.total);
    }
    var words = job.done + " / " + job.total;
    if (job.waiting_for_broker) { words += " (waiting for the task broker)"; }
    label.textContent = words;
  }

  // --- The upload form ---------------------------------------------------------------
  var form = document.getElementById("upload-form");
  if (form && window.FormData && window.XMLHttpRequest) {
    var box = document.getElementById("upload-progress-box");
    var uploadBar = document.getElementById("upload-progress");
    var uploadText = document.getElementById("upload-progress-text");
    var importBar = document.getElementById("import-progress");
    var importText = document.getElementById("import-progress-text");
    var status = document.getElementById("upload-status");
    var report = document.getElementById("import-report");
    var submit = document.getElementById("upload-submit");

    var clearErrors = function () {
      Array.prototype.forEach.call(form.querySelectorAll(".field"), function (row) {
        row.classList.remove("has-error");
        var list = row.querySelector(".errorlist");
        if (list) { list.textContent = ""; list.hidden = true; }
      });
      var banner = document.getElementById("upload-form-error");
      if (banner) { banner.hidden = true; }
    };

    var fieldError = function (name, message) {
      var list = document.getElementById("id_" + name + "_error");
      if (!list) { return false; }
      // One item per line: a metadata CSV's bad rows come one to a line.
      String(message).split("\n").forEach(function (line) {
        var item = document.createElement("li");
        item.textContent = line;
        list.appendChild(item);
      });
      list.hidden = false;
      document.getElementById("row-" + name).classList.add("has-error");
      return true;
    };

    var say = function (message) { status.textContent = message; };

    // This page again (its filters and sorting kept, the page number dropped: the new
    // stimuli may move things), showing the import's report.
    var galleryWith = function (jobId) {
      var params = new URLSearchParams(window.location.search);
      params.delete("page");
      params.set("import", String(jobId));
      return report.getAttribute("data-gallery-url") + "?" + params.toString() + "#upload";
    };

    var finished = function (job) {
      submit.disabled = false;
      importProgress(importBar, importText, job);
      if (job.status === "done") {
        say("Import finished; loading the gallery with the new stimuli…");
        window.location.assign(galleryWith(job.id));
      } else if (job.status === "failed") {
        say("The import failed; nothing more was imported.");
        if (!fieldError(job.error_field || "files", job.error)) { say(job.error); }
      } else {
        say("The import was " + job.status + ".");
      }
    };

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clearErrors();
      report.hidden = true;
      var chosen = form.querySelector("input[name=files]").files;
      var maxFiles = parseInt(form.getAttribute("data-max-files"), 10);
      if (maxFiles && chosen.length > maxFiles) {
        // The server would refuse the whole request before reading it.
        fieldError("files", "At most " + maxFiles + " files at once: pack more into one zip archive.");
        return;
      }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
      xhr.setRequestHeader("Accept", "application/json");
      box.hidden = false;
      setBar(uploadBar, 0, 1);
      uploadText.textContent = "0 %";
      importBar.removeAttribute("value"); // indeterminate until the job answers
      importText.textContent = "";
      submit.disabled = true;
      say("Uploading…");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) { return; }
        setBar(uploadBar, e.loaded, e.total);
        uploadText.textContent = Math.floor(100 * e.loaded / Math.max(e.total, 1)) + " %";
      });
      xhr.upload.addEventListener("load", function () {
        setBar(uploadBar, 1, 1);
        uploadText.textContent = "100 %";
        say("Uploaded; checking the files…");
      });
      xhr.addEventListener("load", function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (ignore) { body = null; }
        if (xhr.status === 202 && body && body.job) {
          setBar(uploadBar, 1, 1);
          uploadText.textContent = "100 %";
          say(body.warning || "Importing…");
          importProgress(importBar, importText, body.job);
          follow(body.status_url, function (job) {
            importProgress(importBar, importText, job);
          }).then(finished);
          return;
        }
        submit.disabled = false;
        box.hidden = true;
        if (xhr.status === 400 && body && body.fields) {
          var shown = false;
          Object.keys(body.fields).forEach(function (name) {
            shown = fieldError(name, body.fields[name]) || shown;
          });
          say(shown ? "The upload was refused; nothing was imported." : body.detail);
        } else {
          say("The upload failed (HTTP " + xhr.status + ")" +
            (body && body.detail ? ": " + body.detail : "") + "; nothing was imported.");
        }
      });
      xhr.addEventListener("error", function () {
        submit.disabled = false;
        say("The upload was interrupted (network error); nothing was imported.");
      });
      xhr.send(new FormData(form));
    });
  }

  // --- A job's page: follow it while it runs ---------------------------------------
  var jobBox = document.getElementById("import-job");
  if (jobBox && jobBox.getAttribute("data-finished") !== "1") {
    var bar = document.getElementById("import-progress");
    var label = document.getElementById("import-progress-text");
    follow(jobBox.getAttribute("data-status-url"), function (job) {
      importProgress(bar, label, job);
    }).then(function () { window.location.reload(); });
  }

  // --- Removal asks first ----------------------------------------------------------
  Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (f) {
    f.addEventListener("submit", function (event) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  var bulk = document.getElementById("bulk-form");
  if (bulk) {
    bulk.addEventListener("submit", function (event) {
      var remove = event.submitter && event.submitter.value === "remove";
      if (remove && !window.confirm(bulk.getAttribute("data-confirm-remove"))) {
        event.preventDefault();
      }
    });
  }
})();
