// Image planes in patient space: linking by position along the normal, reference lines, orientation letters.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  directionLetters,
  edgeLetters,
  fromPatient,
  nearestSlice,
  parallel,
  planeOf,
  referenceLine,
  sameFrame,
  toPatient,
} from "../../webviewer/static/viewer/planes.js";

const AXIAL = [1, 0, 0, 0, 1, 0];
const CORONAL = [1, 0, 0, 0, 0, -1];
const SAGITTAL = [0, 1, 0, 0, 0, -1];

/** A 100 x 100 frame, 1 mm pixels, centred on x = y = 0 for axial images. */
function frame(imagePosition, orientation = AXIAL, extra = {}) {
  return { rows: 100, cols: 100, spacing: { row: 1, col: 1 }, imagePosition, orientation, frameOfReference: "1.2.3", ...extra };
}

const near = (actual, expected, message) => assert.ok(Math.abs(actual - expected) < 1e-9, `${message}: ${actual} != ${expected}`);

test("a frame without position or orientation has no plane", () => {
  assert.equal(planeOf({ rows: 4, cols: 4, imagePosition: null, orientation: AXIAL }), null);
  assert.equal(planeOf({ rows: 4, cols: 4, imagePosition: [0, 0, 0], orientation: [1, 0, 0] }), null);
  assert.equal(planeOf(null), null);
});

test("the first pixel's centre is the image position, and patient <-> image points round-trip", () => {
  const plane = planeOf(frame([-49.5, -49.5, 10], AXIAL, { spacing: { row: 0.5, col: 2 } }));
  assert.deepEqual(toPatient(plane, { x: 0.5, y: 0.5 }), [-49.5, -49.5, 10]);
  const q = toPatient(plane, { x: 10.5, y: 20.5 });
  assert.deepEqual(q, [-49.5 + 20, -49.5 + 10, 10]); // columns step 2 mm along x, rows 0.5 mm along y
  const back = fromPatient(plane, q);
  near(back.x, 10.5, "x");
  near(back.y, 20.5, "y");
});

test("linked scrolling picks the slice nearest along the normal, whatever the index", () => {
  // Target slices 2.5 mm apart from z = 0 down; the source is at z = -7.4 with 5 mm slices.
  const target = [0, 1, 2, 3, 4, 5].map((i) => planeOf(frame([-49.5, -49.5, -2.5 * i])));
  const source = planeOf(frame([-49.5, -49.5, -7.4]));
  assert.equal(nearestSlice(source, target), 3);
  assert.equal(nearestSlice(planeOf(frame([-49.5, -49.5, 40])), target), 0);
  // Unknown slices (not fetched yet) are skipped.
  assert.equal(nearestSlice(source, [target[0], null, null, null, target[4]]), 4);
  assert.equal(nearestSlice(source, [null, null]), null);
});

test("linking needs one frame of reference; parallel planes are those within about 8°", () => {
  const a = planeOf(frame([0, 0, 0]));
  assert.ok(sameFrame(a, planeOf(frame([0, 0, 5]))));
  assert.ok(!sameFrame(a, planeOf(frame([0, 0, 5], AXIAL, { frameOfReference: "9.9" }))));
  assert.ok(!sameFrame(planeOf(frame([0, 0, 0], AXIAL, { frameOfReference: null })), planeOf(frame([0, 0, 0], AXIAL, { frameOfReference: null }))));
  const tilt = (deg) => [1, 0, 0, 0, Math.cos((deg * Math.PI) / 180), Math.sin((deg * Math.PI) / 180)];
  assert.ok(parallel(a, planeOf(frame([0, 0, 0], tilt(5)))));
  assert.ok(!parallel(a, planeOf(frame([0, 0, 0], tilt(15)))));
  assert.ok(!parallel(a, planeOf(frame([0, 0, 0], CORONAL))));
});

test("an axial slice cuts a coronal localizer along a horizontal line at its height", () => {
  // Coronal localizer: 100 x 100 mm, top row at z = 49.5, columns along x, rows going down in z.
  const coronal = planeOf(frame([-49.5, 0, 49.5], CORONAL));
  const axial = planeOf(frame([-49.5, -49.5, 10]));
  const line = referenceLine(axial, coronal);
  // z = 10 lies at row centre 0.5 + (49.5 - 10) = 40.
  near(line.from.y, 40, "from y");
  near(line.to.y, 40, "to y");
  assert.deepEqual([line.from.x, line.to.x].sort((p, q) => p - q), [0, 100]);
});

test("a reference line is clipped to the source image's extent", () => {
  const coronal = planeOf(frame([-49.5, 0, 49.5], CORONAL));
  // An axial slice only 20 mm wide (x from -10 to 10): the line spans 20 columns of the localizer.
  const narrow = planeOf({ ...frame([-9.5, -49.5, 0]), cols: 20 });
  const line = referenceLine(narrow, coronal);
  const xs = [line.from.x, line.to.x].sort((p, q) => p - q);
  near(xs[0], 40, "left end");
  near(xs[1], 60, "right end");
  // A sagittal source at x = 0 cuts the coronal along a vertical line through its middle.
  const sagittal = planeOf(frame([0, -49.5, 49.5], SAGITTAL));
  const vertical = referenceLine(sagittal, coronal);
  near(vertical.from.x, 50, "sagittal x");
  near(vertical.to.x, 50, "sagittal x");
});

test("no reference line between parallel planes, other frames of reference, or planes that miss the image", () => {
  const axial = planeOf(frame([-49.5, -49.5, 0]));
  assert.equal(referenceLine(planeOf(frame([-49.5, -49.5, 5])), axial), null);
  const other = planeOf(frame([-49.5, 0, 49.5], CORONAL, { frameOfReference: "4.5.6" }));
  assert.equal(referenceLine(axial, other), null);
  const coronal = planeOf(frame([-49.5, 0, 49.5], CORONAL));
  assert.equal(referenceLine(planeOf(frame([-49.5, -49.5, 200])), coronal), null);
});

test("orientation letters name each edge from Image Orientation (Patient)", () => {
  assert.deepEqual(edgeLetters(AXIAL), { right: "L", left: "R", bottom: "P", top: "A" });
  assert.deepEqual(edgeLetters(CORONAL), { right: "L", left: "R", bottom: "F", top: "H" });
  assert.deepEqual(edgeLetters(SAGITTAL), { right: "P", left: "A", bottom: "F", top: "H" });
  assert.equal(edgeLetters(null), null);
  // Oblique: the strongest direction first, small components left out.
  assert.equal(directionLetters([0.8, -0.6, 0.1]), "LA");
  assert.equal(directionLetters([-0.3, 0.2, -0.93]), "FR");
});
