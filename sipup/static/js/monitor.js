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
// Job actions ask first: a form with data-confirm posts only when the admin agrees (htmx uses hx-confirm).
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
