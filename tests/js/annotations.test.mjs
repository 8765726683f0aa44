// The annotation store: notes kept per slice, selection, hit testing and deletion.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AnnotationStore, distanceTo, segmentDistance } from "../../webviewer/static/viewer/annotations.js";

const length = (x0, y0, x1, y1) => ({ kind: "length", points: [{ x: x0, y: y0 }, { x: x1, y: y1 }] });

test("any number of notes are kept, each on its own slice only", () => {
  const store = new AnnotationStore();
  const a = store.add("s/1/1", length(0, 0, 10, 0));
  const b = store.add("s/1/1", length(0, 5, 10, 5));
  const c = store.add("s/2/1", { kind: "angle", points: [{ x: 0, y: 0 }, { x: 1, y: 1 }, { x: 2, y: 0 }] });
  assert.deepEqual(store.onSlice("s/1/1").map((n) => n.id), [a.id, b.id]);
  assert.deepEqual(store.onSlice("s/2/1").map((n) => n.id), [c.id]);
  assert.deepEqual(store.onSlice("s/3/1"), []);
  assert.equal(store.all().length, 3);
  assert.equal(new Set([a.id, b.id, c.id]).size, 3);
});

test("the newest note is selected; removing it deselects it; listeners hear each change", () => {
  const store = new AnnotationStore();
  let heard = 0;
  store.onChange(() => (heard += 1));
  const a = store.add("k", length(0, 0, 1, 1));
  const b = store.add("k", length(2, 2, 3, 3));
  assert.equal(store.selected, b.id);
  store.select(a.id);
  assert.equal(store.selected, a.id);
  assert.ok(store.remove(a.id));
  assert.equal(store.selected, null);
  assert.ok(!store.remove(a.id));
  assert.deepEqual(store.all().map((n) => n.id), [b.id]);
  store.select(999);
  assert.equal(store.selected, null);
  assert.equal(heard, 5);
});

test("hit testing finds the newest note near a point on that slice", () => {
  const store = new AnnotationStore();
  store.add("k", length(0, 0, 100, 0));
  const roi = store.add("k", { kind: "rect", points: [{ x: 10, y: 10 }, { x: 30, y: 20 }] });
  store.add("other", length(0, 50, 100, 50));
  assert.equal(store.hit("k", { x: 50, y: 2 }, 3).kind, "length");
  assert.equal(store.hit("k", { x: 20, y: 15 }, 3).id, roi.id); // inside the ROI
  assert.equal(store.hit("k", { x: 50, y: 50 }, 3), null); // the other slice's line
  assert.equal(store.hit("k", { x: 50, y: 8 }, 3), null);
});

test("distances to segments, angles and ROI edges", () => {
  assert.equal(segmentDistance({ x: 5, y: 3 }, { x: 0, y: 0 }, { x: 10, y: 0 }), 3);
  assert.equal(segmentDistance({ x: 13, y: 4 }, { x: 0, y: 0 }, { x: 10, y: 0 }), 5);
  const angle = { kind: "angle", points: [{ x: 0, y: 0 }, { x: 10, y: 0 }, { x: 10, y: 10 }] };
  assert.equal(distanceTo(angle, { x: 12, y: 5 }), 2);
  const ellipse = { kind: "ellipse", points: [{ x: 0, y: 0 }, { x: 10, y: 10 }] };
  assert.equal(distanceTo(ellipse, { x: 5, y: 5 }), 0);
  assert.equal(distanceTo(ellipse, { x: 5, y: 12 }), 2);
});
