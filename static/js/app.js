// channelmgr: the little JavaScript the pages need; everything also works without it.
// Served from our own static files (the Content Security Policy allows no inline script).
(function () {
  "use strict";

  // Copy buttons: <button data-copy="#element-id">; the text field stays selectable without JS.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.querySelector(button.getAttribute("data-copy"));
    if (!field) return;
    var done = function () {
      var label = button.textContent;
      button.textContent = button.getAttribute("data-copied") || "Copied";
      setTimeout(function () { button.textContent = label; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done);
    } else {
      field.select();
      document.execCommand("copy");
      done();
    }
  });

  // Reveal buttons: <button data-reveal="#id"> swaps a masked value for the full one it holds.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-reveal]");
    if (!button) return;
    var target = document.querySelector(button.getAttribute("data-reveal"));
    if (!target) return;
    target.textContent = target.getAttribute("data-full");
    button.remove();
  });

  // Toasts fade after a while.
  document.addEventListener("htmx:afterSettle", prune);
  document.addEventListener("DOMContentLoaded", prune);
  function prune() {
    document.querySelectorAll(".toast:not([data-timer])").forEach(function (toast) {
      toast.setAttribute("data-timer", "1");
      setTimeout(function () { toast.remove(); }, 6000);
    });
  }
})();
