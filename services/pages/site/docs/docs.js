// docs.js: renders /openapi.json with Swagger UI (its bundle comes from npm
// at build time, services/pages/package-lock.json). Requests go to this
// origin only: no validator badge, no remote configuration.
/* global SwaggerUIBundle */
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  document.querySelector("#reference .loading")?.remove();
  SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#reference",
    deepLinking: true,
    validatorUrl: null,
    configUrl: null,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    tryItOutEnabled: false,
    queryConfigEnabled: false,
  });
});
