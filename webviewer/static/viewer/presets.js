/*
 * Window presets per image (pure, no DOM): the image's own window ("Default"), the
 * dataset's windows by their explanation, an automatic window from the histogram, and
 * the CT presets, offered for CT only. Colour images have none.
 */
import * as frames from "./frames.js";
import { histogramWindow } from "./measure.js";

export const CT_PRESETS = [
  { id: "soft", label: "Soft tissue", center: 40, width: 400 },
  { id: "lung", label: "Lung", center: -600, width: 1500 },
  { id: "bone", label: "Bone", center: 400, width: 1800 },
  { id: "brain", label: "Brain", center: 40, width: 80 },
];

/** The automatic window of `frame`: frames.js's when it has one, else the histogram's. */
export function autoWindowOf(frame) {
  const auto = typeof frames.autoWindow === "function" ? frames.autoWindow(frame) : null;
  return auto ?? histogramWindow(frame);
}

/** The dataset's own windows of `frame` ([{ center, width, explanation }]), valid ones only. */
function ownWindows(frame) {
  const list = Array.isArray(frame.windows) ? frame.windows : [];
  return list.filter((w) => Number.isFinite(w?.center) && w.width > 0);
}

/**
 * The presets offered for `frame` of a series of `modality`, in menu order:
 * [{ id, label, center, width }]. Empty for colour frames.
 */
export function presetsFor(modality, frame) {
  if (!frame || frame.format === "rgb8" || !frame.window) return [];
  const presets = [{ id: "default", label: "Default", ...pick(frame.window) }];
  ownWindows(frame).forEach((w, i) => {
    const label = String(w.explanation ?? "").trim();
    // An unnamed window that is the default already has its entry.
    if (!label && w.center === frame.window.center && w.width === frame.window.width) return;
    presets.push({ id: `own-${i + 1}`, label: label || `Window ${i + 1}`, ...pick(w) });
  });
  const auto = autoWindowOf(frame);
  if (auto) presets.push({ id: "auto", label: "Auto", ...pick(auto) });
  if (String(modality).toUpperCase() === "CT") presets.push(...CT_PRESETS.map((p) => ({ ...p })));
  return presets;
}

const pick = (w) => ({ center: w.center, width: w.width });

/** "C 40 W 400": a preset's tooltip. */
export function presetTitle(preset) {
  return `C ${Number(preset.center.toPrecision(6))} W ${Number(preset.width.toPrecision(6))}`;
}
