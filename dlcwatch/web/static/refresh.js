// Reload the page every few seconds (data-refresh on <body>), but not while someone types in a
// field or watches a clip: then try again a little later.
(function () {
  "use strict";
  var seconds = Number(document.body.getAttribute("data-refresh")) || 5;
  function busy() {
    var active = document.activeElement;
    if (active && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(active.tagName)) { return true; }
    return Array.prototype.some.call(document.querySelectorAll("video"), function (clip) { return !clip.paused; });
  }
  function tick() {
    if (busy()) { window.setTimeout(tick, seconds * 1000); } else { window.location.reload(); }
  }
  window.setTimeout(tick, seconds * 1000);
}());
