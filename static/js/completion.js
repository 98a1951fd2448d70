/* The completion page: a button that copies the completion code (shown only where
 * the browser allows writing to the clipboard). Its words come from the page, in the
 * rater's language (data-copied, data-select). */
(function () {
  "use strict";
  var button = document.getElementById("copy-code");
  if (!button || !navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(button.dataset.code).then(
      function () { button.textContent = button.dataset.copied || "Copied"; },
      function () { button.textContent = button.dataset.select || "Select the code to copy it"; }
    );
  });
})();
