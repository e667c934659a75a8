/* Bruso embeddable lists: links list entries and map points (hover/focus highlight, moving
   focus on activation) and copies the snippet. Written for Bruso; the pages work without it. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function byOrg(id) {
    return {
      entry: document.getElementById("org-" + id),
      point: document.getElementById("pt-" + id)
    };
  }

  function highlight(id, on) {
    var pair = byOrg(id);
    [pair.entry, pair.point].forEach(function (el) {
      if (el) { el.classList.toggle("is-active", on); }
    });
  }

  document.querySelectorAll("[data-org]").forEach(function (el) {
    var id = el.getAttribute("data-org");
    el.addEventListener("mouseenter", function () { highlight(id, true); });
    el.addEventListener("mouseleave", function () { highlight(id, false); });
    el.addEventListener("focusin", function () { highlight(id, true); });
    el.addEventListener("focusout", function () { highlight(id, false); });
  });

  // A map point moves focus to its list entry; "show on map" moves focus to the point.
  function follow(link, target) {
    link.addEventListener("click", function (event) {
      if (!target) { return; }
      event.preventDefault();
      target.scrollIntoView({ block: "nearest" });
      target.focus({ preventScroll: true });
    });
  }
  document.querySelectorAll("a.pt").forEach(function (a) {
    var href = a.getAttribute("href") || "";
    if (href.charAt(0) === "#") { follow(a, byOrg(a.getAttribute("data-org")).entry); }
  });
  document.querySelectorAll("a.to-map").forEach(function (a) {
    follow(a, byOrg(a.getAttribute("data-org")).point);
  });

  // Snippet generator: copy button (the textarea stays selectable without JavaScript).
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var status = button.parentNode.querySelector(".copy-status");
    if (!field) { return; }
    button.hidden = false;
    function say(text) { if (status) { status.textContent = text; } }
    button.addEventListener("click", function () {
      field.focus();
      field.select();
      var done = function () { say(button.getAttribute("data-copied")); };
      var failed = function () {
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        say(button.getAttribute(ok ? "data-copied" : "data-failed"));
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(done, failed);
      } else {
        failed();
      }
    });
  });
})();
