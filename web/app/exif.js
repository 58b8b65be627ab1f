/**
 * EXIF orientation, applied the way Pillow's `ImageOps.exif_transpose` applies it
 * (dnadet_tf.images.load_rgb), independently of the browser.
 *
 * The browser would rotate an image by its EXIF orientation on its own, and
 * browsers differ in whether and where they read it. So the page reads the
 * orientation tag itself (JPEG APP1 "Exif", PNG eXIf chunk, WebP EXIF chunk),
 * hands the browser a copy of the file whose tag says 1 (as stored), and
 * applies the transposition to the decoded pixels (`orientedToStored`).
 */

const ORIENTATION_TAG = 0x0112;

/** Finds the TIFF block of the EXIF data: {start, end} byte offsets, or null. */
function findTiff(bytes) {
  const n = bytes.length;
  if (n > 4 && bytes[0] === 0xff && bytes[1] === 0xd8) {
    // JPEG: segments until the first scan; the first APP1 starting "Exif\0\0".
    let i = 2;
    while (i + 4 <= n && bytes[i] === 0xff) {
      const marker = bytes[i + 1];
      if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { i += 2; continue; }
      if (marker === 0xda || marker === 0xd9) break;
      const length = (bytes[i + 2] << 8) | bytes[i + 3];
      if (length < 2) break;
      const body = i + 4;
      if (marker === 0xe1 && length >= 8 && bytes[body] === 0x45 && bytes[body + 1] === 0x78 &&
          bytes[body + 2] === 0x69 && bytes[body + 3] === 0x66 && bytes[body + 4] === 0 && bytes[body + 5] === 0) {
        return {start: body + 6, end: Math.min(i + 2 + length, n)};
      }
      i += 2 + length;
    }
    return null;
  }
  if (n > 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) {
    // PNG: an eXIf chunk before the image data.
    let i = 8;
    while (i + 8 <= n) {
      const length = ((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]) >>> 0;
      const type = String.fromCharCode(bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]);
      if (type === "eXIf") return {start: i + 8, end: Math.min(i + 8 + length, n)};
      if (type === "IDAT" || type === "IEND") break;
      i += 12 + length;
    }
    return null;
  }
  if (n > 12 && String.fromCharCode(...bytes.subarray(0, 4)) === "RIFF" &&
      String.fromCharCode(...bytes.subarray(8, 12)) === "WEBP") {
    // WebP: an EXIF chunk (some writers keep the "Exif\0\0" prefix).
    let i = 12;
    while (i + 8 <= n) {
      const type = String.fromCharCode(...bytes.subarray(i, i + 4));
      const length = (bytes[i + 4] | (bytes[i + 5] << 8) | (bytes[i + 6] << 16) | (bytes[i + 7] << 24)) >>> 0;
      if (type === "EXIF") {
        let start = i + 8;
        if (bytes[start] === 0x45 && bytes[start + 1] === 0x78 && bytes[start + 4] === 0) start += 6;
        return {start, end: Math.min(i + 8 + length, n)};
      }
      i += 8 + length + (length & 1);
    }
  }
  return null;
}

/** Byte offset of the orientation value (a SHORT in IFD0), or -1. */
function orientationOffset(bytes, tiff) {
  const {start, end} = tiff;
  if (end - start < 8) return -1;
  const little = bytes[start] === 0x49 && bytes[start + 1] === 0x49;
  const big = bytes[start] === 0x4d && bytes[start + 1] === 0x4d;
  if (!little && !big) return -1;
  const u16 = (o) => (little ? bytes[o] | (bytes[o + 1] << 8) : (bytes[o] << 8) | bytes[o + 1]);
  const u32 = (o) => (little
    ? (bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24)) >>> 0
    : ((bytes[o] << 24) | (bytes[o + 1] << 16) | (bytes[o + 2] << 8) | bytes[o + 3]) >>> 0);
  if (u16(start + 2) !== 42) return -1;
  const ifd = start + u32(start + 4);
  if (ifd + 2 > end) return -1;
  const count = u16(ifd);
  for (let k = 0; k < count; k++) {
    const entry = ifd + 2 + 12 * k;
    if (entry + 12 > end) return -1;
    if (u16(entry) === ORIENTATION_TAG) {
      return u16(entry + 2) === 3 && u32(entry + 4) >= 1 ? entry + 8 : -1;
    }
  }
  return -1;
}

/**
 * Reads the EXIF orientation and neutralises it.
 * @param {Uint8Array} bytes the encoded file
 * @returns {{orientation: number, bytes: Uint8Array}} orientation 1-8 (1 when absent
 *   or invalid) and the bytes to decode: a copy whose tag says 1 when it said 2-8.
 */
export function takeOrientation(bytes) {
  const tiff = findTiff(bytes);
  const offset = tiff ? orientationOffset(bytes, tiff) : -1;
  if (offset < 0) return {orientation: 1, bytes};
  const little = bytes[tiff.start] === 0x49;
  const value = little ? bytes[offset] | (bytes[offset + 1] << 8) : (bytes[offset] << 8) | bytes[offset + 1];
  if (value < 2 || value > 8) return {orientation: 1, bytes};
  const copy = bytes.slice();
  copy[offset] = little ? 1 : 0;
  copy[offset + 1] = little ? 0 : 1;
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
