/**
 * EXIF orientation, applied the way Pillow's `ImageOps.exif_transpose` applies it
 * (dnadet_tf.images.load_rgb), independently of the browser.
 *
 * The browser would rotate an image by its EXIF orientation on its own, and
 * browsers differ in whether and where they read it. So the page reads the
 * orientation tag itself (JPEG APP1 "Exif", PNG eXIf chunk anywhere before IEND,
 * WebP EXIF chunk; a SHORT or a LONG), hands the browser a copy of the file whose
 * tag says 1 (as stored), and applies the transposition to the decoded pixels
 * (`orientedToStored`). When the EXIF data has no orientation tag, Pillow's
 * `getexif` takes XMP's tiff:Orientation (JPEG APP1, PNG iTXt, compressed or not,
 * WebP "XMP " chunk), and so does the page; browsers ignore XMP, so those bytes stay as they are.
 */

const ORIENTATION_TAG = 0x0112;
const XMP_JPEG = "http://ns.adobe.com/xap/1.0/\0";
const XMP_PNG = "XML:com.adobe.xmp\0";
// Pillow's pattern (Image.getexif): one digit, as an attribute or an element.
const XMP_ORIENTATION = /tiff:Orientation(="|>)([0-9])/;
// Pillow's limit on an inflated text chunk (PngImagePlugin.MAX_TEXT_CHUNK).
const MAX_TEXT_CHUNK = 1 << 20;

/** The bytes [from, to) as a string of one character per byte (a file's signature, a chunk's type). */
export const ascii = (bytes, from, to) => String.fromCharCode(...bytes.subarray(from, Math.min(to, bytes.length)));

/**
 * The chunks of a PNG file up to IEND, in order: {type, start, end (the whole chunk, length to CRC),
 * data: {start, end}}; none when the bytes are not a PNG. Offsets are clipped to the file.
 */
export function* pngChunks(bytes) {
  const n = bytes.length;
  if (n <= 8 || bytes[0] !== 0x89 || ascii(bytes, 1, 4) !== "PNG") return;
  let i = 8;
  while (i + 8 <= n) {
    const length = ((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]) >>> 0;
    const type = ascii(bytes, i + 4, i + 8);
    yield {type, start: i, end: Math.min(i + 12 + length, n), data: {start: i + 8, end: Math.min(i + 8 + length, n)}};
    if (type === "IEND") return;
    i += 12 + length;
  }
}

/**
 * Finds the metadata blocks: {tiff: {start, end} byte offsets of the EXIF data's TIFF block, or null,
 * xmps: the XMP packets as {start, end, compressed} (compressed: zlib data, in a PNG), the one Pillow reads last:
 * JPEG's last, WebP's first, every PNG iTXt XMP chunk in file order (Pillow keeps the last it can read)}.
 */
function findMetadata(bytes) {
  const n = bytes.length;
  const found = {tiff: null, xmps: []};
  if (n > 4 && bytes[0] === 0xff && bytes[1] === 0xd8) {
    // JPEG: segments until the first scan; the first APP1 starting "Exif\0\0", the last XMP one (as Pillow).
    let i = 2;
    while (i + 4 <= n && bytes[i] === 0xff) {
      const marker = bytes[i + 1];
      if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { i += 2; continue; }
      if (marker === 0xda || marker === 0xd9) break;
      const length = (bytes[i + 2] << 8) | bytes[i + 3];
      if (length < 2) break;
      const body = i + 4;
      const end = Math.min(i + 2 + length, n);
      if (marker === 0xe1 && !found.tiff && length >= 8 && ascii(bytes, body, body + 6) === "Exif\0\0") {
        found.tiff = {start: body + 6, end};
      } else if (marker === 0xe1 && ascii(bytes, body, body + XMP_JPEG.length) === XMP_JPEG) {
        found.xmps = [{start: body + XMP_JPEG.length, end}];
      }
      i += 2 + length;
    }
  } else if (n > 8 && bytes[0] === 0x89 && ascii(bytes, 1, 4) === "PNG") {
    // PNG: every chunk to IEND (the spec allows eXIf after the image data, and Pillow reads it there), but
    // for an APNG, whose chunks Pillow reads only up to the frame control after the image data.
    let imageRead = false;
    for (const {type, data} of pngChunks(bytes)) {
      if (type === "IDAT") imageRead = true;
      if (type === "fcTL" && imageRead) break;
      if (type === "eXIf" && !found.tiff) found.tiff = data;
      const xmp = type === "iTXt" ? pngXmp(bytes, data) : null;
      if (xmp) found.xmps.push(xmp);
    }
  } else if (n > 12 && ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 12) === "WEBP") {
    // WebP: the EXIF chunk (some writers keep the "Exif\0\0" prefix) and the "XMP " chunk.
    let i = 12;
    while (i + 8 <= n) {
      const type = ascii(bytes, i, i + 4);
      const length = (bytes[i + 4] | (bytes[i + 5] << 8) | (bytes[i + 6] << 16) | (bytes[i + 7] << 24)) >>> 0;
      const end = Math.min(i + 8 + length, n);
      if (type === "EXIF" && !found.tiff) {
        let start = i + 8;
        if (bytes[start] === 0x45 && bytes[start + 1] === 0x78 && bytes[start + 4] === 0) start += 6;
        found.tiff = {start, end};
      }
      if (type === "XMP " && !found.xmps.length) found.xmps.push({start: i + 8, end});
      i += 8 + length + (length & 1);
    }
  }
  return found;
}

