// Live progress bars for the scoring jobs table (no framework, no CDN).
(function () {
  "use strict";
  var table = document.getElementById("jobs");
  if (!table) { return; }
  var url = table.getAttribute("data-url");
  var labels = { queued: "Queued", running: "Running", done: "Done", failed: "Failed", cancelled: "Cancelled" };

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var active = false;
        data.jobs.forEach(function (job) {
          var row = table.querySelector('tr[data-job="' + job.id + '"]');
          if (!row) { return; }
          var bar = row.querySelector("progress");
          bar.max = job.total || 1;
          bar.value = job.done;
          row.querySelector(".count").textContent = job.done + "/" + job.total;
          var status = labels[job.status] || job.status;
          if (job.waiting_for_broker) { status += " (waiting for the broker)"; }
          row.querySelector(".status").firstChild.textContent = status;
          if (job.status === "queued" || job.status === "running") { active = true; }
        });
        if (active) { window.setTimeout(refresh, 2000); }
      })
      .catch(function () { window.setTimeout(refresh, 5000); });
  }
  window.setTimeout(refresh, 1500);
})();
