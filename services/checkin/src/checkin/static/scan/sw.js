// Service worker for the door app: keeps the app itself on the phone so it opens with no network.
// The network comes first so a phone always runs the current app when it can; the stored copy answers
// when the network fails or is slower than NETWORK_DEADLINE_MS. The API is never touched here (scans
// and the ticket list have their own offline handling in the page).

const CACHE = "plenary-door-v3";
const NETWORK_DEADLINE_MS = 2000;
const SHELL = [
  "/scan",
  "/scan/app.js",
  "/scan/api.js",
  "/scan/book.js",
  "/scan/camera.js",
  "/scan/db.js",
  "/scan/verdicts.js",
  "/scan/decoder.js",
  "/scan/app.css",
  "/scan/manifest.webmanifest",
  "/scan/icon.svg",
  "/scan/icon-192.png",
  "/scan/icon-512.png",
  "/static/css/base.css",
  "/static/js/api.js",
  "/static/js/ticketcode.js",
  "/static/vendor/jsQR.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      // One missing file should not leave the phone with no offline copy at all.
      .then((cache) =>
        Promise.all(SHELL.map((path) => cache.add(new Request(path, { cache: "reload" })).catch(() => undefined))),
      )
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name.startsWith("plenary-door-") && name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

function isShell(url) {
  return url.origin === self.location.origin && SHELL.includes(url.pathname);
}

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  // The page at /scan is stored once, whatever its query or fragment.
  const key = new URL(request.url).pathname;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), NETWORK_DEADLINE_MS);
  try {
    const response = await fetch(request, { cache: "no-store", signal: controller.signal });
    if (response.ok) {
      await cache.put(key, response.clone());
      return response;
    }
    return (await cache.match(key)) ?? response;
  } catch {
    const stored = await cache.match(key);
    if (stored) return stored;
    return new Response("The door app is offline and not stored on this phone yet.", {
      status: 503,
      headers: { "Content-Type": "text/plain; charset=utf-8" },
    });
  } finally {
    clearTimeout(timer);
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (!isShell(url)) return;
  event.respondWith(networkFirst(request));
});
