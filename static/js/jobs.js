// Live state of a study's jobs (no framework, no CDN), from the study's jobs.json:
// the scoring jobs' progress bars on the agreement page (#jobs) and the analyses'
// status on the study page (#analyses: queued / running / done / failed).
(function () {
  "use strict";
  var jobsTable = document.getElementById("jobs");
  var analysesTable = document.getElementById("analyses");
  var table = jobsTable || analysesTable;
  if (!table) { return; }
  var url = table.getAttribute("data-url");
  var labels = { queued: "Queued", running: "Running", done: "Done", failed: "Failed", cancelled: "Cancelled" };
  var ACTIVE = { queued: true, running: true };

  function updateJobs(jobs) {
    var active = false;
    jobs.forEach(function (job) {
      var row = jobsTable.querySelector('tr[data-job="' + job.id + '"]');
      if (!row) { return; }
      var bar = row.querySelector("progress");
      bar.max = job.total || 1;
      bar.value = job.done;
      row.querySelector(".count").textContent = job.done + "/" + job.total;
      var status = labels[job.status] || job.status;
      if (job.waiting_for_broker) { status += " (waiting for the broker)"; }
      row.querySelector(".status").firstChild.textContent = status;
      if (ACTIVE[job.status]) { active = true; }
    });
    return active;
  }

  function updateAnalyses(analyses) {
    var active = false;
    var finishedNow = [];
    analyses.forEach(function (a) {
      var row = analysesTable.querySelector('tr[data-analysis="' + a.id + '"]');
      if (!row) { return; }
      var before = row.getAttribute("data-status");
      var badge = row.querySelector(".status .badge");
      if (before !== a.status) {
        row.setAttribute("data-status", a.status);
        badge.textContent = a.status_label;
        badge.className = "badge status-" + a.status;
        if (a.error && !row.querySelector(".status .error-text")) {
          var small = document.createElement("small");
          small.className = "error-text";
          small.textContent = a.error;
          row.querySelector(".status").appendChild(document.createElement("br"));
          row.querySelector(".status").appendChild(small);
        }
        if (a.status === "done") {
          var show = row.querySelector(".show");
          show.textContent = "";
          var link = document.createElement("a");
          link.href = "?analysis=" + a.id;
          link.textContent = "show";
          show.appendChild(link);
          finishedNow.push(a.id);
        }
      } else {
        badge.textContent = a.status_label;  // e.g. no longer waiting for the broker
      }
      if (ACTIVE[a.status]) { active = true; }
    });
    if (finishedNow.length) {
      var note = document.getElementById("analyses-note");
      if (note) {
        note.textContent = "";
        note.appendChild(document.createTextNode("Analysis " + finishedNow.join(", ") + " finished: "));
        var link = document.createElement("a");
        link.href = "?analysis=" + finishedNow[0];
        link.textContent = "show its results";
        note.appendChild(link);
        note.appendChild(document.createTextNode("."));
      }
    }
    return active;
  }

  function anyActive() {
    return Array.prototype.some.call(
      table.querySelectorAll("tr[data-status], td.status"),
      function (el) {
        var status = el.getAttribute("data-status");
        if (status) { return ACTIVE[status]; }
        return /^(Queued|Running)/.test(el.textContent.trim());
      }
    );
  }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var active = false;
        if (jobsTable && data.jobs) { active = updateJobs(data.jobs) || active; }
        if (analysesTable && data.analyses) { active = updateAnalyses(data.analyses) || active; }
        if (active) { window.setTimeout(refresh, 2000); }
      })
      .catch(function () { window.setTimeout(refresh, 5000); });
  }
  // Poll only while something is queued or running (a finished page stays quiet).
  if (anyActive()) { window.setTimeout(refresh, 1500); }
})();
