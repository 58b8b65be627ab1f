/**
 * The preprocessing contract of `dnadet_tf.preprocess.preprocess_image`, in JavaScript.
 *
 * From 8-bit RGB pixels (EXIF orientation applied, transparency composited over
 * white: see decode.js) to the model's input:
 *   1. refuse an image too small for the chain (`sizeProblem`, same rule and numbers);
 *   2. a non-square image, and with `crop_square` a square one larger than crop_size:
 *      keep its centre crop_size x crop_size square in native pixels
 *      (top = floor((H - crop) / 2), left = floor((W - crop) / 2)); any other square
 *      image is not cropped (`cropBox`);
 *   3. resize to resize1 x resize1, clip to [0, 255], resize to resize2 x resize2,
 *      clip to [0, 255], each with resize.js (TensorFlow's bicubic, antialias=True);
 *   4. x / 127.5 - 1, in float32.
 * The sizes come from the sidecar JSON's `preprocess` object.
 */
import {resizeBicubicAntialias} from "./resize.js";

const f = Math.fround;

/**
 * None-or-reason check of preprocess.size_problem, with the same wording.
 * @returns {string|null} null when a height x width image can be preprocessed
 */
export function sizeProblem(height, width, config) {
  const minSide = config.min_side ?? 1;
  if (height === width) {
    if (height >= minSide) return null;
    return `too small; expected a square image with sides >= ${minSide} px, received ${width}x${height} px.`;
  }
  const needed = Math.max(config.crop_size, minSide);
  if (Math.min(height, width) >= needed) return null;
  return `too small; expected a non-square image to have both sides >= ${needed} px for the ` +
    `${config.crop_size} px center crop, received ${width}x${height} px.`;
}

/**
 * The region of a height x width image that the chain reads.
 * @returns {{top: number, left: number, height: number, width: number}}
 */
export function cropBox(height, width, config) {
  const size = config.crop_size;
  if (height === width && !(config.crop_square && height > size)) return {top: 0, left: 0, height, width};
  return {top: Math.floor((height - size) / 2), left: Math.floor((width - size) / 2), height: size, width: size};
}

function clip(values) {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < 0) values[i] = 0;
    else if (v > 255) values[i] = 255;
  }
  return values;
}

/**
 * Steps 3 and 4 on the region that `cropBox` selects.
 * @param {Uint8ClampedArray|Uint8Array|Float32Array} pixels (height * width * stride,) RGB(A) values
 *   in [0, 255], row-major
 * @param {number} height region height
 * @param {number} width region width
 * @param {{resize1: number, resize2: number}} config
 * @param {number} [stride] values per pixel: 3 for RGB, 4 for RGBA (alpha ignored)
 * @returns {Float32Array} (resize2 * resize2 * 3,) NHWC pixels in [-1, 1]
 */
export function preprocessRegion(pixels, height, width, config, stride = 3) {
  const first = clip(resizeBicubicAntialias(pixels, height, width, 3, config.resize1, config.resize1, stride));
  const out = clip(resizeBicubicAntialias(first, config.resize1, config.resize1, 3, config.resize2, config.resize2));
  for (let i = 0; i < out.length; i++) out[i] = f(f(out[i] / 127.5) - 1);
  return out;
}
