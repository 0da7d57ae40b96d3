// Starts Swagger UI from local assets (no CDN, no inline script: the CSP stays strict).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    // A call made with a token leaves the site's cookies out: Bastion checks CSRF on any
    // request that carries its cookies, and this page has no CSRF token (docs/csrf.md).
    requestInterceptor: function (request) {
      var names = Object.keys(request.headers || {});
      if (names.some(function (name) { return name.toLowerCase() === "authorization"; })) {
        request.credentials = "omit";
      }
      return request;
    },
    // No badge from the public validator: it would send the spec's address to a third party.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
