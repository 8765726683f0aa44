/*
 * The patient's other studies (priors), listed under the study's own series (from the
 * page's preload, else GET /studies/<study>/related): each opens to show its series as
 * thumbnails (read through DICOMweb, which audits the first access to that study), to
 * click or drag into a viewport, and links to its own viewer page.
 */
import { el, preload, report, urls } from "./context.js";
import { getJson } from "./net.js";
import { dicomDate } from "./corners.js";
import { addSeries, loadThumbnails } from "./series.js";

/** The study object of a related study's row. */
export function studyOf(row) {
  const uid = String(row.study);
  return {
    uid,
    root: `/dicomweb/studies/${encodeURIComponent(uid)}`,
    pages: `/studies/${encodeURIComponent(uid)}`,
    date: row.date,
    description: row.description,
    current: false,
  };
}

function text(tag, className, value) {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = String(value ?? "");
  return node;
}

function priorEntry(row) {
  const prior = studyOf(row);
  const section = document.createElement("section");
  section.className = "prior";
  section.dataset.study = prior.uid;
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.className = "prior-toggle";
  toggle.setAttribute("aria-expanded", "false");
  toggle.append(
    text("span", "prior-date", dicomDate(row.date) || "No date"),
    text("span", "prior-desc", row.description),
    text("span", "muted", [row.modalities, `${row.series} series`].filter(Boolean).join(" · ")),
  );
  const series = document.createElement("div");
  series.className = "prior-series";
  series.hidden = true;
  const page = text("a", "prior-page", "Open on its own");
  page.href = prior.pages;
  series.append(page);
  let loaded = null;
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    series.hidden = !open;
    if (open && !loaded) {
      loaded = getJson(`${prior.root}/series`, "the prior study's series").then(
        (list) => {
          for (const json of list) addSeries(json, prior, series);
          loadThumbnails();
        },
        (error) => {
          loaded = null;
          report(error);
        },
      );
    }
  });
  section.append(toggle, series);
  return section;
}

/** List the patient's other studies (nothing when there are none). */
export async function loadPriors() {
  const list = preload.related ?? (await getJson(urls.related, "the patient's other studies"));
  if (!Array.isArray(list) || list.length === 0) return;
  el.priors.append(text("h2", "priors-title", `Other studies (${list.length})`), ...list.map(priorEntry));
  el.priors.hidden = false;
}
