/*
 * Non-image objects in a viewport (SR, PDF, KOS, RT: instances without Rows): no frame
 * is fetched; the server's HTML panel of the object (escaped there) is shown instead,
 * parsed with DOMParser with any script left out, under a list of the series' objects
 * when it has several.
 */
import { report } from "./context.js";
import { get } from "./net.js";
import { showSlice } from "./series.js";
import { sliceOf } from "./viewports.js";

const panels = new Map(); // panel URL -> Promise of the parsed nodes' HTML document

function loadPanel(url) {
  if (!panels.has(url)) {
    const parsed = get(url, "the document").then(async (response) => {
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const script of doc.querySelectorAll("script")) script.remove();
      return doc;
    });
    parsed.catch(() => panels.delete(url));
    panels.set(url, parsed);
  }
  return panels.get(url);
}

function objectList(vp) {
  const list = document.createElement("ol");
  list.className = "objects";
  vp.record.slices.forEach((slice, index) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `Object ${index + 1}`;
    button.setAttribute("aria-pressed", String(index === vp.index));
    button.addEventListener("click", () => showSlice(vp, index));
    item.append(button);
    list.append(item);
  });
  return list;
}

/** Show the document `vp`'s slice is, or hide the panel when it is an image. */
export function showDocument(vp) {
  const slice = sliceOf(vp);
  const isDocument = Boolean(slice?.document);
  vp.cell.classList.toggle("showing-document", isDocument);
  vp.doc.hidden = !isDocument;
  if (!isDocument) {
    vp.doc.replaceChildren();
    return;
  }
  const body = document.createElement("div");
  body.className = "document-body";
  body.textContent = "Loading…";
  vp.doc.replaceChildren(...(vp.record.slices.length > 1 ? [objectList(vp)] : []), body);
  loadPanel(slice.panel).then(
    (doc) => {
      if (sliceOf(vp) !== slice) return;
      body.replaceChildren(...[...doc.body.childNodes].map((node) => document.importNode(node, true)));
    },
    (error) => {
      body.textContent = error.message;
      report(error);
    },
  );
}
