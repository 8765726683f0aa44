/*
 * The keyboard shortcuts (pure, no DOM): which action a key press means, and the rows of
 * the "?" help overlay. Actions are strings: "tool:<name>", "preset:<n>" (n from 0, in
 * the window menu's order), "layout:<name>", "slice:<step>" and single words.
 */

export const TOOLS = [
  { key: "w", tool: "wl", label: "Window/level" },
  { key: "z", tool: "zoom", label: "Zoom" },
  { key: "p", tool: "pan", label: "Pan" },
  { key: "l", tool: "length", label: "Length" },
  { key: "a", tool: "angle", label: "Angle" },
  { key: "e", tool: "ellipse", label: "Ellipse ROI" },
  { key: "r", tool: "rect", label: "Rectangle ROI" },
  { key: "v", tool: "probe", label: "Pixel value probe" },
];

export const LAYOUTS = [
  { name: "1x1", digit: "1", label: "Layout 1 × 1" },
  { name: "1x2", digit: "2", label: "Layout 1 × 2 (side by side)" },
  { name: "2x1", digit: "3", label: "Layout 2 × 1 (one above the other)" },
  { name: "2x2", digit: "4", label: "Layout 2 × 2" },
];

const SINGLE = {
  " ": "cine",
  i: "invert",
  f: "reset",
  k: "link",
  t: "tags",
  n: "annotations",
  "?": "help",
  Escape: "escape",
  Delete: "delete",
  Backspace: "delete",
  "]": "next-viewport",
  "[": "previous-viewport",
  ArrowUp: "slice:-1",
  ArrowLeft: "slice:-1",
  ArrowDown: "slice:1",
  ArrowRight: "slice:1",
  PageUp: "slice:-10",
  PageDown: "slice:10",
  Home: "slice:first",
  End: "slice:last",
};

/** The action of a key press ({ key, code, shiftKey, ctrlKey, altKey, metaKey }), or null. */
export function actionFor(press) {
  if (press.ctrlKey || press.altKey || press.metaKey) return null;
  const digit = /^Digit([1-9])$/.exec(press.code ?? "")?.[1] ?? (/^[1-9]$/.test(press.key) ? press.key : null);
  if (digit && press.shiftKey) {
    const layout = LAYOUTS.find((l) => l.digit === digit);
    return layout ? `layout:${layout.name}` : null;
  }
  if (digit) return `preset:${Number(digit) - 1}`;
  if (press.key in SINGLE) return SINGLE[press.key];
  const tool = TOOLS.find((t) => t.key === String(press.key).toLowerCase());
  return tool ? `tool:${tool.tool}` : null;
}

/** The help overlay's rows [{ keys, what }], with the window presets now offered ({ label }). */
export function helpRows(presets) {
  return [
    ...TOOLS.map((t) => ({ keys: t.key.toUpperCase(), what: `${t.label} tool` })),
    ...presets.slice(0, 9).map((p, i) => ({ keys: String(i + 1), what: `Window: ${p.label}` })),
    ...LAYOUTS.map((l) => ({ keys: `Shift+${l.digit}`, what: l.label })),
    { keys: "Space", what: "Play / pause cine" },
    { keys: "↑ ↓ ← →", what: "Previous / next image" },
    { keys: "PgUp PgDn", what: "Ten images back / on" },
    { keys: "Home End", what: "First / last image" },
    { keys: "Wheel", what: "Scroll images (Ctrl+wheel: zoom)" },
    { keys: "[ ]", what: "Previous / next viewport" },
    { keys: "K", what: "Link viewports of one frame of reference" },
    { keys: "I", what: "Invert" },
    { keys: "F", what: "Fit the image (reset zoom and pan)" },
    { keys: "N", what: "Annotation list" },
    { keys: "T", what: "DICOM tags" },
    { keys: "Delete", what: "Delete the selected annotation" },
    { keys: "Esc", what: "Deselect, cancel a drawing, close this help" },
    { keys: "?", what: "This help" },
  ];
}
