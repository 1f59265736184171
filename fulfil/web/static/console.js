// The console's only script (vendored, no build step): queue countdowns tick, and pages that ask for it
// (data-refresh="seconds" on <body>) reload themselves while nobody is typing in a form.
(function () {
  "use strict";
  function fmt(s) {
    var a = Math.abs(s);
    var t = a < 120 ? a.toFixed(0) + " s" : a < 7200 ? (a / 60).toFixed(1) + " min" : (a / 3600).toFixed(1) + " h";
    return s < 0 ? "-" + t : t;
  }
  var started = Date.now();
  setInterval(function () {
    document.querySelectorAll(".countdown[data-left]").forEach(function (el) {
      var left = parseInt(el.getAttribute("data-left"), 10) - Math.round((Date.now() - started) / 1000);
      el.textContent = fmt(left);
      if (left < 0) el.classList.add("late");
    });
  }, 1000);
  var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (every > 0) {
    setInterval(function () {
      var active = document.activeElement;
      if (active && (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA")) return;
      window.location.reload();
    }, every * 1000);
  }
})();
