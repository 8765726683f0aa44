// Geometry: where the image lies in the viewport, screen <-> image coordinates, and zoom.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  MAX_SCALE,
  MIN_SCALE,
  fitView,
  imageBox,
  toImage,
  toScreen,
  zoomView,
} from "../../webviewer/static/viewer/geometry.js";

const viewport = () => ({ scale: 1, ox: 0, oy: 0, fitted: true, width: 800, height: 600, dpr: 1 });
const square = { rows: 512, cols: 512, spacing: null };

function close(actual, expected, message) {
  for (const key of Object.keys(expected)) {
    const text = `${message ?? ""} ${key}: ${actual[key]} != ${expected[key]}`;
    assert.ok(Math.abs(actual[key] - expected[key]) < 1e-9, text);
  }
}

test("a fitted square image fills the viewport's height, centred", () => {
  const view = viewport();
  view.ox = 30;
  fitView(view, square);
  assert.equal(view.scale, 600 / 512);
  assert.deepEqual([view.ox, view.oy], [0, 0]);
  assert.deepEqual(imageBox(view, square), { x: 100, y: 0, w: 600, h: 600 });
});

test("a wide image fits the viewport's width", () => {
  const view = viewport();
  const wide = { rows: 100, cols: 1600, spacing: null };
  fitView(view, wide);
  assert.equal(view.scale, 0.5);
  assert.deepEqual(imageBox(view, wide), { x: 0, y: 275, w: 800, h: 50 });
});

test("non-square pixels are shown at their true aspect", () => {
  const view = viewport();
  const tall = { rows: 256, cols: 512, spacing: { row: 2, col: 1 } };
  fitView(view, tall);
  const box = imageBox(view, tall);
  assert.equal(box.h, box.w);
  assert.equal(box.h, 600);
});

test("panning moves the image box by the offset", () => {
  const view = { ...viewport(), scale: 1, ox: 25, oy: -10 };
  assert.deepEqual(imageBox(view, square), { x: 400 + 25 - 256, y: 300 - 10 - 256, w: 512, h: 512 });
});

test("screen and image coordinates convert both ways", () => {
  const view = { ...viewport(), scale: 1.7, ox: 13, oy: -41 };
  const frame = { rows: 300, cols: 400, spacing: { row: 0.8, col: 0.5 } };
  for (const point of [{ x: 0, y: 0 }, { x: 123.25, y: 77.5 }, { x: 400, y: 300 }]) {
    close(toImage(view, frame, toScreen(view, frame, point)), point);
  }
  const box = imageBox(view, frame);
  close(toScreen(view, frame, { x: 0, y: 0 }), { x: box.x, y: box.y }, "top left");
  close(toScreen(view, frame, { x: 400, y: 300 }), { x: box.x + box.w, y: box.y + box.h }, "bottom right");
});

test("zooming keeps the image point under the pointer where it was", () => {
  const view = viewport();
  fitView(view, square);
  const pointer = { x: 250, y: 140 };
  const before = toImage(view, square, pointer);
  zoomView(view, square, pointer, 2.5);
  assert.equal(view.scale, (600 / 512) * 2.5);
  assert.equal(view.fitted, false);
  close(toImage(view, square, pointer), before);
  close(toScreen(view, square, before), pointer);
});

test("zoom stays between its limits", () => {
  const view = viewport();
  zoomView(view, square, { x: 400, y: 300 }, 1e6);
  assert.equal(view.scale, MAX_SCALE);
  zoomView(view, square, { x: 400, y: 300 }, 1e-9);
  assert.equal(view.scale, MIN_SCALE);
});
