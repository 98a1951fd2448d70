/* The rating and practice page.
 *
 * Sliders start untouched (no default answer); submit waits until every slider was
 * touched and the image was shown for the study's minimum time. Answers go out as
 * JSON with a client id that stays the same across retries of one image, so a
 * network failure never writes twice. The next image is preloaded as soon as the
 * server names it, and swapped in place. All data comes from the JSON block
 * #rate-config: the page has no inline script (a CSP forbids them).
 *
 * Focus is never lost: while submit is not allowed, Enter (and Tab from the last
 * control) says what is missing and moves to the first unset slider. Answers not
 * yet sent are kept in the tab (sessionStorage, per claim), so a reload restores
 * them; a tab whose image was rated elsewhere (a second tab) keeps them and says so.
 * A break is kept by the server: the page shows its time left.
 *
 * Every word it shows comes from Django's JavaScript catalogue in the rater's
 * language (/s/<slug>/i18n.js, loaded first); English when it did not load.
 */
(function () {
  "use strict";

  var configNode = document.getElementById("rate-config");
  if (!configNode) return;

  var gettext = window.gettext || function (text) { return text; };
  var interpolate = window.interpolate || function (fmt, values) {
    return fmt.replace(/%\((\w+)\)s/g, function (_, name) { return String(values[name]); });
  };
  function words(fmt, values) {
    return interpolate(fmt, values, true);
  }
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
  var breakButton = $("break-continue");
  var nextUnsetBtn = $("next-unset");
  var sliders = Array.prototype.slice.call(form.querySelectorAll("input.slider"));
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var training = cfg.mode === "training";
  var minView = Number(cfg.min_view_seconds) || 0;
  var anchors = cfg.scale.anchors; // [[value, label], ...]
  var NAV_KEYS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"];

  var current = cfg.stimulus; // the stimulus on screen
  var storeKey = keyFor(current, cfg.claim); // where its unsent answers are kept
  var stale = false; // the image was rated or moved on in another tab: reload to go on
  var breakEndsAt = 0; // performance.now() when the break is over
  var breakTimer = null;
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

  // --- Unsent answers, kept in the tab -----------------------------------------------
  // Keyed by the claim (a repeat of an image is a new claim and starts untouched), or
  // by the example in training. Storage may be unavailable (private modes): then the
  // answers live on the page only.

  function keyFor(stimulus, claimId) {
    if (!stimulus) return null;
    var which = claimId != null ? "claim-" + claimId : "stimulus-" + stimulus.id;
    return "rate:" + cfg.entry_url + ":" + cfg.mode + ":" + which;
  }

  function saveAnswers() {
    if (!storeKey) return;
    var answers = {};
    sliders.forEach(function (s) {
      if (s.dataset.touched) answers[s.name] = s.value;
    });
    try {
      window.sessionStorage.setItem(storeKey, JSON.stringify(answers));
    } catch (err) {
      /* no storage: nothing more to do */
    }
  }

  function restoreAnswers() {
    var answers = null;
    try {
      answers = storeKey && JSON.parse(window.sessionStorage.getItem(storeKey) || "null");
    } catch (err) {
      answers = null;
    }
    if (!answers) return;
    sliders.forEach(function (s) {
      if (!Object.prototype.hasOwnProperty.call(answers, s.name)) return;
      s.value = answers[s.name];
      s.dataset.touched = "1";
      s.classList.remove("untouched");
      describe(s);
    });
  }

  function forgetAnswers() {
    try {
      if (storeKey) window.sessionStorage.removeItem(storeKey);
    } catch (err) {
      /* no storage */
    }
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
      slider.setAttribute("aria-valuetext", gettext("not rated yet"));
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
    saveAnswers();
    refresh();
  }

  function labelOf(slider) {
    var label = form.querySelector('label[for="' + slider.id + '"]');
    return label ? label.textContent.trim() : slider.name;
  }

  function firstUnset() {
    return sliders.filter(function (s) { return !s.dataset.touched; })[0] || null;
  }

  function focusSlider(slider) {
    slider.focus({ preventScroll: true });
    slider.scrollIntoView({ block: "center" });
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
      saveAnswers();
      refresh();
    });
    s.addEventListener("change", function () {
      touch(s);
      describe(s);
      saveAnswers();
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
    return (
      !busy && !stale && !refusedHere && shownAt !== null && untouchedCount() === 0 && secondsLeft() === 0
    );
  }

  // Why submit is not allowed yet, said aloud (the toast is a live region); with
  // moveFocus, focus goes where the answer is missing instead of off the form.
  function explainBlocked(moveFocus) {
    if (busy) return;
    if (stale) {
      $("rate-reload").focus();
      return;
    }
    var missing = firstUnset();
    if (missing) {
      var left = untouchedCount();
      say(
        left > 1
          ? words(gettext("Not sent yet: move the slider “%(label)s” (%(left)s sliders still unset)."), { label: labelOf(missing), left: left })
          : words(gettext("Not sent yet: move the slider “%(label)s”."), { label: labelOf(missing) }),
        "warn",
        6000
      );
      if (moveFocus) focusSlider(missing);
    } else if (failed) {
      say(gettext("The image could not be loaded: please reload the page."), "error");
    } else if (shownAt === null) {
      say(gettext("The image is still loading."), "info", 3000);
    } else if (secondsLeft() > 0) {
      say(words(gettext("Not sent yet: please keep looking at the image for %(seconds)s s more, then press Enter."), { seconds: Math.ceil(secondsLeft()) }), "warn", 4000);
    }
  }

  function refresh() {
    var left = untouchedCount();
    var wait = secondsLeft();
    var text;
    var missing = firstUnset();
    if (busy) text = gettext("Sending…");
    else if (stale) text = gettext("Your answers here were not sent: reload the page to continue.");
    else if (failed) text = gettext("The image could not be loaded: please reload the page.");
    else if (shownAt === null) text = gettext("Loading the image…");
    else if (left > 0) {
      text = left === 1
        ? words(gettext("Move the last slider, “%(label)s”, to continue."), { label: labelOf(missing) })
        : words(gettext("Move every slider to continue (%(left)s left, next: “%(label)s”)."), { left: left, label: labelOf(missing) });
    } else if (wait > 0) text = words(gettext("Please keep looking at the image: %(seconds)s s."), { seconds: Math.ceil(wait) });
    else text = gettext("Ready: press Enter or the button.");
    if (hint.textContent !== text) hint.textContent = text;
    submitBtn.disabled = !canSubmit();
    nextUnsetBtn.hidden = left === 0 || stale || form.hidden;
  }
  setInterval(refresh, 200);

  function startViewing() {
    shownAt = performance.now();
    stage.classList.remove("loading");
    refresh();
    (firstUnset() || sliders[0]).focus({ preventScroll: true });
  }

  function imageFailed() {
    failed = true;
    stage.classList.remove("loading");
    stage.classList.add("failed");
    say(gettext("The image could not be loaded. Please reload the page to try again."), "error");
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
    var counts = { position: position, planned: progress.planned };
    $("progress-text").textContent = training
      ? words(gettext("Example %(position)s of %(planned)s"), counts)
      : words(gettext("Image %(position)s of %(planned)s"), counts);
  }

  async function show(stimulus, progress, claimId) {
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
    storeKey = keyFor(stimulus, claimId);
    clientId = newClientId();
    resetSliders();
    restoreAnswers();
    setProgress(progress);
    img.width = stimulus.width;
    img.height = stimulus.height;
    sizeImage(stimulus.width, stimulus.height);
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
    work.hidden = refusedHere;
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
          body = { error: "http_" + response.status, detail: words(gettext("The server answered %(status)s."), { status: response.status }), fields: {} };
        }
        if (attempt > 1) say(gettext("Connected again."), "ok", 2500);
        return { status: response.status, body: body };
      } catch (err) {
        var wait = Math.min(15, Math.pow(2, Math.min(attempt - 1, 4)));
        say(words(gettext("Connection problem: your answer is kept and will be sent again in %(seconds)s s (try %(attempt)s)."), { seconds: wait, attempt: attempt }), "warn");
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

  // --- Viewing conditions (annotation.viewing) --------------------------------------
  // Sent with every rating: the window and screen, the pixel ratio, the pinch zoom,
  // the browser's family and whether it is a touch device; and the size the image
  // was shown at, in CSS and device pixels. The study's options are checked here
  // before any rating (and again by the server, which refuses what breaks them).
  var rules = cfg.viewing || {};
  var touchDevice =
    (window.matchMedia && window.matchMedia("(pointer: coarse)").matches) ||
    (navigator.maxTouchPoints || 0) > 0;

  function browserFamily() {
    var ua = navigator.userAgent || "";
    if (/Edg\//.test(ua)) return "Edge";
    if (/Firefox\//.test(ua)) return "Firefox";
    if (/Chrome\/|Chromium\//.test(ua)) return "Chrome";
    if (/Safari\//.test(ua)) return "Safari";
    return "other";
  }

  function viewingNow() {
    var zoom = window.visualViewport ? window.visualViewport.scale : null;
    // A size the browser does not know (0, e.g. in a hidden frame) is "not reported".
    function size(n) {
      n = Math.round(n);
      return n >= 1 ? n : null;
    }
    return {
      viewport_width: size(window.innerWidth),
      viewport_height: size(window.innerHeight),
      screen_width: size(window.screen.width),
      screen_height: size(window.screen.height),
      device_pixel_ratio: Math.round((window.devicePixelRatio || 1) * 1000) / 1000,
      zoom: zoom === null ? null : Math.round(zoom * 1000) / 1000,
      browser: browserFamily(),
      touch: touchDevice,
    };
  }

  function displayNow() {
    var box = img.getBoundingClientRect();
    var ratio = window.devicePixelRatio || 1;
    return {
      css_width: Math.max(1, Math.round(box.width)),
      css_height: Math.max(1, Math.round(box.height)),
      device_width: Math.max(1, Math.round(box.width * ratio)),
      device_height: Math.max(1, Math.round(box.height * ratio)),
    };
  }

  // What keeps this browser out of the study, in words; "" when nothing does.
  function conditionsRefused() {
    if (rules.refuse_touch && touchDevice) {
      return gettext("This study cannot be done on a phone or a touch device. Please open the same link on a computer with a mouse.");
    }
    var width = rules.min_viewport_width || 0;
    var height = rules.min_viewport_height || 0;
    if (window.innerWidth < width || window.innerHeight < height) {
      return words(
        gettext("Your browser window is too small for this study: make it at least %(width)s × %(height)s pixels (now %(now_width)s × %(now_height)s), for example by maximising it or zooming out."),
        { width: width, height: height, now_width: Math.round(window.innerWidth), now_height: Math.round(window.innerHeight) }
      );
    }
    return "";
  }

  // The study's conditions, checked now and whenever the window changes: while they
  // are not met the image is hidden (its viewing time starts again once they are).
  var refusedHere = false;
  function applyConditions() {
    var why = conditionsRefused();
    var notice = $("viewing-refused");
    notice.textContent = why;
    notice.hidden = !why;
    if (!!why === refusedHere) return;
    refusedHere = !!why;
    if (breakPanel.hidden) work.hidden = refusedHere;
    if (!refusedHere && shownAt !== null) shownAt = performance.now();
    refresh();
  }
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(applyConditions, 150);
  });

  // Native device pixels: one image pixel on one screen pixel (never upscaled; an
  // image wider than the space left is scaled down, and the size sent says so).
  function sizeImage(width, height) {
    if (!rules.native_pixels) return;
    var ratio = window.devicePixelRatio || 1;
    img.style.width = width / ratio + "px";
    img.style.height = height / ratio + "px";
    img.style.maxWidth = "none";
    img.style.maxHeight = "none";
    img.classList.add("native-pixels");
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
    if (!training) {
      payload.display = displayNow();
      payload.viewing = viewingNow();
    }
    var result = await post(cfg.submit_url, payload);
    busy = false;
    if (training) handleTraining(result);
    else handleRating(result);
    refresh();
    if (result.status >= 400) keepFocus();
  }

  // The submit button loses focus while it is disabled (sending): when the answer was
  // refused and the form is still there, focus comes back to it (or what is missing).
  function keepFocus() {
    var active = document.activeElement;
    if (form.hidden || work.hidden || (active && active !== document.body)) return;
    if (stale) $("rate-reload").focus();
    else if (canSubmit()) submitBtn.focus();
    else (firstUnset() || sliders[sliders.length - 1]).focus({ preventScroll: true });
  }

  function handleRating(result) {
    var body = result.body;
    if (result.status === 200 || result.status === 201) {
      forgetAnswers();
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
      say(gettext("Not sent yet: the image was shown for less than the study asks. Look at it a moment longer and submit again."), "warn", 6000);
      return;
    }
    if (body.error === "no_claim") {
      // Another tab (or window) of this session rated this image or moved on: the
      // answers stay here, unsent, and the rater is told to reload (never dropped).
      stale = true;
      saveAnswers();
      say(
        gettext(
          "This image was already rated or skipped in another tab or window of this study, " +
            "so the answers on this page were not sent. They are kept here. " +
            "Reload the page to continue with your current image."
        ),
        "warn"
      );
      $("rate-reload").hidden = false;
      $("rate-reload").focus();
      return;
    }
    if (body.error === "viewing_conditions") {
      // The server found the conditions broken (the window changed since the check):
      // the answers stay, and the page says what to change.
      saveAnswers();
      applyConditions();
      say(conditionsRefused() || gettext("Your screen does not meet this study's viewing conditions: please use a larger window on a computer."), "error");
      return;
    }
    if (result.status === 409 || result.status === 404) {
      // The image is no longer ours (claim expired and given away, ...): move on.
      say(gettext("This image is no longer available: here is the next one."), "warn", 6000);
      loadNext();
      return;
    }
    say(gettext("Your answer was refused. Please check your answers and try again."), "error");
  }

  function handleTraining(result) {
    var body = result.body;
    if (result.status !== 200) {
      if (result.status === 403 || result.status === 409) window.location.assign(cfg.entry_url);
      else say(gettext("Your answer was refused. Please check your answers and try again."), "error");
      return;
    }
    forgetAnswers();
    form.hidden = true;
    feedback.hidden = false;
    $("feedback-text").textContent = body.feedback.message;
    shownAt = null;
    var next = body.next;
    if (next.step === "train") preload(next.stimulus.image_url).catch(function () {});
    var button = $("feedback-continue");
    button.textContent = next.step === "train" ? gettext("Next example") : gettext("Start rating");
    button.onclick = function () {
      button.disabled = true;
      if (next.step === "train") {
        show(next.stimulus, body.progress, null).then(function () { button.disabled = false; });
      } else {
        window.location.assign(next.url || cfg.entry_url);
      }
    };
    button.focus();
  }

  function proceed(progress, next) {
    if (next.step === "rate") {
      show(next.stimulus, progress, next.claim);
    } else if (next.step === "break") {
      showBreak(progress, next);
    } else {
      window.location.assign(next.url || cfg.entry_url);
    }
  }

  // The server keeps the break (a reload shows it again): its time left counts down
  // on the button, which keeps the focus and says how long is left when pressed early.
  function breakLeft() {
    return Math.max(0, Math.ceil((breakEndsAt - performance.now()) / 1000));
  }

  function tickBreak() {
    var left = breakLeft();
    if (left > 0) {
      breakButton.setAttribute("aria-disabled", "true");
      breakButton.textContent = words(gettext("Continue in %(seconds)s s"), { seconds: left });
      return;
    }
    clearInterval(breakTimer);
    if (breakButton.hasAttribute("aria-disabled")) {
      breakButton.removeAttribute("aria-disabled");
      $("break-wait").textContent = gettext("Your break is over: continue when you are ready.");
    }
    breakButton.textContent = gettext("Continue");
  }

  function showBreak(progress, step) {
    shownAt = null;
    setProgress(progress);
    work.hidden = true;
    breakPanel.hidden = false;
    $("break-text").textContent = words(
      gettext("You have rated %(done)s of %(planned)s images. Rest your eyes for a moment and continue when you are ready."),
      { done: progress.done, planned: progress.planned }
    );
    $("break-wait").textContent = "";
    breakEndsAt = performance.now() + 1000 * Number((step && step.seconds_left) || 0);
    clearInterval(breakTimer);
    tickBreak();
    if (breakLeft() > 0) breakTimer = setInterval(tickBreak, 250);
    breakButton.disabled = false;
    breakButton.focus();
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
    var target = event.target;
    if (event.key === "Enter") {
      // Range inputs have no implicit submission: Enter on a slider submits when
      // allowed, and otherwise says what is missing (and goes there).
      if (target === submitBtn || target.classList.contains("slider")) {
        event.preventDefault();
        if (canSubmit()) send();
        else explainBlocked(true);
      }
      return;
    }
    // Tab from the last control while submit is disabled would leave the form (the
    // button cannot take focus): say what is missing and go there instead.
    var last = target === sliders[sliders.length - 1] || target === nextUnsetBtn;
    if (event.key === "Tab" && !event.shiftKey && last && !canSubmit() && !stale) {
      event.preventDefault();
      explainBlocked(true);
    }
  });
  nextUnsetBtn.addEventListener("click", function () {
    var missing = firstUnset();
    if (missing) focusSlider(missing);
  });
  $("rate-reload").addEventListener("click", function () {
    window.location.reload();
  });
  breakButton.addEventListener("click", function () {
    var left = breakLeft();
    if (left > 0) {
      $("break-wait").textContent = words(gettext("Please rest a little longer: %(seconds)s s left."), { seconds: left });
      return;
    }
    this.disabled = true;
    loadNext();
  });
  $("toggle-defs").addEventListener("click", function () {
    var hidden = form.classList.toggle("defs-hidden");
    this.setAttribute("aria-expanded", String(!hidden));
    this.textContent = hidden ? gettext("Show definitions") : gettext("Hide definitions");
  });
  submitBtn.setAttribute("aria-describedby", "rate-hint");

  // Sliders the rater moved before this script ran (it loads after the page shows,
  // behind the language catalogue) keep their answer: they count as touched.
  var movedEarly = sliders.filter(function (s) { return s.value !== s.defaultValue; });
  var early = movedEarly.map(function (s) { return s.value; });
  resetSliders();
  if (current) sizeImage(current.width, current.height);
  applyConditions();
  if (cfg["break"]) {
    // Opened (or reloaded) during a break: the break again, with the time it has left.
    showBreak(cfg.progress, cfg["break"]);
  } else {
    restoreAnswers();
    movedEarly.forEach(function (s, i) {
      s.value = early[i];
      touch(s);
    });
    whenLoaded(img).then(startViewing, imageFailed);
  }
  form.dataset.ready = "true"; // for tests and tools: the script is in charge now
})();
