// Draws the researcher pages' figures: Vega-Lite specifications that the server put in
// the page (Django's json_script), rendered by vega-embed from static/vendor/vega/.
//
// <div class="vega-figure" data-spec="ID" data-filename="NAME"> takes the JSON of
// <script id="ID" type="application/json">: either one specification, or
// {"default": AXIS, "specs": {AXIS: spec, ...}} with a radio group
// <fieldset data-axis-for="DIV-ID"> that switches between them.
//
// The Content-Security-Policy has no 'unsafe-eval': {ast: true} makes vega-embed use its
// bundled expression interpreter instead of compiling expressions with new Function.
// The action menu saves every figure as SVG or PNG (3x, for print).
(function () {
  "use strict";

  var OPTIONS = {
    ast: true,
    renderer: "svg",
    actions: { export: true, source: false, compiled: false, editor: false },
    scaleFactor: { png: 3, svg: 1 },
    // A click on a point with an href (the stimulus image) opens it in a new tab.
    loader: { target: "_blank", rel: "noopener" }
  };

  function fail(el, message) {
    el.setAttribute("data-rendered", "error");
    el.textContent = "The figure could not be drawn: " + message;
  }

  function draw(el, spec) {
    if (el._vegaView) {
      el._vegaView.finalize();
      el._vegaView = null;
    }
    var options = Object.assign({}, OPTIONS, {
      downloadFileName: el.getAttribute("data-filename") || "figure"
    });
    el.setAttribute("data-rendered", "pending");
    return window.vegaEmbed(el, spec, options).then(function (result) {
      el._vegaView = result.view;
      el.setAttribute("data-rendered", "true");
      return result;
    }).catch(function (err) {
      fail(el, err && err.message ? err.message : String(err));
    });
  }

  function setUp(el) {
    var holder = document.getElementById(el.getAttribute("data-spec"));
    if (!holder) { return; }
    var payload;
    try {
      payload = JSON.parse(holder.textContent);
    } catch (err) {
      fail(el, "bad specification");
      return;
    }
    if (!payload.specs) {
      draw(el, payload);
      return;
    }
    // Switchable x axis (agreement scatter: log or linear, and rank).
    el.setAttribute("data-axis", payload["default"]);
    draw(el, payload.specs[payload["default"]]);
    var control = document.querySelector('[data-axis-for="' + el.id + '"]');
    if (!control) { return; }
    control.addEventListener("change", function (event) {
      var axis = event.target.value;
      if (!payload.specs[axis]) { return; }
      el.setAttribute("data-axis", axis);
      draw(el, payload.specs[axis]);
    });
  }

  // Choosing an analysis or a dimension reloads the page with it (the form's button
  // does the same without JavaScript).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  var figures = document.querySelectorAll(".vega-figure[data-spec]");
  if (typeof window.vegaEmbed !== "function") {
    figures.forEach(function (el) { fail(el, "the plotting library did not load"); });
    return;
  }
  figures.forEach(setUp);
})();
