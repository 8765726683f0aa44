// A study's series and slices: DICOM JSON fields, labels, frame URLs, fetch order and eviction.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AHEAD,
  BEHIND,
  attr,
  countText,
  evictionVictim,
  fetchOrder,
  fetchPlan,
  seriesCaption,
  seriesFields,
  seriesTitle,
  toSlices,
} from "../../webviewer/static/viewer/slices.js";

const value = (vr, ...values) => ({ vr, Value: values });

test("attr() is an attribute's first value, or the fallback when it has none", () => {
  const dataset = { "00200011": value("IS", 2), "0008103E": { vr: "LO" }, "00080060": value("CS") };
  assert.equal(attr(dataset, "00200011", ""), 2);
  assert.equal(attr(dataset, "0008103E", "none"), "none");
  assert.equal(attr(dataset, "00080060", "none"), "none");
  assert.equal(attr(dataset, "00100010", null), null);
});

test("a series' fields come from its QIDO-RS attributes", () => {
  const json = {
    "0020000E": value("UI", "1.2.3"),
    "00200011": value("IS", 2),
    "00080060": value("CS", "CT"),
    "0008103E": value("LO", "AXIAL"),
    "00201209": value("IS", 40),
  };
  const fields = { uid: "1.2.3", number: 2, modality: "CT", description: "AXIAL", images: 40 };
  assert.deepEqual(seriesFields(json), fields);
  assert.deepEqual(seriesFields({}), { uid: "", number: "", modality: "", description: "", images: 0 });
});

test("series labels leave out what the series does not have", () => {
  assert.equal(seriesTitle({ number: 2, modality: "CT" }), "S2 · CT");
  assert.equal(seriesTitle({ number: "", modality: "US" }), "US");
  assert.equal(seriesCaption({ number: 3, description: "B-MODE" }), "Series 3 · B-MODE");
  assert.equal(seriesCaption({ number: "", description: "" }), "");
});

test("the image count names frames only when they differ from the images", () => {
  assert.equal(countText(1, null), "1 image");
  assert.equal(countText(40, null), "40 images");
  assert.equal(countText(40, 40), "40 images");
  assert.equal(countText(1, 20), "1 image, 20 frames");
});

const size = { "00280010": value("US", 4), "00280011": value("US", 6) };

test("each frame of each instance is a slice, in order, with its key, URL and name", () => {
  const instances = [
    { "00080018": value("UI", "1.9.1"), "00280008": value("IS", "2"), ...size },
    { "00080018": value("UI", "1.9.2"), ...size },
  ];
  const slices = toSlices({ uid: "1.5", number: 3 }, instances, "/dicomweb/studies/1.4/series/1.5");
  const base = "/dicomweb/studies/1.4/series/1.5/instances";
  const slice = (sop, frame, position) => ({
    key: `1.5/${sop}/${frame}`,
    url: `${base}/${sop}/frames/${frame}`,
    sop,
    position,
    name: `image ${position + 1} of series 3`,
    rows: 4,
    cols: 6,
    document: false,
  });
  assert.deepEqual(slices, [slice("1.9.1", 1, 0), slice("1.9.1", 2, 1), slice("1.9.2", 1, 2)]);
  assert.equal(slices[1].url, "/dicomweb/studies/1.4/series/1.5/instances/1.9.1/frames/2");
});

test("a slice's URL escapes its SOP Instance UID, and a series without a number is 'this series'", () => {
  const [slice] = toSlices({ uid: "s", number: "" }, [{ "00080018": value("UI", "a/b?c"), ...size }], "/x");
  assert.equal(slice.url, "/x/instances/a%2Fb%3Fc/frames/1");
  assert.equal(slice.name, "image 1 of this series");
});

test("an instance with no or a nonsensical frame count is one slice", () => {
  const instances = [
    { "00080018": value("UI", "1"), "00280008": value("IS", "0"), ...size },
    { "00080018": value("UI", "2"), "00280008": value("IS", "x"), ...size },
  ];
  assert.equal(toSlices({ uid: "s", number: 1 }, instances, "/x").length, 2);
});

const series = (n) => Array.from({ length: n }, (_, i) => ({ key: `s/${i}` }));
const indexes = (queue) => queue.map((slice) => Number(slice.key.split("/")[1]));

test("the fetch order is the shown slice, AHEAD after, BEHIND before, then the rest nearest first", () => {
  assert.deepEqual([AHEAD, BEHIND], [10, 5]);
  const { queue, urgentCount } = fetchOrder(series(30), 15, false);
  assert.deepEqual(indexes(queue), [
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 14, 13, 12, 11, 10,
    26, 27, 28, 29, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
  ]);
  assert.equal(urgentCount, 16);
});

