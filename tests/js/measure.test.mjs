// Measurements: lengths and angles in mm, ROI statistics in modality values, the probe and the auto window.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  angleAt,
  histogramWindow,
  labelLines,
  probe,
  roiStats,
  segmentLength,
} from "../../webviewer/static/viewer/measure.js";

/** A frame whose stored value at (x, y) is `value(x, y)`. */
function frame(rows, cols, value, extra = {}) {
  const pixels = new Int16Array(rows * cols);
  for (let y = 0; y < rows; y += 1) for (let x = 0; x < cols; x += 1) pixels[y * cols + x] = value(x, y);
  return { rows, cols, pixels, format: "int16", slope: 1, intercept: 0, spacing: null, ...extra };
}

const near = (actual, expected, message, tolerance = 1e-9) =>
  assert.ok(Math.abs(actual - expected) < tolerance, `${message}: ${actual} != ${expected}`);

test("a length is in mm with a pixel spacing (row, column), in pixels without", () => {
  const a = { x: 0, y: 0 };
  const b = { x: 30, y: 40 };
  assert.equal(segmentLength(a, b, null), 50);
  near(segmentLength(a, b, { row: 0.5, col: 2 }), Math.hypot(60, 20), "anisotropic");
});

test("an angle is measured at its vertex, in physical space", () => {
  near(angleAt({ x: 10, y: 0 }, { x: 0, y: 0 }, { x: 0, y: 10 }, null), 90, "right angle");
  near(angleAt({ x: 10, y: 0 }, { x: 0, y: 0 }, { x: 10, y: 10 }, null), 45, "45°");
  // With rows twice as far apart as columns the 45° on screen pixels is atan(2).
  near(angleAt({ x: 10, y: 0 }, { x: 0, y: 0 }, { x: 10, y: 10 }, { row: 2, col: 1 }), (Math.atan(2) * 180) / Math.PI, "anisotropic");
  assert.equal(angleAt({ x: 1, y: 1 }, { x: 1, y: 1 }, { x: 2, y: 2 }, null), 0);
});

test("ROI statistics are of the modality values of the pixels whose centres are inside", () => {
  // Stored value = x; slope 2, intercept -1024: modality value = 2x - 1024.
  const f = frame(10, 10, (x) => x, { slope: 2, intercept: -1024 });
  const rect = roiStats(f, "rect", { x: 2, y: 3 }, { x: 5, y: 6 }); // columns 2, 3, 4; rows 3, 4, 5
  assert.equal(rect.n, 9);
  near(rect.mean, 2 * 3 - 1024, "mean");
  assert.equal(rect.min, 2 * 2 - 1024);
  assert.equal(rect.max, 2 * 4 - 1024);
  near(rect.sd, Math.sqrt(((2 * -1) ** 2 + 0 + 2 ** 2) / 3), "population SD");
  assert.equal(rect.area, 9);
});

test("an ellipse holds the pixels inside it, and its area is π a b in mm² with a spacing", () => {
  const f = frame(20, 20, (x, y) => x + 100 * y, { spacing: { row: 0.5, col: 0.25 } });
  const stats = roiStats(f, "ellipse", { x: 4, y: 4 }, { x: 12, y: 10 });
  let n = 0;
  let sum = 0;
  for (let y = 0; y < 20; y += 1) {
    for (let x = 0; x < 20; x += 1) {
      if (((x + 0.5 - 8) / 4) ** 2 + ((y + 0.5 - 7) / 3) ** 2 <= 1) {
        n += 1;
        sum += x + 100 * y;
      }
    }
  }
  assert.equal(stats.n, n);
  near(stats.mean, sum / n, "mean");
  near(stats.area, Math.PI * 4 * 3 * 0.5 * 0.25, "area");
});

test("float samples are rescaled too; colour ROIs have only an area", () => {
  const f = { rows: 2, cols: 2, pixels: new Float32Array([0.5, 1.5, 2.5, 3.5]), format: "float32", slope: 2, intercept: 1, spacing: null };
  near(roiStats(f, "rect", { x: 0, y: 0 }, { x: 2, y: 2 }).mean, 2 * 2 + 1, "float mean");
  const rgb = { rows: 2, cols: 2, pixels: new Uint8Array(12), format: "rgb8", slope: 1, intercept: 0, spacing: null };
  const stats = roiStats(rgb, "rect", { x: 0, y: 0 }, { x: 2, y: 2 });
  assert.equal(stats.mean, null);
  assert.equal(stats.area, 4);
});

test("the probe reads the modality value under a point, null outside", () => {
  const f = frame(4, 4, (x, y) => 10 * y + x, { slope: 1, intercept: -1000 });
  assert.deepEqual(probe(f, { x: 2.7, y: 1.2 }), { x: 2, y: 1, value: 12 - 1000 });
  assert.equal(probe(f, { x: 4, y: 0 }), null);
  assert.equal(probe(f, { x: -0.1, y: 0 }), null);
});

test("labels: length and angle units, HU on the ROI and probe", () => {
  const spacing = { row: 1, col: 1 };
  assert.deepEqual(labelLines({ kind: "length", points: [{ x: 0, y: 0 }, { x: 3, y: 4 }] }, spacing, "HU"), ["5.0 mm"]);
  assert.deepEqual(labelLines({ kind: "length", points: [{ x: 0, y: 0 }, { x: 3, y: 4 }] }, null, ""), ["5.0 px"]);
  assert.deepEqual(labelLines({ kind: "angle", points: [{ x: 1, y: 0 }, { x: 0, y: 0 }, { x: 0, y: 1 }] }, null, ""), ["90.0°"]);
  const stats = { n: 4, mean: 40.04, sd: 5.5, min: -3, max: 80, area: 12.25 };
  assert.deepEqual(labelLines({ kind: "ellipse", points: [], stats }, spacing, "HU"), [
    "Mean 40.0 HU SD 5.5",
    "Min -3.0 Max 80.0",
    "Area 12.3 mm²",
  ]);
  assert.deepEqual(labelLines({ kind: "probe", points: [{ x: 1, y: 1 }], value: -998 }, spacing, "HU"), ["-998 HU"]);
});

test("the histogram window spans the 1st to the 99th percentile of the modality values", () => {
  const f = frame(100, 100, (x, y) => (x === 0 && y === 0 ? 30000 : x), { intercept: -50 }); // one outlier
  const w = histogramWindow(f);
  near(w.center, (-50 + 49) / 2, "center", 0.6);
  near(w.width, 99, "width", 1.1);
  assert.equal(histogramWindow({ ...f, format: "rgb8" }), null);
});
