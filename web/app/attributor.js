/**
 * The attributor: loads the site's configuration, the sidecar JSON, the LiteRT.js
 * runtime and the .tflite model (the sidecar and model checked against site.json's
 * SHA-256, so that the build id shown is the model's), and attributes one image at a time.
 *
 * attribute(input) -> {probabilities: {class: p}, class_name, class_id, probability,
 *   seconds, timings: {decode_ms, preprocess_ms, inference_ms}, [ood_score, unknown, ood_threshold]}
 * The model maps pixels float32 [1, S, S, 3] in [-1, 1] to probabilities float32 [1, C]
 * (an int8 model quantizes and dequantizes inside: LiteRT.js 2.5 has no int8 tensors, so
 * `--int8-io` files are refused at export); sizes and class names come from the sidecar.
 */
import {loadAndCompile, loadLiteRt, supportsFeature, Tensor} from "@litertjs/core";

import {decodeRegion, ImageInputError} from "./decode.js";
import {openSetFields} from "./openset.js";
import {preprocessRegion} from "./preprocess.js";

/** A failure to start (no WebAssembly, a missing file); the message is for the user. */
export class StartupError extends Error {
  constructor(message) {
    super(message);
    this.name = "StartupError";
  }
}

async function fetchFile(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new StartupError(`${url}: cannot be fetched (${error.message}); serve the site over http(s).`);
  }
  if (!response.ok) throw new StartupError(`${url}: expected the file, received HTTP ${response.status}.`);
  return response;
}

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");

/**
 * The bytes of a file that site.json names, checked against its SHA-256 there (when it has one: an export of an
 * older version has none; and where the browser has no crypto.subtle, a page not served over https or from
 * localhost, which has no service worker either). Another export's file (the site was exported again while
 * the page loaded) is refused, never run under this build's id.
 */
async function fetchChecked(site, base, rel, sha256) {
  const bytes = new Uint8Array(await (await fetchFile(new URL(rel, base))).arrayBuffer());
  if (sha256 && globalThis.crypto?.subtle) {
    const digest = hex(await crypto.subtle.digest("SHA-256", bytes));
    if (digest !== sha256) {
      throw new StartupError(`${rel}: not the file of this site's build ${site.build} (SHA-256 ` +
        `${digest.slice(0, 12)}…, expected ${sha256.slice(0, 12)}…): the site was exported again while the page ` +
        "loaded; reload the page.");
    }
  }
  return bytes;
}

/** Reads one input (URL string, URL, Blob/File, ArrayBuffer or typed array) as {bytes, type}. */
async function readInput(input) {
  if (input instanceof Blob) return {bytes: new Uint8Array(await input.arrayBuffer()), type: input.type};
  if (input instanceof ArrayBuffer) return {bytes: new Uint8Array(input), type: ""};
  if (ArrayBuffer.isView(input)) {
    return {bytes: new Uint8Array(input.buffer, input.byteOffset, input.byteLength), type: ""};
  }
  if (typeof input === "string" || input instanceof URL) {
    let response;
    try {
      response = await fetch(input);
    } catch (error) {
      throw new ImageInputError(`${input}: cannot be fetched (${error.message}); this page reads files from ` +
        "its own site or from a Blob only.");
    }
    if (!response.ok) throw new ImageInputError(`${input}: expected an image, received HTTP ${response.status}.`);
    const blob = await response.blob();
    return {bytes: new Uint8Array(await blob.arrayBuffer()), type: blob.type};
  }
  throw new ImageInputError("expected a URL, a Blob or File, or an ArrayBuffer; received " +
    `${input === null ? "null" : typeof input}.`);
}

export class Attributor {
  /**
   * @param {URL} base the site's root URL (where site.json lies)
   * @param {{build?: string}} [options] build: 'compat' forces the runtime's build without
   *   relaxed SIMD (for testing the fallback)
   */
  static async load(base, options = {}) {
    if (typeof WebAssembly !== "object") {
      throw new StartupError("this browser cannot run the model: WebAssembly is not available.");
    }
    const started = performance.now();
    const siteUrl = new URL("site.json", base);
    const site = await (await fetchFile(siteUrl)).json();
    let sidecar;
    try {
      sidecar = JSON.parse(new TextDecoder().decode(await fetchChecked(site, base, site.sidecar, site.sidecar_sha256)));
    } catch (error) {
      if (error instanceof StartupError) throw error;
      throw new StartupError(`${site.sidecar}: not a JSON file (${error.message}).`);
    }
    for (const [key, tensor] of [["input", sidecar.input], ["output", sidecar.output]]) {
      if (tensor?.dtype !== "float32") {
        throw new StartupError(`${site.sidecar}: expected a model with float32 ${key} (LiteRT.js has no int8 ` +
          `tensors), received ${tensor?.dtype}; export again without --int8-io.`);
      }
    }
    const relaxedSimd = await supportsFeature("relaxedSimd");
    const wasm = new URL(site.runtime.wasm, base);
    const build = options.build === "compat" || !relaxedSimd ? "compat" : "relaxed-simd";
    try {
      // A folder lets LiteRT.js pick its build: relaxed SIMD when the browser has it, else
      // its compatible build. The threaded build is never used (it needs cross-origin isolation).
      await loadLiteRt(options.build === "compat" ? new URL("litert_wasm_compat_internal.js", wasm).href : wasm.href);
    } catch (error) {
      throw new StartupError(`this browser cannot run the model: LiteRT.js did not start (${error.message}).`);
    }
    const modelBytes = await fetchChecked(site, base, site.model, site.model_sha256);
    let model;
    try {
      model = await loadAndCompile(modelBytes, {accelerator: "wasm"});
    } catch (error) {
      throw new StartupError(`${site.model}: LiteRT.js cannot load it (${error.message}).`);
    }
    return new Attributor(site, sidecar, model, build, (performance.now() - started) / 1000);
  }