/**
 * The XMP packet of an iTXt chunk's data: {start, end, compressed}, or null when the chunk holds other text
 * or is compressed by a method other than zlib (Pillow skips it). iTXt: keyword\0, compression flag,
 * method, language\0, translated keyword\0, text.
 */
function pngXmp(bytes, data) {
  const flag = data.start + XMP_PNG.length;
  if (ascii(bytes, data.start, flag) !== XMP_PNG || flag + 2 > data.end) return null;
  const compressed = bytes[flag] !== 0;
  if (compressed && bytes[flag + 1] !== 0) return null;
  let text = flag + 2;
  for (let nul = 0; nul < 2 && text < data.end; text++) if (bytes[text] === 0) nul++;
  return {start: text, end: data.end, compressed};
}

/**
 * The orientation entry of IFD0: {offset: byte offset of its (first) value, size: 2 (SHORT) or 4 (LONG), little},
 * {offset: -1} when the entry is there but unusable (Pillow then applies nothing either), or null when
 * there is none.
 */
function orientationEntry(bytes, tiff) {
  const {start, end} = tiff;
  if (end - start < 8) return null;
  const little = bytes[start] === 0x49 && bytes[start + 1] === 0x49;
  const big = bytes[start] === 0x4d && bytes[start + 1] === 0x4d;
  if (!little && !big) return null;
  const u16 = (o) => (little ? bytes[o] | (bytes[o + 1] << 8) : (bytes[o] << 8) | bytes[o + 1]);
  const u32 = (o) => (little
    ? (bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24)) >>> 0
    : ((bytes[o] << 24) | (bytes[o + 1] << 16) | (bytes[o + 2] << 8) | bytes[o + 3]) >>> 0);
  if (u16(start + 2) !== 42) return null;
  const ifd = start + u32(start + 4);
  if (ifd + 2 > end) return null;
  const count = u16(ifd);
  for (let k = 0; k < count; k++) {
    const entry = ifd + 2 + 12 * k;
    if (entry + 12 > end) return null;
    if (u16(entry) === ORIENTATION_TAG) {
      const size = {3: 2, 4: 4}[u16(entry + 2)];
      const values = u32(entry + 4);
      if (!values) return null;  // Pillow keeps no value, as if there were no entry
      if (!size) return {offset: -1};
      // Pillow takes the first value: in the entry when all fit in 4 bytes, else where the entry points.
      const offset = size * values <= 4 ? entry + 8 : start + u32(entry + 8);
      return offset + size <= end ? {offset, size, little} : {offset: -1};
    }
  }
  return null;
}

