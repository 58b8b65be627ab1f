/**
 * Service worker: the app works offline after its first visit.
 *
 * On install it stores every file of the site (FILES, written by `dnadet-tf export`)
 * in a cache named after its scope and BUILD, a hash of their contents; it then answers
 * requests for those files from that cache and lets every other request go to the
 * network. A new export changes BUILD, so the browser installs the new worker, which
 * caches the new files and deletes the caches of older builds of the same site.
 * site.json comes from the cache too: a page this worker serves names the build whose
 * model and sidecar it gets (the files of every export have the same names), never a
 * newer export's build id with this one's model. A re-export reaches the page through
 * the new worker (main.js: the page reloads, or says to reload).
 */
const BUILD = "__BUILD__";
const FILES = __FILES__;
// One cache family per site (scope): two exported sites on one origin must not delete each other's cache.
const PREFIX = `dnadet-web-${new URL(self.registration.scope).pathname}-`;
const CACHE = `${PREFIX}${BUILD}`;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(FILES.map((file) => new Request(file, {cache: "reload"}))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith(PREFIX) && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

function fromCache(key) {
  return caches.open(CACHE).then((cache) => cache.match(key));
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  const scope = new URL(self.registration.scope);
  // The site's root is its index page.
  const key = url.pathname === scope.pathname ? new URL("index.html", scope).href : url.origin + url.pathname;
  event.respondWith(fromCache(key).then((cached) => cached || fetch(request)));
});
