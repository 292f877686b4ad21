// Seawall console helpers: send the CSRF token with fetch() calls made by console pages.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  window.seawallFetch = function (url, options) {
    options = options || {};
    options.headers = Object.assign({}, options.headers || {}, { "X-CSRF-Token": meta ? meta.content : "" });
    options.credentials = "same-origin";
    return fetch(url, options);
  };
})();
