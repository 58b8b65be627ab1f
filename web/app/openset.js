/**
 * Optional open-set fields ("unknown architecture").
 *
 * An export with open-set scoring gives its TFLite file a second output, the
 * score, and puts the threshold in the sidecar JSON. This module reads them when
 * present and returns nothing otherwise, so the page works with exports made
 * before and after open-set scoring:
 *   - the score: the model output whose name contains "ood" or "score"
 *     (not the probabilities output);
 *   - an output whose name contains "unknown": used as the decision directly;
 *   - else the threshold: sidecar.open_set.threshold, sidecar.ood.threshold or
 *     sidecar.ood_threshold; a score at or above it means "unknown architecture".
 */

function threshold(sidecar) {
  for (const value of [sidecar?.open_set?.threshold, sidecar?.ood?.threshold, sidecar?.ood_threshold,
    sidecar?.unknown_threshold]) {
    if (typeof value === "number" && Number.isFinite(value)) return value;
  }
  return null;
}

/**
 * @param {Array<{name: string, values: Float32Array}>} extraOutputs the model's outputs other than
 *   the probabilities
 * @param {object} sidecar the sidecar JSON
 * @returns {{ood_score?: number, unknown?: boolean, ood_threshold?: number}} nothing when the export
 *   has no open-set scoring
 */
export function openSetFields(extraOutputs, sidecar) {
  const fields = {};
  const lower = (output) => output.name.toLowerCase();
  const decision = extraOutputs.find((output) => lower(output).includes("unknown"));
  const score = extraOutputs.find((output) => output !== decision &&
    (lower(output).includes("ood") || lower(output).includes("score")));
  if (score && score.values.length) fields.ood_score = score.values[0];
  const limit = threshold(sidecar);
  if (decision && decision.values.length) {
    fields.unknown = decision.values[0] > 0.5;
  } else if (fields.ood_score !== undefined && limit !== null) {
    fields.unknown = fields.ood_score >= limit;
  }
  if (fields.ood_score !== undefined && limit !== null) fields.ood_threshold = limit;
  return fields;
}
