// Forms that change something hard to take back ask first: <form data-confirm="Question?">
// is submitted only if the researcher confirms. Without JavaScript the form posts as is.
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
})();