test("at the start of a series nothing lies behind, and each slice is planned once", () => {
  const { queue, urgentCount } = fetchOrder(series(30), 0, false);
  assert.deepEqual(indexes(queue), Array.from({ length: 30 }, (_, i) => i));
  assert.equal(urgentCount, 11);
});

test("a short series is all urgent", () => {
  const { queue, urgentCount } = fetchOrder(series(4), 2, false);
  assert.deepEqual(indexes(queue), [2, 3, 1, 0]);
  assert.equal(urgentCount, 4);
});

test("while cine plays the order wraps round from the last slice to the first", () => {
  const { queue, urgentCount } = fetchOrder(series(30), 27, true);
  assert.deepEqual(indexes(queue).slice(0, 16), [27, 28, 29, 0, 1, 2, 3, 4, 5, 6, 7, 26, 25, 24, 23, 22]);
  assert.equal(urgentCount, 16);
  assert.deepEqual(indexes(queue).slice(16), Array.from({ length: 22 }, (_, i) => 21 - i));
});

test("thumbnails' slices are urgent, after the slices around the shown one", () => {
  const thumb = { key: "t/7" };
  const { queue, urgentCount } = fetchOrder(series(30), 0, false, [thumb]);
  assert.equal(urgentCount, 12);
  assert.equal(queue[11], thumb);
  assert.equal(queue.length, 31);
});

const shown = (prefix, index) => [{ prefix, index }];
const cached = (...entries) => new Map(entries.map(([key, position]) => [key, { position }]));

test("another series' frame is evicted before any of the shown series", () => {
  const cache = cached(["a/1", 50], ["b/1", 0], ["b/2", 1]);
  assert.equal(evictionVictim(cache, shown("a/", 0)), "b/1");
});

test("within the shown series the frame farthest from the shown slice is evicted", () => {
  const cache = cached(["a/1", 0], ["a/2", 40], ["a/3", 95], ["a/4", 60]);
  assert.equal(evictionVictim(cache, shown("a/", 45)), "a/3");
  assert.equal(evictionVictim(cache, shown("a/", 80)), "a/1");
  assert.equal(evictionVictim(cached(["a/1", 0], ["a/2", 90]), shown("a/", 45)), "a/1", "the first of equals");
});

test("frames within AHEAD of the shown slice are never evicted", () => {
  const cache = cached(["a/1", 0], ["a/2", 10], ["a/3", 20]);
  assert.equal(evictionVictim(cache, shown("a/", 10)), null);
  assert.equal(evictionVictim(new Map(), shown("a/", 0)), null);
});

test("an instance without Rows is a document: one slice, whatever its frame count, never fetched", () => {
  const instances = [
    { "00080018": value("UI", "sr"), "00280010": { vr: "US" }, "00280008": value("IS", "3") },
    { "00080018": value("UI", "img"), ...size },
  ];
  const slices = toSlices({ uid: "s", number: 1 }, instances, "/x");
  assert.deepEqual(slices.map((s) => [s.sop, s.document, s.name]), [
    ["sr", true, "object 1 of series 1"],
    ["img", false, "image 2 of series 1"],
  ]);
  const { queue } = fetchPlan([{ slices, index: 0, looping: false }]);
  assert.deepEqual(queue.map((s) => s.sop), ["img"]);
});

test("several viewports: each one's urgent slices first (the active one's first), then the rest", () => {
  const a = series(30);
  const b = Array.from({ length: 30 }, (_, i) => ({ key: `b/${i}` }));
  const thumb = { key: "t/1" };
  const { queue, urgentCount } = fetchPlan(
    [{ slices: a, index: 0, looping: false }, { slices: b, index: 20, looping: false }],
    [thumb],
  );
  assert.equal(urgentCount, 11 + 15 + 1); // b: 20..29 ahead (the series ends), 15..19 behind
  assert.deepEqual(queue.slice(0, 11).map((s) => s.key), a.slice(0, 11).map((s) => s.key));
  assert.equal(queue[11].key, "b/20");
  assert.equal(queue[urgentCount - 1], thumb);
  assert.equal(queue[urgentCount].key, "s/11");
  assert.equal(queue.length, 61);
});

test("a frame near the slice any viewport shows is kept; one of a series no viewport shows goes first", () => {
  const cache = cached(["a/1", 0], ["b/1", 40], ["c/1", 3], ["a/2", 40]);
  const views = [{ prefix: "a/", index: 0 }, { prefix: "b/", index: 40 }];
  assert.equal(evictionVictim(cache, views), "c/1");
  cache.delete("c/1");
  assert.equal(evictionVictim(cache, views), "a/2");
});
