/**
 * EXIF orientation, applied the way Pillow's `ImageOps.exif_transpose` applies it
 * (dnadet_tf.images.load_rgb), independently of the browser.
 *
 * The browser would rotate an image by its EXIF orientation on its own, and
 * browsers differ in whether and where they read it. So the page reads the
 * orientation tag itself (JPEG APP1 "Exif", PNG eXIf chunk anywhere before IEND,
 * WebP EXIF chunk; of any numeric TIFF type, applied when its value equals an integer 2-8 as
 * Pillow applies it), hands the browser a copy of the file whose tag says 1 (as stored), and applies
 * the transposition to the decoded pixels
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

// TIFF field types as Pillow reads them (TiffImagePlugin's loaders): bytes per value, and the first value as a
// number. BYTE, ASCII and UNDEFINED have no `read`: Pillow keeps bytes or text, which equal no orientation.
// Pillow skips an entry of any other type as if it were not there.
const ratio = (numerator, denominator) =>
  // Pillow's IFDRational: NaN for a zero denominator, else the exact fraction (an integer only when it divides).
  (denominator !== 0 && numerator % denominator === 0 ? numerator / denominator : NaN);
const FIELD_TYPES = {
  1: {size: 1}, 2: {size: 1}, 7: {size: 1},
  3: {size: 2, read: (v, o, le) => v.getUint16(o, le)},  // SHORT
  4: {size: 4, read: (v, o, le) => v.getUint32(o, le)},  // LONG
  5: {size: 8, read: (v, o, le) => ratio(v.getUint32(o, le), v.getUint32(o + 4, le))},  // RATIONAL
  6: {size: 1, read: (v, o) => v.getInt8(o)},  // SBYTE
  8: {size: 2, read: (v, o, le) => v.getInt16(o, le)},  // SSHORT
  9: {size: 4, read: (v, o, le) => v.getInt32(o, le)},  // SLONG
  10: {size: 8, read: (v, o, le) => ratio(v.getInt32(o, le), v.getInt32(o + 4, le))},  // SRATIONAL
  11: {size: 4, read: (v, o, le) => v.getFloat32(o, le)},  // FLOAT
  12: {size: 8, read: (v, o, le) => v.getFloat64(o, le)},  // DOUBLE
  13: {size: 4, read: (v, o, le) => v.getUint32(o, le)},  // IFD
  16: {size: 8, read: (v, o, le) => Number(v.getBigUint64(o, le))},  // LONG8
};

/**
 * The orientation tags of IFD0, read as Pillow's ImageFileDirectory_v2.load reads them: {value, entries}.
 * value: the first value of the first orientation entry that Pillow keeps, a number (NaN for bytes or text),
 * or null when Pillow keeps none (it skips an entry of an unknown type or with no values as if it were not
 * there, and since Pillow 13 one whose values would take its running total of values stored outside the entries
 * past the data's size; it stops at values that lie outside the data; then it reads XMP). Pillow applies the
 * value only when it equals an integer 2-8 (a SHORT 6, and as well an SSHORT 6, a FLOAT 6.0 or a RATIONAL 12/2).
 * entries: the byte offsets of every orientation entry (`takeOrientation` neutralises them all).
 * Null when there is no TIFF header or IFD0.
 */
function orientationTags(bytes, tiff) {
  const {start, end} = tiff;
  if (end - start < 8) return null;
  const little = bytes[start] === 0x49 && bytes[start + 1] === 0x49;
  const big = bytes[start] === 0x4d && bytes[start + 1] === 0x4d;
  if (!little && !big) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint16(start + 2, little) !== 42) return null;
  const ifd = start + view.getUint32(start + 4, little);
  if (ifd + 2 > end) return null;
  const found = {value: null, entries: []};
  const kept = new Set();  // the tags Pillow read: it skips a later entry of the same tag
  // Pillow's running total of the values stored outside the entries: past the data's size, an entry is skipped.
  let outside = 0;
  let stopped = false;  // Pillow read no further (the browser may: the entries are still collected)
  const count = view.getUint16(ifd, little);
  for (let k = 0; k < count; k++) {
    const entry = ifd + 2 + 12 * k;
    if (entry + 12 > end) break;  // Pillow stops reading and keeps what it read
    const tag = view.getUint16(entry, little);
    if (tag === ORIENTATION_TAG) found.entries.push(entry);
    if (stopped || kept.has(tag)) continue;
    const type = FIELD_TYPES[view.getUint16(entry + 2, little)];
    if (!type) continue;
    const size = type.size * view.getUint32(entry + 4, little);
    let offset = entry + 8;
    if (size > 4) {
      outside += size;
      if (outside > end - start) continue;
      offset = start + view.getUint32(entry + 8, little);
      if (offset + size > end) {  // Pillow's read fails: it stops there, keeping what it read
        stopped = true;
        continue;
      }
    }
    if (size === 0) continue;
    kept.add(tag);
    if (tag === ORIENTATION_TAG) found.value = type.read ? type.read(view, offset, little) : NaN;
  }
  return found;
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

const valid = (value) => (Number.isInteger(value) && value >= 2 && value <= 8 ? value : 1);

/**
 * Reads the EXIF orientation (else XMP's) and neutralises the EXIF one.
 * @param {Uint8Array} bytes the encoded file
 * @returns {Promise<{orientation: number, bytes: Uint8Array}>} orientation 1-8 (1 when absent, or when Pillow
 *   would not apply it) and the bytes to decode: a copy in which every orientation entry of IFD0 says SHORT 1,
 *   so that the browser applies none.
 */
export async function takeOrientation(bytes) {
  const {tiff, xmps} = findMetadata(bytes);
  const tags = tiff ? orientationTags(bytes, tiff) : null;
  if (!tags?.entries.length) return {orientation: valid(await xmpOrientation(bytes, xmps)), bytes};
  const orientation = valid(tags.value === null ? await xmpOrientation(bytes, xmps) : tags.value);
  const copy = bytes.slice();
  const view = new DataView(copy.buffer);
  const little = copy[tiff.start] === 0x49;
  for (const entry of tags.entries) {
    view.setUint16(entry + 2, 3, little);  // SHORT
    view.setUint32(entry + 4, 1, little);  // one value
    view.setUint32(entry + 8, 0);
    view.setUint16(entry + 8, 1, little);  // 1, in the entry
  }
  return {orientation, bytes: copy};
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
