// Swagger UI for /docs, started from this file: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  window.seawallApiDocs = window.SwaggerUIBundle({
    url: document.body.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // A console user trying the API with their session cookie must send the page's CSRF token, as
    // every cookie call to the JSON API must; with an API key (Authorize) it is simply ignored.
    requestInterceptor: function (request) {
      if (meta && meta.content) {
        request.headers["X-CSRF-Token"] = meta.content;
      }
      return request;
    }
  });
})();
