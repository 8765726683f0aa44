// Keyboard shortcuts and window presets: every tool, preset, layout and cine has a key; presets per modality.
import assert from "node:assert/strict";
import { test } from "node:test";

import { LAYOUTS, TOOLS, actionFor, helpRows } from "../../webviewer/static/viewer/shortcuts.js";
import { CT_PRESETS, presetsFor } from "../../webviewer/static/viewer/presets.js";

const press = (key, extra = {}) => actionFor({ key, code: "", shiftKey: false, ...extra });

test("every tool has its own letter, upper or lower case", () => {
  const keys = TOOLS.map((t) => t.key);
  assert.equal(new Set(keys).size, keys.length);
  for (const tool of TOOLS) {
    assert.equal(press(tool.key), `tool:${tool.tool}`);
    assert.equal(press(tool.key.toUpperCase(), { shiftKey: true }), `tool:${tool.tool}`);
  }
  assert.deepEqual(TOOLS.map((t) => t.tool).sort(), ["angle", "ellipse", "length", "pan", "probe", "rect", "wl", "zoom"]);
});

test("digits pick presets, Shift+digit layouts, Space plays the cine", () => {
  assert.equal(press("1", { code: "Digit1" }), "preset:0");
  assert.equal(press("9", { code: "Digit9" }), "preset:8");
  assert.equal(press("!", { code: "Digit1", shiftKey: true }), "layout:1x1");
  assert.equal(press('"', { code: "Digit2", shiftKey: true }), "layout:1x2");
  assert.equal(press("#", { code: "Digit3", shiftKey: true }), "layout:2x1");
  assert.equal(press("$", { code: "Digit4", shiftKey: true }), "layout:2x2");
  assert.equal(press(" "), "cine");
  assert.equal(press("?", { shiftKey: true }), "help");
  assert.equal(press("Delete"), "delete");
  assert.equal(press("ArrowDown"), "slice:1");
  assert.equal(press("End"), "slice:last");
});

test("keys with Ctrl, Alt or Meta are left to the browser; unknown keys do nothing", () => {
  assert.equal(press("w", { ctrlKey: true }), null);
  assert.equal(press("l", { metaKey: true }), null);
  assert.equal(press("1", { code: "Digit1", altKey: true }), null);
  assert.equal(press("q"), null);
});

test("the help lists every tool, the presets offered, every layout and the cine", () => {
  const rows = helpRows([{ label: "Default" }, { label: "Lung" }]);
  const text = rows.map((r) => `${r.keys} ${r.what}`).join("\n");
  for (const tool of TOOLS) assert.ok(text.includes(`${tool.key.toUpperCase()} ${tool.label}`), tool.label);
  for (const layout of LAYOUTS) assert.ok(text.includes(`Shift+${layout.digit} ${layout.label}`));
  assert.ok(text.includes("1 Window: Default") && text.includes("2 Window: Lung"));
  assert.ok(text.includes("Space Play / pause cine"));
});

const ctFrame = {
  format: "int16", rows: 2, cols: 2, pixels: new Int16Array([0, 10, 20, 30]), slope: 1, intercept: -1024,
  window: { center: 40, width: 400 }, windows: [{ center: 40, width: 400, explanation: "WINDOW1" }, { center: 300, width: 1500, explanation: "BONE" }],
};

test("CT presets are offered on CT only; the dataset's windows by their explanation; Auto always", () => {
  const ct = presetsFor("CT", ctFrame).map((p) => p.label);
  assert.deepEqual(ct, ["Default", "WINDOW1", "BONE", "Auto", ...CT_PRESETS.map((p) => p.label)]);
  for (const modality of ["MR", "US", "CR", "DX"]) {
    const labels = presetsFor(modality, ctFrame).map((p) => p.label);
    assert.deepEqual(labels, ["Default", "WINDOW1", "BONE", "Auto"], modality);
  }
  const bone = presetsFor("CT", ctFrame).find((p) => p.label === "BONE");
  assert.deepEqual([bone.center, bone.width], [300, 1500]);
});

test("without dataset windows they are not invented; colour images have no presets", () => {
  const mr = presetsFor("MR", { ...ctFrame, windows: undefined, intercept: 0 });
  assert.deepEqual(mr.map((p) => p.id), ["default", "auto"]);
  assert.deepEqual(presetsFor("US", { ...ctFrame, format: "rgb8", window: null }), []);
  const unnamed = presetsFor("MR", { ...ctFrame, windows: [{ center: 5, width: 10, explanation: "" }] });
  assert.equal(unnamed[1].label, "Window 1");
  // The default window, unnamed, is not listed twice.
  const same = presetsFor("MR", { ...ctFrame, windows: [{ center: 40, width: 400, explanation: "" }, { center: 5, width: 10 }] });
  assert.deepEqual(same.map((p) => p.label), ["Default", "Window 2", "Auto"]);
});
