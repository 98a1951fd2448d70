// Copy buttons: <button type="button" data-copy="INPUT-ID"> copies that field's value and
// says "Copied" for a moment. The Clipboard API needs a secure context and may be refused;
// then the field's text is selected and the older execCommand("copy") tried, and if that
// fails too the button asks for Ctrl+C / Cmd+C: never an error that stops the page.
(function () {
  "use strict";

  function say(button, text) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = text;
    clearTimeout(button._copyTimer);
    button._copyTimer = setTimeout(function () { button.textContent = label; }, 2000);
  }

  function fallback(field, button) {
    field.focus();
    field.select();
    var done = false;
    try { done = document.execCommand("copy"); } catch (err) { done = false; }
    say(button, done ? "Copied" : "Selected: press Ctrl+C");
  }

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      if (!field) { return; }
      var text = field.value !== undefined ? field.value : field.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () { say(button, "Copied"); },
          function () { fallback(field, button); }
        );
      } else {
        fallback(field, button);
      }
    });
  });
})();
