// /monitor: panels poll only while the tab is visible, and refresh at once when it is shown again.
document.addEventListener("htmx:beforeRequest", function (event) {
  if (document.hidden && event.detail.elt.classList.contains("panel")) {
    event.preventDefault();
  }
});
document.addEventListener("visibilitychange", function () {
  if (!document.hidden) {
    document.querySelectorAll(".panel[hx-get]").forEach(function (panel) { htmx.trigger(panel, "refresh"); });
  }
});