  constructor(site, sidecar, model, build, loadSeconds) {
    this.site = site;
    this.sidecar = sidecar;
    this.model = model;
    this.classNames = sidecar.class_names;
    this.preprocess = sidecar.preprocess;
    this.size = sidecar.preprocess.resize2;
    // LiteRT.js names outputs by their signature keys ("probabilities"); the sidecar by tensor names.
    const outputs = model.getOutputDetails();
    const found = [(d) => d.name === "probabilities", (d) => d.name.includes("probabilities"),
      (d) => d.name === sidecar.output?.name].map((match) => outputs.findIndex(match)).find((i) => i >= 0);
    this.probabilitiesIndex = found ?? 0;
    this.outputNames = outputs.map((d) => d.name);
    this.info = {
      name: site.name, version: site.version, format: site.format, class_names: [...this.classNames],
      input_size: this.size, runtime: `${site.runtime.package} ${site.runtime.version}`, build,
      site_build: site.build, load_seconds: loadSeconds,
    };
  }

  /** Pixels (S*S*3 float32 in [-1, 1]) -> {probabilities Float32Array (C,), extra: [{name, values}]}. */
  async runPixels(pixels) {
    const input = new Tensor(pixels, [1, this.size, this.size, 3]);
    let outputs;
    try {
      outputs = await this.model.run([input]);
    } finally {
      input.delete();
    }
    const values = [];
    try {
      for (const output of outputs) values.push(output.toTypedArray().slice());
    } finally {
      for (const output of outputs) output.delete();
    }
    const probabilities = values[this.probabilitiesIndex];
    const extra = values
      .map((v, i) => ({name: this.outputNames[i] || `output_${i}`, values: Float32Array.from(v)}))
      .filter((_, i) => i !== this.probabilitiesIndex);
    return {probabilities, extra};
  }

  /** One input -> the model's input pixels: Float32Array (S*S*3,) NHWC in [-1, 1]. */
  async preprocessInput(input) {
    const {bytes, type} = await readInput(input);
    const {region} = await decodeRegion(bytes, type, this.preprocess, this.site.max_pixels);
    return preprocessRegion(region.rgba, region.height, region.width, this.preprocess, 4);
  }

  /** See the module docstring. Rejects with ImageInputError (a user-facing message) on bad input. */
  async attribute(input) {
    const {bytes, type} = await readInput(input);
    const t0 = performance.now();
    const decoded = await decodeRegion(bytes, type, this.preprocess, this.site.max_pixels);
    const t1 = performance.now();
    const {region} = decoded;
    const pixels = preprocessRegion(region.rgba, region.height, region.width, this.preprocess, 4);
    const t2 = performance.now();
    const {probabilities, extra} = await this.runPixels(pixels);
    const t3 = performance.now();
    if (probabilities.length !== this.classNames.length) {
      throw new StartupError(`${this.site.model}: expected ${this.classNames.length} probabilities ` +
        `(the sidecar's class_names), received ${probabilities.length}.`);
    }
    let best = 0;
    for (let i = 1; i < probabilities.length; i++) if (probabilities[i] > probabilities[best]) best = i;
    return {
      // Own keys for every class, "__proto__" too (an assignment to {} would set the object's prototype).
      probabilities: Object.fromEntries(this.classNames.map((name, i) => [name, probabilities[i]])),
      class_name: this.classNames[best],
      class_id: best,
      probability: probabilities[best],
      ...openSetFields(extra, this.sidecar),
      seconds: (t3 - t0) / 1000,
      timings: {decode_ms: t1 - t0, preprocess_ms: t2 - t1, inference_ms: t3 - t2},
      image: {width: decoded.width, height: decoded.height, exif_orientation: decoded.orientation},
    };
  }
}
