// htmx requests carry the session's CSRF token (state-changing JSON calls need it too)
document.addEventListener("htmx:configRequest", function (event) {
  var token = document.body.dataset.csrf;
  if (token) { event.detail.headers["X-CSRF-Token"] = token; }
});
