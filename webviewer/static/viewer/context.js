/*
 * The page the viewer runs in: its shared elements (toolbar, panels, slider), the URLs
 * and preloaded data that #viewer names, the progress state exposed to tests and
 * benchmarks as window.viewerState (which mirrors the active viewport), and the error
 * banner (silent once the page is going away; before the first image an error also
 * marks the page's viewer state "error").
 */

export const scriptStart = performance.now();

export const byId = (id) => document.getElementById(id);
export const root = byId("viewer");
export const urls = { root: root.dataset.root, tags: root.dataset.tags, related: root.dataset.related };
// The series list, the first series' images, the study's summary and the patient's
// other studies, sent with the page (a JSON island).
export const preload = JSON.parse(byId("viewer-preload")?.textContent || "{}");
export const study = { uid: root.dataset.study, ...(preload.study ?? {}) };
export const el = {
  stage: byId("stage"),
  seriesList: byId("series-list"),
  priors: byId("priors"),
  slider: byId("frame-slider"),
  frameLabel: byId("frame-label"),
  error: byId("viewer-error"),
  invert: byId("invert"),
  link: byId("link"),
  cine: byId("cine"),
  cineFps: byId("cine-fps"),
  presetMenu: byId("preset-menu"),
  presetItems: byId("preset-items"),
  tags: byId("tags"),
  tagsToggle: byId("tags-toggle"),
  tagsFilter: byId("tags-filter"),
  tagsBody: document.querySelector("#tags-table tbody"),
  notes: byId("annotation-panel"),
  notesToggle: byId("annotations-toggle"),
  notesList: byId("annotation-list"),
  help: byId("help"),
  helpBody: document.querySelector("#help-table tbody"),
};

export const state = {
  seriesUid: null,
  studyUid: null,
  index: 0,
  total: 0,
  frameRequests: 0,
  framesDrawn: 0,
  center: null,
  width: null,
  firstImageMs: null,
  ready: false,
  inFlight: 0,
  layout: "1x1",
  active: 0,
  linked: false,
  tool: "wl",
  viewports: [],
  annotations: [],
};
window.viewerState = state;

// ---------------------------------------------------------------- errors

let leaving = false;

/** The page is going away (logout, navigation): report nothing more. */
export function stopReporting() {
  leaving = true;
}

/** Show `error`'s message in the banner (and on the console). */
export function report(error) {
  if (leaving || error?.name === "AbortError") return;
  console.error(error);
  el.error.textContent = error?.message || String(error);
  el.error.hidden = false;
}

/** Report `error`; before the first image, mark the viewer as failed. */
export function fatal(error) {
  report(error);
  if (!state.ready) document.body.dataset.viewer = "error";
}
