/**
 * The page: pick, drop, paste or photograph an image; show it, the top architecture
 * with its probability, a bar chart of every class, the time taken, and "unknown
 * architecture" when the export has open-set scoring. Everything goes through the
 * same `api.attribute` that `window.dnadet` exposes. One image at a time: a file picked
 * while another is being attributed waits its turn (of several, the latest).
 */

const percent = (p) => `${(100 * p).toFixed(1)} %`;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * @param {Document} doc
 * @param {{ready: Promise<object>, attribute: (input: Blob) => Promise<object>}} api
 * @returns {{newExportInstalled: () => void}} what main.js calls when a new export's service worker took over
 */
export function startUi(doc, api) {
  const $ = (id) => doc.getElementById(id);
  const status = $("status");
  const error = $("error");
  const result = $("result");
  const drop = $("drop");
  const buttons = [$("choose"), $("camera")];
  let previewUrl = null;
  let startFailed = false;  // the attributor could not start: nothing on screen to lose
  let busy = null;  // the file being attributed
  let next = null;  // the latest file picked meanwhile
  const fileName = (file) => file.name || "the pasted image";

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
  }

  function render(answer, file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    const preview = $("preview");
    preview.src = previewUrl;
    preview.alt = `The image attributed: ${file.name || "pasted image"}`;
    $("image-line").textContent = `${file.name || "pasted image"}, ${answer.image.width}x${answer.image.height} px`;
    const unknown = answer.unknown === true;
    $("verdict").textContent = unknown ? "Unknown architecture" : `${answer.class_name} ${percent(answer.probability)}`;
    const note = $("unknown");
    note.hidden = answer.ood_score === undefined;
    if (!note.hidden) {
      note.textContent = unknown
        ? `None of the known architectures: open-set score ${answer.ood_score.toFixed(3)} is above the threshold ` +
          `${answer.ood_threshold.toFixed(3)}; nearest known: ${answer.class_name} ${percent(answer.probability)}.`
        : `Open-set score ${answer.ood_score.toFixed(3)}, not above the threshold ${answer.ood_threshold.toFixed(3)}: ` +
          "a known architecture.";
      note.classList.toggle("known", !unknown);
    }
    const bars = $("bars");
    bars.replaceChildren();
    const entries = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
    for (const [name, p] of entries) {
      const item = element("li", name === answer.class_name ? "top" : "");
      const track = element("span", "track");
      track.setAttribute("aria-hidden", "true");
      const fill = element("span", "fill");
      fill.style.width = `${Math.max(0, Math.min(100, 100 * p)).toFixed(2)}%`;
      track.append(fill);
      item.append(element("span", "name", name), track, element("span", "value", percent(p)));
      bars.append(item);
    }
    const t = answer.timings;
    $("timing").textContent = `${answer.seconds.toFixed(2)} s on this device (decoding ${t.decode_ms.toFixed(0)} ms, ` +
      `preprocessing ${t.preprocess_ms.toFixed(0)} ms, model ${t.inference_ms.toFixed(0)} ms).`;
    result.hidden = false;
  }

  async function attributeFile(file) {
    if (!file) return;
    if (busy) {
      // Dropped, it would look as if the pick was taken; a file already waiting gives way to the latest.
      next = file;
      status.textContent = `Attributing ${fileName(busy)}; ${fileName(file)} is next.`;
      return;
    }
    busy = file;
    error.hidden = true;
    status.textContent = `Attributing ${file.name || "the image"}…`;
    try {
      const answer = await api.attribute(file);
      render(answer, file);
      status.textContent = answer.unknown === true
        ? "Done: unknown architecture."
        : `Done: ${answer.class_name}, ${percent(answer.probability)}.`;
    } catch (failure) {
      result.hidden = true;
      status.textContent = "";
      showError(`${file.name || "This image"}: ${failure.message}`);
    } finally {
      busy = null;
    }
    if (next) {
      const waiting = next;
      next = null;
      await attributeFile(waiting);
    }
  }

  const inputs = {choose: $("file-input"), camera: $("camera-input")};
  for (const [id, input] of Object.entries(inputs)) {
    $(id).addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      attributeFile(input.files[0]);
      input.value = "";
    });
  }
  for (const type of ["dragenter", "dragover"]) {
    doc.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  doc.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) drop.classList.remove("dragging");
  });
  doc.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    attributeFile(event.dataTransfer?.files?.[0]);
  });
  doc.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items || [])].find((i) => i.kind === "file");
    if (item) attributeFile(item.getAsFile());
  });

  api.ready.then((info) => {
    // The build id tells a re-export (a retrained model of the same name and version) from the old one.
    $("model-line").textContent = `Model ${info.name} v${info.version} (${info.format}), ` +
      `${info.class_names.length} classes: ${info.class_names.join(", ")}.` +
      (info.site_build ? ` Build ${info.site_build}.` : "");
    $("runtime-line").textContent = `Runtime ${info.runtime}, WebAssembly ${info.build} build; ` +
      `model loaded in ${info.load_seconds.toFixed(2)} s.`;
    for (const button of buttons) button.disabled = false;
    status.textContent = "Ready: choose, drop, paste or photograph an image.";
  }, (failure) => {
    startFailed = true;
    status.textContent = "";
    $("model-line").textContent = "The attributor could not start.";
    showError(failure.message);
  });

  return {
    newExportInstalled() {
      // The page still runs the model it loaded; with nothing on screen to lose, it loads the new one (also when
      // it could not start: its files may have been half the old export's, half the new one's).
      if (result.hidden && (error.hidden || startFailed) && !busy) {
        location.reload();
        return;
      }
      const notice = $("update");
      notice.textContent = "A new model was installed for this site: reload the page to use it.";
      notice.hidden = false;
    },
  };
}