/**
 * zlib data inflated, as a string of one character per byte; null when the browser finds it invalid
 * (corrupt, truncated, or followed by other bytes) or it inflates to more than MAX_TEXT_CHUNK bytes.
 */
async function inflatedText(data) {
  const reader = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate")).getReader();
  const decoder = new TextDecoder("latin1");
  let text = "";
  try {
    for (let part = await reader.read(); !part.done; part = await reader.read()) {
      text += decoder.decode(part.value, {stream: true});
      if (text.length > MAX_TEXT_CHUNK) {
        await reader.cancel();
        return null;
      }
    }
  } catch (error) {
    return null;
  }
  return text;
}

/**
 * The value of tiff:Orientation (0-9) in the last of the XMP packets `xmps` that can be read (a compressed one
 * that does not inflate is skipped, as Pillow skips it), or null.
 */
async function xmpOrientation(bytes, xmps) {
  for (const xmp of [...xmps].reverse()) {
    const packet = bytes.subarray(xmp.start, xmp.end);
    const text = xmp.compressed ? await inflatedText(packet) : new TextDecoder("latin1").decode(packet);
    if (text === null) continue;
    const match = XMP_ORIENTATION.exec(text);
    return match ? Number(match[2]) : null;
  }
  return null;
}

const valid = (value) => (value >= 2 && value <= 8 ? value : 1);

/**
 * Reads the EXIF orientation (else XMP's) and neutralises the EXIF one.
 * @param {Uint8Array} bytes the encoded file
 * @returns {Promise<{orientation: number, bytes: Uint8Array}>} orientation 1-8 (1 when absent
 *   or invalid) and the bytes to decode: a copy whose EXIF tag says 1 when it said 2-8.
 */
export async function takeOrientation(bytes) {
  const {tiff, xmps} = findMetadata(bytes);
  const entry = tiff ? orientationEntry(bytes, tiff) : null;
  if (!entry) return {orientation: valid(await xmpOrientation(bytes, xmps)), bytes};
  const {offset, size, little} = entry;
  if (offset < 0) return {orientation: 1, bytes};
  let value = 0;
  for (let k = 0; k < size; k++) value = value * 256 + bytes[little ? offset + size - 1 - k : offset + k];
  if (value < 2 || value > 8) return {orientation: 1, bytes};
  const copy = bytes.slice();
  copy.fill(0, offset, offset + size);
  copy[little ? offset : offset + size - 1] = 1;
  return {orientation: value, bytes: copy};
}

/** True when the orientation swaps width and height (5-8). */
export function swapsAxes(orientation) {
  return orientation >= 5 && orientation <= 8;
}

/**
 * Maps a pixel of the oriented image to the stored image, as Pillow's transposes do:
 * 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270,
 * 7 TRANSVERSE, 8 ROTATE_90.
 * @param {number} orientation 1-8
 * @param {number} storedHeight
 * @param {number} storedWidth
 * @returns {(y: number, x: number) => [number, number]} oriented (y, x) -> stored (y, x)
 */
export function orientedToStored(orientation, storedHeight, storedWidth) {
  const H = storedHeight - 1;
  const W = storedWidth - 1;
  switch (orientation) {
    case 2: return (y, x) => [y, W - x];
    case 3: return (y, x) => [H - y, W - x];
    case 4: return (y, x) => [H - y, x];
    case 5: return (y, x) => [x, y];
    case 6: return (y, x) => [H - x, y];
    case 7: return (y, x) => [H - x, W - y];
    case 8: return (y, x) => [x, W - y];
    default: return (y, x) => [y, x];
  }
}
