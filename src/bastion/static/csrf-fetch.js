// Bastion's CSRF token for a page's own scripts (include with
// <script src="/_bastion/static/csrf-fetch.js"></script> on a page that has {{ csrf_meta() }}).
//
// bastion.fetch(resource, options) is fetch() that adds the X-CSRF-Token header, read from
// <meta name="csrf-token">, to same-origin requests that change something (POST, PUT, PATCH,
// DELETE): JSON bodies and multipart uploads (FormData) alike, since Bastion reads the token
// from the body of urlencoded forms only. Other origins never see the token.
// bastion.csrfToken() gives the token itself.
(() => {
  "use strict";
  const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function csrfFetch(resource, options = {}) {
    const request = resource instanceof Request ? resource : null;
    const url = new URL(request ? request.url : String(resource), window.location.href);
    const method = (options.method || (request ? request.method : "GET")).toUpperCase();
    if (url.origin !== window.location.origin || SAFE_METHODS.has(method)) {
      return fetch(resource, options);
    }
    const headers = new Headers(options.headers || (request ? request.headers : undefined));
    headers.set("X-CSRF-Token", csrfToken());
    return fetch(resource, { ...options, headers });
  }

  window.bastion = Object.freeze({ csrfToken, fetch: csrfFetch });
})();
