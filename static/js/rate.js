/* The rating and practice page.
 *
 * Sliders start untouched (no default answer); submit waits until every slider was
 * touched and the image was shown for the study's minimum time. Answers go out as
 * JSON with a client id that stays the same across retries of one image, so a
 * network failure never writes twice. The next image is preloaded as soon as the
 * server names it, and swapped in place. All data comes from the JSON block
 * #rate-config: the page has no inline script (a CSP forbids them).
 */
(function () {
  "use strict";

  var configNode = document.getElementById("rate-config");
  if (!configNode) return;
  var cfg = JSON.parse(configNode.textContent);

  function $(id) {
    return document.getElementById(id);
  }

  var form = $("rate-form");
  var img = $("stimulus");
  var stage = $("stage");
  var work = $("work");
  var submitBtn = $("rate-submit");
  var hint = $("rate-hint");
  var toast = $("rate-status");
  var feedback = $("feedback");
  var breakPanel = $("break");
  var sliders = Array.prototype.slice.call(form.querySelectorAll("input.slider"));
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var training = cfg.mode === "training";
  var minView = Number(cfg.min_view_seconds) || 0;
  var anchors = cfg.scale.anchors; // [[value, label], ...]
  var NAV_KEYS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"];

  var current = cfg.stimulus; // the stimulus on screen
  var clientId = newClientId();
  var shownAt = null; // performance.now() when the image became visible
  var busy = false;
  var failed = false; // the image did not load
  var toastTimer = null;

  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    // Older browsers and non-secure origins: an RFC 4122 version 4 UUID by hand.
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) {
      return (x + 0x100).toString(16).slice(1);
    }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      setTimeout(resolve, ms);
    });
  }

  function say(text, kind, hideAfterMs) {
    clearTimeout(toastTimer);
    if (!text) {
      toast.hidden = true;
      toast.textContent = "";
      return;
    }
    toast.className = "toast toast-" + (kind || "info");
    toast.textContent = text;
    toast.hidden = false;
    if (hideAfterMs) toastTimer = setTimeout(function () { say(""); }, hideAfterMs);
  }

  // --- Sliders ---------------------------------------------------------------------

  function anchorFor(value) {
    var best = anchors[0];
    anchors.forEach(function (a) {
      if (Math.abs(a[0] - value) < Math.abs(best[0] - value)) best = a;
    });
    return best[1];
  }

  function describe(slider) {
    var out = $("val-" + slider.name);
    if (!slider.dataset.touched) {
      slider.setAttribute("aria-valuetext", "not rated yet");
      out.textContent = "–";
      return;
    }
    var value = Number(slider.value);
    var text = value + " (" + anchorFor(value) + ")";
    slider.setAttribute("aria-valuetext", text);
    out.textContent = text;
  }

  function touch(slider) {
    if (slider.dataset.touched) return;
    slider.dataset.touched = "1";
    slider.classList.remove("untouched");
    describe(slider);
    refresh();
  }

  function resetSliders() {
    sliders.forEach(function (s) {
      s.value = s.defaultValue;
      delete s.dataset.touched;
      s.classList.add("untouched");
      describe(s);
    });
  }

  sliders.forEach(function (s) {
    s.addEventListener("input", function () {
      touch(s);
      describe(s);
      refresh();
    });
    s.addEventListener("change", function () {
      touch(s);
      describe(s);
    });
    // A click exactly on the middle changes nothing, but is still an answer.
    s.addEventListener("pointerup", function () { touch(s); });
    s.addEventListener("keydown", function (event) {
      if (NAV_KEYS.indexOf(event.key) !== -1) touch(s);
    });
  });

  // --- Submit gate ---------------------------------------------------------------------

  function untouchedCount() {
    return sliders.filter(function (s) { return !s.dataset.touched; }).length;
  }

  function secondsLeft() {
    if (shownAt === null) return Infinity;
    return Math.max(0, minView - (performance.now() - shownAt) / 1000);
  }

  function canSubmit() {
    return !busy && shownAt !== null && untouchedCount() === 0 && secondsLeft() === 0;
  }

  function refresh() {
    var left = untouchedCount();
    var wait = secondsLeft();
    var text;
    if (busy) text = "Sending…";
    else if (failed) text = "The image could not be loaded: please reload the page.";
    else if (shownAt === null) text = "Loading the image…";
    else if (left > 0) text = left === 1 ? "Move the last slider to continue." : "Move every slider to continue (" + left + " left).";
    else if (wait > 0) text = "Please keep looking at the image: " + Math.ceil(wait) + " s.";
    else text = "Ready: press Enter or the button.";
    if (hint.textContent !== text) hint.textContent = text;
    submitBtn.disabled = !canSubmit();
  }
  setInterval(refresh, 200);

  function startViewing() {
    shownAt = performance.now();
    stage.classList.remove("loading");
    refresh();
    sliders[0].focus({ preventScroll: true });
  }

  function imageFailed() {
    failed = true;
    stage.classList.remove("loading");
    stage.classList.add("failed");
    say("The image could not be loaded. Please reload the page to try again.", "error");
  }

  function whenLoaded(image) {
    return new Promise(function (resolve, reject) {
      if (image.complete) {
        if (image.naturalWidth) resolve();
        else reject(new Error("image failed"));
        return;
      }
      image.addEventListener("load", function () { resolve(); }, { once: true });
      image.addEventListener("error", function () { reject(new Error("image failed")); }, { once: true });
    });
  }

  function preload(url) {
    var next = new Image();
    next.src = url;
    return whenLoaded(next);
  }

  function setProgress(progress) {
    if (!progress) return;
    var bar = $("progress-bar");
    bar.max = Math.max(progress.planned, 1);
    bar.value = Math.min(progress.done, bar.max);
    var position = Math.min(progress.done + 1, Math.max(progress.planned, 1));
    $("progress-text").textContent = (training ? "Example " : "Image ") + position + " of " + progress.planned;
  }

  async function show(stimulus, progress) {
    shownAt = null;
    stage.classList.add("loading");
    refresh();
    try {
      await preload(stimulus.image_url);
    } catch (err) {
      imageFailed();
      return;
    }
    failed = false;
    stage.classList.remove("failed");
    current = stimulus;
    clientId = newClientId();
    resetSliders();
    setProgress(progress);
    img.width = stimulus.width;
    img.height = stimulus.height;
    img.dataset.id = String(stimulus.id);
    img.src = stimulus.image_url;
    try {
      await img.decode();
    } catch (err) {
      /* decode() may reject for cached images on some browsers; load is what counts */
    }
    breakPanel.hidden = true;
    feedback.hidden = true;
    form.hidden = false;
    work.hidden = false;
    window.scrollTo(0, 0);
    startViewing();
  }

  // --- Talking to the server ---------------------------------------------------------

  async function call(url, options) {
    // Network failures and 5xx are retried with the same body (the same client id),
    // so a rating is never written twice; 4xx answers are final.
    for (var attempt = 1; ; attempt++) {
      try {
        var response = await fetch(url, options);
        if (response.status >= 500) throw new Error("server error " + response.status);
        var body;
        try {
          body = await response.json();
        } catch (err) {
          body = { error: "http_" + response.status, detail: "The server answered " + response.status + ".", fields: {} };
        }
        if (attempt > 1) say("Connected again.", "ok", 2500);
        return { status: response.status, body: body };
      } catch (err) {
        var wait = Math.min(15, Math.pow(2, Math.min(attempt - 1, 4)));
        say("Connection problem: your answer is kept and will be sent again in " + wait + " s (try " + attempt + ").", "warn");
        await sleep(wait * 1000);
      }
    }
  }

  function post(url, payload) {
    return call(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify(payload),
    });
  }

  function collectScores() {
    var scores = {};
    sliders.forEach(function (s) { scores[s.name] = Number(s.value); });
    return scores;
  }

  async function send() {
    if (!canSubmit()) return;
    busy = true;
    refresh();
    var payload = {
      stimulus: current.id,
      scores: collectScores(),
      client_id: clientId,
      viewing_seconds: Math.round(performance.now() - shownAt) / 1000,
    };
    var result = await post(cfg.submit_url, payload);
    busy = false;
    if (training) handleTraining(result);
    else handleRating(result);
    refresh();
  }

  function handleRating(result) {
    var body = result.body;
    if (result.status === 200 || result.status === 201) {
      proceed(body.progress, body.next);
      return;
    }
    if (result.status === 403 || body.error === "wrong_stage") {
      window.location.assign(cfg.entry_url); // the entry page explains why
      return;
    }
    if (body.error === "too_fast") {
      // The server counts the viewing time too (from when the image was assigned):
      // keep the answers on the page; submitting again a moment later goes through.
      say(body.detail, "warn", 6000);
      return;
    }
    if (result.status === 409 || result.status === 404) {
      // The image is no longer ours (claim expired and given away, ...): move on.
      say(body.detail || "This image is no longer available.", "warn", 6000);
      loadNext();
      return;
    }
    say((body.detail || "Your answer was refused.") + " Please check your answers and try again.", "error");
  }

  function handleTraining(result) {
    var body = result.body;
    if (result.status !== 200) {
      if (result.status === 403 || result.status === 409) window.location.assign(cfg.entry_url);
      else say(body.detail || "Your answer was refused.", "error");
      return;
    }
    form.hidden = true;
    feedback.hidden = false;
    $("feedback-text").textContent = body.feedback.message;
    shownAt = null;
    var next = body.next;
    if (next.step === "train") preload(next.stimulus.image_url).catch(function () {});
    var button = $("feedback-continue");
    button.textContent = next.step === "train" ? "Next example" : "Start rating";
    button.onclick = function () {
      button.disabled = true;
      if (next.step === "train") {
        show(next.stimulus, body.progress).then(function () { button.disabled = false; });
      } else {
        window.location.assign(next.url || cfg.entry_url);
      }
    };
    button.focus();
  }

  function proceed(progress, next) {
    if (next.step === "rate") {
      show(next.stimulus, progress);
    } else if (next.step === "break") {
      showBreak(progress);
    } else {
      window.location.assign(next.url || cfg.entry_url);
    }
  }

  function showBreak(progress) {
    shownAt = null;
    setProgress(progress);
    work.hidden = true;
    breakPanel.hidden = false;
    $("break-text").textContent =
      "You have rated " + progress.done + " of " + progress.planned + " images. Rest your eyes for a moment and continue when you are ready.";
    var button = $("break-continue");
    button.disabled = false;
    button.focus();
  }

  async function loadNext() {
    var result = await call(cfg.next_url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (result.status !== 200) {
      window.location.assign(cfg.entry_url);
      return;
    }
    proceed(result.body.progress, result.body.next);
  }

  // --- Wiring --------------------------------------------------------------------------

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    send();
  });
  form.addEventListener("keydown", function (event) {
    // Range inputs have no implicit submission: Enter on a slider submits when allowed.
    if (event.key !== "Enter") return;
    if (event.target === submitBtn || event.target.classList.contains("slider")) {
      event.preventDefault();
      send();
    }
  });
  $("break-continue").addEventListener("click", function () {
    this.disabled = true;
    loadNext();
  });
  $("toggle-defs").addEventListener("click", function () {
    var hidden = form.classList.toggle("defs-hidden");
    this.setAttribute("aria-expanded", String(!hidden));
    this.textContent = (hidden ? "Show" : "Hide") + " definitions";
  });
  submitBtn.setAttribute("aria-describedby", "rate-hint");

  resetSliders();
  whenLoaded(img).then(startViewing, imageFailed);
})();
