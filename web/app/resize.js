/**
 * Bicubic resizing with antialiasing, computed exactly as TensorFlow's
 * `tf.image.resize(image, size, method="bicubic", antialias=True)` computes it.
 *
 * That call is TensorFlow's ScaleAndTranslate op with the Keys cubic kernel
 * (a = -0.5), scale = out / in (float32), no translation: for each output
 * index x the sample position is (x + 0.5) / scale in input pixels
 * (half-pixel centres); when shrinking, the kernel is widened by in / out
 * (antialiasing); taps outside the image are dropped and the remaining
 * weights renormalised to sum 1. The image is filtered along its height
 * first, then along its width (TensorFlow's order). Every arithmetic step is rounded to float32
 * (Math.fround) in TensorFlow's order, so the result matches TensorFlow's CPU
 * kernel to the last bit or within a rounding of it.
 */

const f = Math.fround;
const FLT_MIN = 1.1754943508222875e-38;
const RADIUS = 2;

/** Keys cubic kernel, a = -0.5, of |x| (float32 arithmetic). */
function keysCubic(x) {
  x = Math.abs(x);
  if (x >= 2) return 0;
  if (x >= 1) return f(f(f(f(f(f(-0.5 * x) + 2.5) * x) - 4) * x) + 2);
  return f(f(f(f(f(1.5 * x) - 2.5) * x) * x) + 1);
}

/**
 * Filter taps of one axis.
 * @param {number} inSize input length
 * @param {number} outSize output length
 * @returns {{spanSize: number, starts: Int32Array, weights: Float32Array}}
 *   starts: (outSize,) first input index of each output; weights: (outSize * spanSize,)
 */
export function computeSpans(inSize, outSize) {
  const scale = f(outSize / inSize);
  const invScale = f(1 / scale);
  const kernelScale = Math.max(invScale, 1);
  const reach = f(RADIUS * kernelScale);
  const oneOverKernelScale = f(1 / kernelScale);
  const spanSize = Math.min(2 * Math.ceil(reach) + 1, inSize);
  const starts = new Int32Array(outSize);
  const weights = new Float32Array(outSize * spanSize);
  const taps = new Float64Array(spanSize + 2);
  for (let x = 0; x < outSize; x++) {
    const sample = f(f(x + 0.5) * invScale);
    if (sample < 0 || sample > inSize) continue;
    let start = Math.ceil(f(f(sample - reach) - 0.5));
    let end = Math.floor(f(f(sample + reach) - 0.5));
    start = Math.min(Math.max(start, 0), inSize - 1);
    end = Math.min(Math.max(end, 0), inSize - 1) + 1;
    let total = 0;
    for (let source = start; source < end; source++) {
      const position = f(f(source + 0.5) - sample);
      const weight = keysCubic(f(position * oneOverKernelScale));
      taps[source - start] = weight;
      total = f(total + weight);
    }
    if (Math.abs(total) >= 1000 * FLT_MIN) {
      const inverse = f(1 / total);
      for (let i = 0; i < end - start; i++) weights[x * spanSize + i] = f(taps[i] * inverse);
    }
    starts[x] = start;
  }
  return {spanSize, starts, weights};
}

/**
 * Resizes an interleaved float image.
 * @param {Float32Array|Uint8ClampedArray|Uint8Array} image (height * width * stride,) values,
 *   row-major HWC; channels 0 .. channels - 1 of each pixel are used (an RGBA image with
 *   channels 3 and stride 4 is read as RGB)
 * @param {number} height
 * @param {number} width
 * @param {number} channels
 * @param {number} outHeight
 * @param {number} outWidth
 * @param {number} [stride] values per input pixel, channels by default
 * @returns {Float32Array} (outHeight * outWidth * channels,)
 */
export function resizeBicubicAntialias(image, height, width, channels, outHeight, outWidth, stride = channels) {
  const rows = computeSpans(height, outHeight);
  const columns = computeSpans(width, outWidth);
  // Along the height: (outHeight, width, channels).
  const rowSize = width * channels;
  const middle = new Float32Array(outHeight * rowSize);
  for (let y = 0; y < outHeight; y++) {
    const start = rows.starts[y];
    const span = Math.min(start + rows.spanSize, height) - start;
    const outRow = y * rowSize;
    for (let i = 0; i < span; i++) {
      const weight = rows.weights[y * rows.spanSize + i];
      const inRow = (start + i) * width * stride;
      for (let x = 0; x < width; x++) {
        for (let c = 0; c < channels; c++) {
          const k = outRow + x * channels + c;
          middle[k] = f(middle[k] + f(weight * image[inRow + x * stride + c]));
        }
      }
    }
  }
  // Along the width: (outHeight, outWidth, channels).
  const out = new Float32Array(outHeight * outWidth * channels);
  for (let y = 0; y < outHeight; y++) {
    const inRow = y * rowSize;
    const outRow = y * outWidth * channels;
    for (let x = 0; x < outWidth; x++) {
      const start = columns.starts[x];
      const span = Math.min(start + columns.spanSize, width) - start;
      const w0 = x * columns.spanSize;
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let i = 0; i < span; i++) {
          sum = f(sum + f(columns.weights[w0 + i] * middle[inRow + (start + i) * channels + c]));
        }
        out[outRow + x * channels + c] = sum;
      }
    }
  }
  return out;
}
