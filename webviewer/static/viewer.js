/*
 * mini-PACS image viewer: plain ES2020 modules (this one and those in viewer/), no build
 * step, loaded with <script type="module"> under a CSP without inline code or eval.
 *
 * The study is read through the DICOMweb-shaped endpoints named by #viewer's data-*
 * attributes: the series list, each series' instances, and each frame's raw samples
 * with X- headers that say how to show them. Frames stay in a bounded cache as typed
 * arrays; a prefetcher keeps at most four requests in flight, nearest the shown images
 * first. Up to four viewports (layouts 1x1, 1x2, 2x1, 2x2) show series of the study or
 * of the patient's other studies, optionally linked (scroll, zoom, window) within one
 * frame of reference with reference lines; window/level, zoom, pan, measurements and
 * ROIs, the probe and cine all run in the browser. Text from the server is only ever set
 * with textContent. window.viewerState exposes progress to tests and benchmarks.
 *
 * This module starts the viewer: it creates the viewports, wires the controls, sizes the
 * canvases, opens the study's first series and lists the patient's other studies. The
 * pure modules (frames, windowing, geometry, slices, planes, measure, annotations,
 * presets, shortcuts) touch no DOM and are unit-tested under Node (tests/js).
 */
import { fatal, preload, report, study, urls } from "./viewer/context.js";
import { getJson } from "./viewer/net.js";
import { resizeCanvases } from "./viewer/draw.js";
import { wire } from "./viewer/input.js";
import { loadPriors } from "./viewer/priors.js";
import { addSeries, records, showSeries } from "./viewer/series.js";
import { active, createViewports } from "./viewer/viewports.js";

const current = {
  uid: study.uid,
  root: urls.root,
  pages: `/studies/${encodeURIComponent(study.uid)}`,
  date: study.date,
  description: study.description,
  current: true,
};

async function start() {
  document.body.dataset.viewer = "loading";
  const list = preload.series ?? (await getJson(`${urls.root}/series`, "the list of series"));
  if (!Array.isArray(list) || list.length === 0) throw new Error("This study has no images.");
  for (const json of list) addSeries(json, current);
  await showSeries(active, records[0]);
}

createViewports();
wire();
resizeCanvases();
start().catch(fatal);
loadPriors().catch(report);
