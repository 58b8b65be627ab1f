/**
 * Service worker: the app works offline after its first visit.
 *
 * On install it stores every file of the site (FILES, written by `dnadet-tf export`)
 * in a cache named after BUILD, a hash of their contents; it then answers requests for
 * those files from that cache and lets every other request go to the network. A new
 * export changes BUILD, so the browser installs the new worker, which caches the new
 * files and deletes the caches of older builds.
 */
const BUILD = "__BUILD__";
const FILES = __FILES__;
const CACHE = `dnadet-web-${BUILD}`;
const PREFIX = "dnadet-web-";

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

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  const scope = new URL(self.registration.scope);
  // The site's root is its index page.
  const key = url.pathname === scope.pathname ? new URL("index.html", scope).href : url.origin + url.pathname;
  event.respondWith(
    caches.open(CACHE)
      .then((cache) => cache.match(key))
      .then((cached) => cached || fetch(request)),
  );
});
