/**
 * Encoded image bytes -> the 8-bit RGB pixels that preprocessing reads, as
 * `dnadet_tf.images.load_rgb` makes them (Pillow): EXIF orientation applied,
 * first frame of an animation, transparency composited over white.
 *
 * The browser decodes (createImageBitmap, no colour-space conversion, so an ICC
 * profile is ignored as Pillow ignores it); exif.js handles the orientation.
 * Only the region that preprocessing reads is drawn, onto a white canvas (the
 * browser's source-over onto opaque white rounds as Pillow's alpha_composite
 * does): the centre crop of a non-square image, the whole of a square one.
 * Measured equal to Pillow for 8-bit PNG (RGB, RGBA, grey, grey+alpha, palette,
 * palette+tRNS, RGB+tRNS, grey+tRNS), baseline/progressive/grey JPEG (4:2:0,
 * 4:2:2, 4:4:4), WebP (lossy, lossless, alpha), GIF and BMP in Chromium; a 16-bit
 * PNG keeps each sample's high byte here, in load_rgb and in the SavedModel
 * (tests/test_web_app.py). As Pillow reads a PNG: an APNG's default image (the IDAT), and a
 * 16-bit RGB PNG's transparent colour compared by each sample's high byte.
 * A GIF whose first frame does not fill its screen is refused, as predict refuses
 * it; a file the browser cannot decode is named by its first bytes.
 */
import {ascii, orientedToStored, pngChunks, swapsAxes, takeOrientation} from "./exif.js";
import {cropBox, sizeProblem} from "./preprocess.js";

/** A file the page refuses: not decodable, too small, too large. The message is for the user. */
export class ImageInputError extends Error {
  constructor(message) {
    super(message);
    this.name = "ImageInputError";
  }
}

function makeCanvas(width, height) {
  if (typeof OffscreenCanvas === "function") return new OffscreenCanvas(width, height);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

/** The format named by the file's first bytes, or null. */
function sniff(b) {
  if (b[0] === 0xff && b[1] === 0xd8) return "JPEG";
  if (b[0] === 0x89 && ascii(b, 1, 4) === "PNG") return "PNG";
  if (ascii(b, 0, 4) === "GIF8") return "GIF";
  if (ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 12) === "WEBP") return "WebP";
  if (ascii(b, 0, 2) === "BM") return "BMP";
  if (ascii(b, 0, 4) === "II*\0" || ascii(b, 0, 4) === "MM\0*") return "TIFF";
  if (ascii(b, 4, 8) === "ftyp" && /^(heic|heix|hevc|hevx|heim|heis|mif1|msf1)$/.test(ascii(b, 8, 12))) return "HEIC/HEIF";
  return null;
}

async function decodeBitmap(bytes, type) {
  const blob = new Blob([bytes], type ? {type} : {});
  try {
    return await createImageBitmap(blob, {premultiplyAlpha: "none", colorSpaceConversion: "none"});
  } catch (error) {
    // The browser says only that it failed: the first bytes tell a damaged file from a format it lacks.
    const kind = sniff(bytes);
    if (kind === "TIFF" || kind === "HEIC/HEIF") {
      throw new ImageInputError(`a ${kind} file, which this browser cannot decode; convert it to JPEG or PNG.`);
    }
    if (kind) throw new ImageInputError(`a damaged ${kind} file (truncated or corrupt): it cannot be decoded.`);
    throw new ImageInputError("not an image this browser can decode (expected a PNG, JPEG, WebP, GIF or BMP file).");
  }
}

/**
 * For a GIF whose first frame does not cover its logical screen, predict's words (images.py
 * _check_first_frame_fills: the SavedModel's decoder would see the frame alone); else null.
 * Reads the screen size (bytes 6-9) and the first image descriptor, past the extensions.
 */
function gifFrameProblem(b) {
  if (b.length < 13 || ascii(b, 0, 4) !== "GIF8") return null;
  const u16 = (o) => b[o] | (b[o + 1] << 8);
  let i = 13 + (b[10] & 0x80 ? 3 << ((b[10] & 7) + 1) : 0);
  while (i < b.length && b[i] === 0x21) {
    i += 2;
    while (i < b.length && b[i]) i += b[i] + 1;
    i += 1;
  }
  if (b[i] !== 0x2c || i + 9 >= b.length) return null;
  const [x0, y0, width, height] = [u16(i + 1), u16(i + 3), u16(i + 5), u16(i + 7)];
  // Pillow widens the screen to a first frame that overflows it.
  const screenWidth = Math.max(u16(6), x0 + width);
  const screenHeight = Math.max(u16(8), y0 + height);
  if (x0 === 0 && y0 === 0 && width === screenWidth && height === screenHeight) return null;
  return `cannot be decoded (its first frame (${width}x${height} px at ${x0},${y0}) does not fill its ` +
    `${screenWidth}x${screenHeight} px screen).`;
}

// APNG's chunks: without them the browser decodes the IDAT, the image Pillow reads as frame 0 also when
// it is not part of the animation (the browser would show the first fcTL frame).
const ANIMATION_CHUNKS = ["acTL", "fcTL", "fdAT"];

