/**
 * Open-set fields ("unknown architecture"), for exports of a calibrated run.
 *
 * Such a TFLite file has a second output, `ood_score` [1], and its sidecar JSON an
 * `open_set` object: {output: "ood_score", score, threshold, temperature} (the
 * probabilities output is already temperature-scaled). An image whose score is above
 * the threshold is "unknown", as `dnadet-tf predict` says it. Exports without it
 * (`open_set` null or absent) give no fields and the page shows none.
 */

/**
 * @param {Array<{name: string, values: Float32Array}>} extraOutputs the model's outputs other than
 *   the probabilities, named by the file's signature
 * @param {object} sidecar the sidecar JSON
 * @returns {{ood_score?: number, ood_threshold?: number, unknown?: boolean}}
 */
export function openSetFields(extraOutputs, sidecar) {
  const openSet = sidecar?.open_set;
  if (!openSet || typeof openSet.threshold !== "number") return {};
  const score = extraOutputs.find((output) => output.name === (openSet.output || "ood_score"));
  if (!score || !score.values.length) return {};
  return {ood_score: score.values[0], ood_threshold: openSet.threshold, unknown: score.values[0] > openSet.threshold};
}
