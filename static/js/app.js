// channelmgr: the little JavaScript the pages need; everything also works without it.
// Served from our own static files (the Content Security Policy allows no inline script).
(function () {
  "use strict";

  // Copy buttons: <button data-copy="#field-id" data-copied="Copied" data-copy-failed="...">.
  // The field is a visible, read-only text field: without JavaScript, or when the browser refuses
  // to copy (the clipboard API needs https or localhost), the text is selected in it for the
  // person to copy by hand, and the button says so; it never says "Copied" for nothing.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.querySelector(button.getAttribute("data-copy"));
    if (!field) return;
    var text = field.value;
    var say = function (words, ok) {
      var label = button.getAttribute("data-label") || button.textContent;
      button.setAttribute("data-label", label);
      button.textContent = words;
      button.classList.toggle("copy-failed", !ok);
      var status = document.getElementById("live-status");
      if (status) status.textContent = words;
      setTimeout(function () { button.textContent = label; }, ok ? 2000 : 6000);
    };
    var copied = function () { say(button.getAttribute("data-copied") || "Copied", true); };
    var byHand = function () {
      field.hidden = false;
      field.focus();
      field.select();
      field.setSelectionRange(0, text.length);
      say(button.getAttribute("data-copy-failed") || "Select and copy", false);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(copied, function () { legacyCopy(text) ? copied() : byHand(); });
    } else {
      legacyCopy(text) ? copied() : byHand();
    }
  });

  // The browser's own copy command, for pages served over plain http: the text is handed to the
  // copy event rather than selected, so nothing depends on what the page has selected.
  function legacyCopy(text) {
    var handed = false;
    var handler = function (event) {
      if (!event.clipboardData) return;
      event.clipboardData.setData("text/plain", text);
      event.preventDefault();
      handed = true;
    };
    document.addEventListener("copy", handler);
    try {
      return document.execCommand("copy") && handed;
    } catch (error) {
      return false;
    } finally {
      document.removeEventListener("copy", handler);
    }
  }

  // After a form comes back with errors, the first error takes the focus (and is read out), so
  // the person does not have to look for it: data-focus-first-error marks such a form.
  var focusFirstError = function (root) {
    var first = root.querySelector("[data-focus-first-error] .error-summary, [data-focus-first-error] [aria-invalid=true]");
    if (first) first.focus();
  };
  document.addEventListener("DOMContentLoaded", function () { focusFirstError(document); });
  // After an htmx swap, only within what was swapped: a poll elsewhere never moves the focus.
  document.addEventListener("htmx:afterSettle", function (event) { if (event.target.querySelector) focusFirstError(event.target); });

  // A page being left swaps nothing more: answers still arriving for it (the checklist's steps,
  // polls) would look for elements that are already gone.
  var leaving = false;
  window.addEventListener("pagehide", function () { leaving = true; });
  window.addEventListener("pageshow", function () { leaving = false; });
  document.addEventListener("htmx:beforeSwap", function (event) { if (leaving) event.detail.shouldSwap = false; });

  // Reveal buttons: <button data-reveal="#id"> swaps a masked value for the full one it holds.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-reveal]");
    if (!button) return;
    var target = document.querySelector(button.getAttribute("data-reveal"));
    if (!target) return;
    target.textContent = target.getAttribute("data-full");
    button.remove();
  });

  // Toasts fade after a while. One that offers Undo stays as long as its offer holds (or until
  // it is dismissed) and takes the focus, so that a keyboard reaches its button next and a screen
  // reader reads it out (an action's page load or swap has left the focus nowhere useful).
  document.addEventListener("htmx:afterSettle", prune);
  document.addEventListener("DOMContentLoaded", prune);
  function prune() {
    document.querySelectorAll(".toast:not([data-timer])").forEach(function (toast) {
      toast.setAttribute("data-timer", "1");
      var undo = toast.querySelector("[data-undo-lifetime]");  // its form (the fields may sit beside it)
      var seconds = undo ? parseInt(undo.getAttribute("data-undo-lifetime"), 10) : 6;
      setTimeout(function () { toast.remove(); }, seconds * 1000);
      if (!undo) return;
      var close = toast.querySelector("[data-dismiss-toast]");
      if (close) close.hidden = false;
      toast.setAttribute("tabindex", "-1");
      toast.focus({ preventScroll: true });
    });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss-toast]");
    if (!button) return;
    button.closest(".toast").remove();
    var main = document.getElementById("main");
    if (main) main.focus({ preventScroll: true });
  });
})();
