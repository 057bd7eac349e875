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

  // ---- Focus and the one live region, around every htmx swap --------------------------------
  // A swap replaces the control just used (a switch, "Sync now", a checklist step's button) or
  // a polled part that holds the focus. htmx keeps the focus only on an element with the same
  // id; here it moves to the replacement of that control (same form and name, same link, or the
  // control at the same place), else into what was swapped in: never to <body>, where the next
  // Tab would start from the top. What the swap changed is said once, politely, through the
  // page's one live region (#live-status): the messages it brought, else the words of the
  // swapped parts (data-announce) that changed.
  var FOCUSABLE = "a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex='-1'])";
  var swaps = new WeakMap();  // htmx target -> {key, targetId, said}

  function describeControl(element) {
    var form = element.form || element.closest("form");
    return {
      id: element.id || "",
      tag: element.tagName.toLowerCase(),
      name: element.getAttribute("name") || "",
      value: element.tagName === "BUTTON" ? element.getAttribute("value") || "" : "",
      action: form ? form.getAttribute("action") || "" : "",
      href: element.getAttribute("href") || ""
    };
  }

  // ``strict``: the same button value too (one of a form's several buttons: the bulk actions);
  // otherwise a button whose value changed (a switch now offering the other way) is the same.
  function sameControl(key, element, strict) {
    if (element.tagName.toLowerCase() !== key.tag) return false;
    if (key.href) return element.getAttribute("href") === key.href;
    var form = element.form || element.closest("form");
    return !!key.action && !!form && form.getAttribute("action") === key.action && (element.getAttribute("name") || "") === key.name &&
      (!strict || !key.value || element.getAttribute("value") === key.value);
  }

  function focusable(element) {
    return !element.disabled && element.getClientRects().length > 0;
  }

  // The control ``key`` describes, found again in ``scope``; else (unless ``exactly``) the first
  // control there, else ``scope`` itself.
  function replacement(key, scope, exactly) {
    if (key.id) {
      var same = document.getElementById(key.id);
      if (same && focusable(same)) return same;
    }
    var candidates = Array.prototype.filter.call(scope.querySelectorAll(FOCUSABLE), focusable);
    var match = candidates.filter(function (element) { return sameControl(key, element, true); })[0] ||
      candidates.filter(function (element) { return sameControl(key, element, false); })[0];
    if (match || exactly) return match || null;
    if (candidates.length) return candidates[0];
    if (!scope.hasAttribute("tabindex")) scope.setAttribute("tabindex", "-1");
    return scope;
  }

  function announcements(root) {
    var found = {};
    if (!root || !root.querySelectorAll) return found;
    var all = Array.prototype.slice.call(root.querySelectorAll("[data-announce]"));
    if (root.hasAttribute && root.hasAttribute("data-announce")) all.unshift(root);
    all.forEach(function (element, index) { found[element.id || index] = element.getAttribute("data-announce"); });
    return found;
  }

  function say(words) {
    var region = document.getElementById("live-status");
    if (!region || !words) return;
    // Emptied first, so that the same words said again are read again.
    region.textContent = "";
    setTimeout(function () { region.textContent = words; }, 50);
  }

  // What the messages say (not their buttons' names).
  function toastWords() {
    return Array.prototype.map.call(document.querySelectorAll("#toasts .toast-words"), function (words) {
      return words.innerText.trim();
    }).join(" ");
  }

  function inside(target, element) {
    return element && element !== document.body && target.contains(element) ? describeControl(element) : null;
  }

  // Before the request, as a button may be disabled while it runs (hx-disabled-elt) and lose
  // the focus; again before the swap, as the person may have moved meanwhile.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail.target;
    if (!target) return;
    var cause = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    swaps.set(target, {
      targetId: target.id, said: announcements(target), key: inside(target, document.activeElement),
      // Pressed by the person (not a poll): what the swap shows is said even if it reads as before.
      pressed: !!cause && ["click", "submit", "keyup", "change"].indexOf(cause.type) >= 0
    });
  });
  // Parts a response swaps out of band (the checklist's steps, brought by its poll when a
  // sync ends) are said too when their words changed: what each said before, by id.
  var oobSaid = {};
  document.addEventListener("htmx:beforeSwap", function (event) {
    oobSaid = {};  // this response's own out-of-band parts only
    var entry = swaps.get(event.detail.target);
    var key = entry && inside(event.detail.target, document.activeElement);
    if (key) entry.key = key;
  });
  var toastsCame = false;
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "toasts") toastsCame = true;
    if (target && target.id && target.hasAttribute("data-announce")) oobSaid[target.id] = target.getAttribute("data-announce");
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var entry = swaps.get(event.detail.target);
    if (!entry) return;
    swaps.delete(event.detail.target);
    var swapped = (entry.targetId && document.getElementById(entry.targetId)) || event.target;
    var active = document.activeElement;
    if (entry.key && (!active || active === document.body || !document.contains(active))) {
      replacement(entry.key, swapped).focus({ preventScroll: true });
    }
    var news = toastsCame ? toastWords() : "";
    var before = oobSaid;
    toastsCame = false;
    oobSaid = {};
    if (!news) {
      var now = announcements(swapped);
      news = Object.keys(now).filter(function (id) { return now[id] && (entry.pressed || now[id] !== entry.said[id]); })
        .map(function (id) { return now[id]; }).join(" ");
    }
    if (!news) {
      news = Object.keys(before).map(function (id) {
        var part = document.getElementById(id);
        var words = part && part.getAttribute("data-announce");
        return words && words !== before[id] ? words : "";
      }).filter(Boolean).join(" ");
    }
    say(news);
  });

  // A control that is busy (aria-disabled, so that it keeps the focus) does nothing when used.
  document.addEventListener("click", function (event) {
    if (event.target.closest("[aria-disabled=true]")) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // A plain form post (a bulk action) loads a page again: back on the page it was sent from,
  // the focus returns to the control used, else to the main content; and the messages the page
  // brings are said. A post that leads elsewhere (logging in) starts that page at the top.
  var AFTER_POST = "channelmgr:focus-after-post";
  document.addEventListener("submit", function (event) {
    if (event.defaultPrevented) return;  // htmx's: handled above
    var used = event.submitter || document.activeElement;
    if (!used || used === document.body) return;
    try {
      sessionStorage.setItem(AFTER_POST, JSON.stringify({ key: describeControl(used), path: location.pathname, at: Date.now() }));
    } catch (error) { /* storage refused: the page starts at the top, as without JavaScript */ }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var stored = null;
    try {
      stored = JSON.parse(sessionStorage.getItem(AFTER_POST) || "null");
      sessionStorage.removeItem(AFTER_POST);
    } catch (error) { stored = null; }
    say(toastWords());
    if (!stored || stored.path !== location.pathname || Date.now() - stored.at > 60000) return;
    var active = document.activeElement;
    if (active && active !== document.body) return;  // an error or autofocus took it
    var main = document.getElementById("main");
    if (!main) return;
    // A control folded away with the others (what to do with ticked rows) is unfolded to take it.
    main.querySelectorAll("details:not([open])").forEach(function (details) {
      var folded = details.querySelectorAll(FOCUSABLE);
      if (Array.prototype.some.call(folded, function (element) { return sameControl(stored.key, element, true); })) details.open = true;
    });
    (replacement(stored.key, main, true) || main).focus();
  });

  // Skip links move the focus itself, so that the next Tab starts there in every browser.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a.skip-link");
    if (!link) return;
    var target = document.querySelector(link.getAttribute("href"));
    if (!target) return;
    if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    target.focus();
  });

  // Folded tools (<details data-open-wide>: filters) are open where the screen has
  // room for them; on a phone they stay folded, so that the list itself comes first.
  document.addEventListener("DOMContentLoaded", function () {
    if (!window.matchMedia("(min-width: 641px)").matches) return;
    document.querySelectorAll("details[data-open-wide]").forEach(function (details) { details.open = true; });
  });
  // What to do with ticked rows (<details data-opens-on="bulk-form">) shows itself at the first tick.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.checked || !box.form) return;
    document.querySelectorAll('details[data-opens-on="' + box.form.id + '"]').forEach(function (details) { details.open = true; });
  });

  // Toasts fade after a while. One that offers Undo stays as long as its offer holds (or until
  // it is dismissed). It leaves the focus on the control used, as every swap does: its words are
  // said through the live region, and the keyboard reaches its Undo by Alt+Z.
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
    });
  }
  // Alt+Z presses the newest Undo on the page (aria-keyshortcuts on the button says so).
  document.addEventListener("keydown", function (event) {
    if (!event.altKey || event.ctrlKey || event.metaKey || event.code !== "KeyZ") return;
    var buttons = document.querySelectorAll("#toasts .undo-button");
    if (!buttons.length) return;
    event.preventDefault();
    buttons[buttons.length - 1].click();
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss-toast]");
    if (!button) return;
    button.closest(".toast").remove();
    var main = document.getElementById("main");
    if (main) main.focus({ preventScroll: true });
  });
})();