/** The bytes without the PNG chunks of the given types (the bytes themselves when there is none). */
function withoutChunks(bytes, types) {
  const dropped = [...pngChunks(bytes)].filter((chunk) => types.includes(chunk.type));
  if (!dropped.length) return bytes;
  const kept = [];
  let from = 0;
  for (const chunk of dropped) {
    kept.push(bytes.subarray(from, chunk.start));
    from = chunk.end;
  }
  kept.push(bytes.subarray(from));
  const out = new Uint8Array(kept.reduce((size, part) => size + part.length, 0));
  let at = 0;
  for (const part of kept) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * The transparent colour (tRNS before the image data) of a 16-bit RGB PNG, as load_rgb compares it:
 * [r, g, b], each sample's high byte (Pillow decodes such a file to its high bytes); else null.
 */
function highByteTransparency(bytes) {
  const chunks = [...pngChunks(bytes)];
  const header = chunks.length && chunks[0].type === "IHDR" ? chunks[0].data : null;
  if (!header || header.end - header.start < 13 || bytes[header.start + 8] !== 16 || bytes[header.start + 9] !== 2) {
    return null;
  }
  for (const {type, data} of chunks) {
    if (type === "IDAT") return null;
    if (type === "tRNS" && data.end - data.start >= 6) return [0, 2, 4].map((k) => bytes[data.start + k]);
  }
  return null;
}

/** Makes the pixels (RGBA) whose RGB is `colour` opaque white. */
function whiten(rgba, colour) {
  for (let i = 0; i < rgba.length; i += 4) {
    if (rgba[i] === colour[0] && rgba[i + 1] === colour[1] && rgba[i + 2] === colour[2]) rgba.fill(255, i, i + 4);
  }
}

/**
 * Decodes an image and returns the region preprocessing reads.
 * @param {Uint8Array} bytes the encoded file
 * @param {string} type its MIME type ('' when unknown)
 * @param {{crop_size: number, min_side: number}} config the sidecar's `preprocess`
 * @param {number} maxPixels refuse larger images (Pillow's decompression-bomb limit)
 * @returns {Promise<{height: number, width: number, orientation: number,
 *   region: {top: number, left: number, height: number, width: number, rgba: Uint8ClampedArray}}>}
 *   height, width: the oriented image; region.rgba: (region.height * region.width * 4,) RGBA
 *   values with alpha 255, in oriented row-major order
 */
export async function decodeRegion(bytes, type, config, maxPixels) {
  if (!bytes.length) throw new ImageInputError("the file is empty (0 bytes).");
  const gifProblem = gifFrameProblem(bytes);
  if (gifProblem) throw new ImageInputError(gifProblem);
  const {orientation, bytes: stored} = await takeOrientation(bytes);
  // A 16-bit RGB PNG's colour is compared here, not by the browser (all 16 bits): Chromium decodes each
  // sample to its high byte, as Pillow does.
  const transparent = highByteTransparency(stored);
  const dropped = transparent ? [...ANIMATION_CHUNKS, "tRNS"] : ANIMATION_CHUNKS;
  const bitmap = await decodeBitmap(withoutChunks(stored, dropped), type);
  try {
    const storedHeight = bitmap.height;
    const storedWidth = bitmap.width;
    const [height, width] = swapsAxes(orientation) ? [storedWidth, storedHeight] : [storedHeight, storedWidth];
    if (!height || !width) throw new ImageInputError("not an image this browser can decode (it has no pixels).");
    if (maxPixels && height * width > maxPixels) {
      throw new ImageInputError(`too large; expected at most ${maxPixels} pixels (a possible decompression ` +
        `bomb), received ${width}x${height} px.`);
    }
    const problem = sizeProblem(height, width, config);
    if (problem) throw new ImageInputError(problem);
    const box = cropBox(height, width, config);
    // The stored rectangle holding the oriented box: map two opposite corners.
    const toStored = orientedToStored(orientation, storedHeight, storedWidth);
    const [y0, x0] = toStored(box.top, box.left);
    const [y1, x1] = toStored(box.top + box.height - 1, box.left + box.width - 1);
    const sy = Math.min(y0, y1);
    const sx = Math.min(x0, x1);
    const sh = Math.abs(y1 - y0) + 1;
    const sw = Math.abs(x1 - x0) + 1;
    let storedRgba;
    try {
      const canvas = makeCanvas(sw, sh);
      const context = canvas.getContext("2d", {willReadFrequently: true});
      context.fillStyle = "#ffffff";
      context.fillRect(0, 0, sw, sh);
      context.drawImage(bitmap, sx, sy, sw, sh, 0, 0, sw, sh);
      storedRgba = context.getImageData(0, 0, sw, sh).data;
    } catch (error) {
      throw new ImageInputError(`too large for this browser's canvas (${sw}x${sh} px to read); ` +
        "try a smaller image.");
    }
    if (transparent) whiten(storedRgba, transparent);
    if (orientation === 1) {
      return {height, width, orientation, region: {...box, rgba: storedRgba}};
    }
    const rgba = new Uint8ClampedArray(box.height * box.width * 4);
    for (let y = 0; y < box.height; y++) {
      for (let x = 0; x < box.width; x++) {
        const [py, px] = toStored(box.top + y, box.left + x);
        const from = ((py - sy) * sw + (px - sx)) * 4;
        const to = (y * box.width + x) * 4;
        rgba[to] = storedRgba[from];
        rgba[to + 1] = storedRgba[from + 1];
        rgba[to + 2] = storedRgba[from + 2];
        rgba[to + 3] = 255;
      }
    }
    return {height, width, orientation, region: {...box, rgba}};
  } finally {
    bitmap.close();
  }
}
