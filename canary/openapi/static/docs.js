// Starts Swagger UI on the document this page's script tag names; a file, not an inline script, so
// the page's Content-Security-Policy needs no 'unsafe-inline'.
"use strict";
const documentUrl = document.currentScript.dataset.document;
// validatorUrl null: Swagger UI would otherwise send the document to an online validator.
window.ui = SwaggerUIBundle({url: documentUrl, dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null});
