/* The completion page: a button that copies the completion code (shown only where
 * the browser allows writing to the clipboard). */
(function () {
  "use strict";
  var button = document.getElementById("copy-code");
  if (!button || !navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(button.dataset.code).then(
      function () { button.textContent = "Copied"; },
      function () { button.textContent = "Select the code to copy it"; }
    );
  });
})();
