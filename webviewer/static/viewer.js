/*
 * mini-PACS image viewer: plain ES2020 modules (this one and those in viewer/), no build
 * step, loaded with <script type="module"> under a CSP without inline code or eval.
 *
 * The study is read through the DICOMweb-shaped endpoints named by #viewer's data-*
 * attributes: the series list, each series' instances, and each frame's raw samples
 * with X- headers that say how to show them. Frames stay in a bounded cache as typed
 * arrays; a prefetcher keeps at most four requests in flight, nearest the shown image
 * first. Window/level (through a lookup table), zoom, pan, invert, length measurement
 * and cine all run in the browser. Text from the server is only ever set with
 * textContent. window.viewerState exposes progress to tests and benchmarks.
 *
 * This module starts the viewer: it wires the controls, sizes the canvases and opens the
 * study's first series. The pure modules (frames, windowing, geometry, slices) touch no
 * DOM and are unit-tested under Node (tests/js).
 */
import { fatal, preload, urls } from "./viewer/context.js";
import { getJson } from "./viewer/net.js";
import { resizeCanvases } from "./viewer/draw.js";
import { wire } from "./viewer/input.js";
import { addSeries, records, selectSeries } from "./viewer/series.js";

async function start() {
  document.body.dataset.viewer = "loading";
  const list = preload.series ?? (await getJson(`${urls.root}/series`, "the list of series"));
  if (!Array.isArray(list) || list.length === 0) throw new Error("This study has no images.");
  list.forEach(addSeries);
  await selectSeries(records[0]);
}

wire();
resizeCanvases();
start().catch(fatal);
