/**
 * Entry point: starts the attributor, exposes `window.dnadet`, starts the page and
 * registers the service worker (offline use and installation).
 *
 * window.dnadet.ready      Promise<info>: resolves once the model is loaded ({name, version,
 *                          format, class_names, input_size, runtime, build, site_build,
 *                          load_seconds}; build: the WASM build, site_build: the export's id);
 *                          rejects with a one-line message when the page cannot run
 * window.dnadet.attribute  (urlOrBlob) => Promise<{probabilities: {class: p}, class_name,
 *                          class_id, probability, seconds, timings, image, [ood_score, unknown]}>;
 *                          rejects with a one-line message for a file that is not a decodable
 *                          image or is too small (or too large) for the model
 * window.dnadet.preprocess (urlOrBlob) => Promise<Float32Array>: the model input (S*S*3, NHWC,
 *                          in [-1, 1]), for checking the preprocessing against Python
 *
 * `?build=compat` forces LiteRT.js's build without relaxed SIMD (what a browser
 * without it gets); `?sw=0` skips the service worker.
 *
 * A returning visitor's page runs from the worker's cache (site.json, sidecar and model of the
 * worker's build); the page asks for a new worker at once (`update`, not at the browser's
 * leisure). Whenever a worker of another build than the page's takes over the page (also a page
 * opened on the first visit, when another tab brings a later export's worker), the page says so,
 * or reloads when it shows no result yet.
 */
import {Attributor} from "./attributor.js";
import {startUi} from "./ui.js";

const base = new URL("./", import.meta.url);
const params = new URLSearchParams(location.search);
const loading = Attributor.load(base, {build: params.get("build") || undefined});

window.dnadet = {
  ready: loading.then((attributor) => attributor.info),
  attribute: async (input) => (await loading).attribute(input),
  preprocess: async (input) => (await loading).preprocessInput(input),
};

const ui = startUi(document, window.dnadet);

if ("serviceWorker" in navigator && params.get("sw") !== "0") {
  const returning = navigator.serviceWorker.controller !== null;
  // A first visit's worker also takes over the page (clients.claim): that one is, as a rule, no new export.
  let firstClaim = !returning;
  navigator.serviceWorker.addEventListener("controllerchange", async () => {
    const ownWorker = firstClaim;
    firstClaim = false;
    // The worker now in control serves its own build's site.json: another build than the page's is a new export.
    const [running, installed] = await Promise.all([
      loading.then((attributor) => attributor.site.build, () => undefined),
      fetch(new URL("site.json", base)).then((response) => (response.ok ? response.json() : undefined))
        .then((site) => site?.build, () => undefined),
    ]);
    if (running && installed ? running !== installed : !ownWorker) ui.newExportInstalled();
  });
  navigator.serviceWorker.register(new URL("sw.js", base), {scope: base.pathname}).then((registration) => {
    // Offline the check fails, and the cached site goes on working.
    if (returning) registration.update().catch(() => {});
  }, (error) => {
    console.warn(`service worker not registered (${error.message}): the app will not work offline.`);
  });
}
