// "Trained with δ": the picture through the same model trained at other δ (the paper's δ
// ablation), drawn from the payload's `trained_deltas` (acol/viewer/trained_deltas.py computed every map,
// erased cell, box and word). Choosing a δ asks the server nothing: it only picks what to draw.
// Runs in the viewer's scope (element, view, bytes, setWords: viewer.js; overlayMap, overlayMask, drawBox: panels.js).

const DELTA_PANELS = ["a", "mask", "b", "fused"];
const deltaSection = element.querySelector("[data-deltas]");
// Two rows of the same four panels: the page's model (viewer.html's row) and the chosen δ (its copy).
const chosenRow = deltaSection.querySelector('[data-delta-row="shipped"]').cloneNode(true);
chosenRow.dataset.deltaRow = "chosen";
chosenRow.querySelectorAll("[data-text]").forEach((node) => { node.dataset.text = node.dataset.text.replace("shipped", "chosen"); });
deltaSection.append(chosenRow);
const deltaCanvas = (row, id) => deltaSection.querySelector(`[data-delta-row="${row}"] canvas[data-delta="${id}"]`);

// A new payload: its models trained at other δ ("unchanged" after a cell erased by hand, which
// changes none of them), or no section for a model without siblings.
function loadTrainedDeltas(payload) {
  nameTrainedDelta(payload);
  if (!payload || payload.trained_deltas === "unchanged") return;
  view.trained = payload.trained_deltas || null;
  deltaSection.hidden = !view.trained;
  if (!view.trained) return;
  const shipped = view.trained.findIndex((one) => one.shipped);
  const choices = deltaSection.querySelector("[data-delta-choices]");
  choices.replaceChildren(...view.trained.map((one, index) => {
    const label = document.createElement("label"), input = document.createElement("input");
    Object.assign(input, {type: "radio", name: "trained-delta", value: String(index)});
    input.addEventListener("change", () => drawTrained("chosen", index));
    label.append(input, ` ${one.delta.toFixed(2)}${one.shipped ? " (this model)" : ""}`);
    return label;
  }));
  for (const row of ["shipped", "chosen"]) {
    for (const id of DELTA_PANELS) Object.assign(deltaCanvas(row, id), {width: payload.width, height: payload.height});
  }
  drawTrained("shipped", shipped);
  // Open on the smallest δ that is not the page's model: the contrast with it is the lesson.
  drawTrained("chosen", view.trained.findIndex((one, index) => index !== shipped));
}

// One model's four pictures in a row, its box on the fused map, and what B said.
function drawTrained(row, index) {
  const one = view.trained[index];
  if (!one || !view.photo) return;
  if (row === "chosen") deltaSection.querySelector(`input[value="${index}"]`).checked = true;
  const pictures = {
    a: overlayMap(bytes(one.a), one.a_range), mask: overlayMask(bytes(one.mask)),
    b: overlayMap(bytes(one.b), one.b_range), fused: overlayMap(bytes(one.fused), one.fused_range),
  };
  for (const id of DELTA_PANELS) {
    const context = deltaCanvas(row, id).getContext("2d");
    context.putImageData(pictures[id], 0, 0);
    if (id === "fused") {
      view.payload.true_boxes.forEach((box) => drawBox(context, box, view.payload.true_box_color));
      drawBox(context, one.box, view.payload.predicted_box_color);
    }
  }
  const found = one.iou === null ? "" : ` · fused box IoU ${one.iou.toFixed(2)}`;
  setWords(`delta-${row}-title`, `${one.shipped ? "This model: trained" : "Trained"} with δ = ${one.delta.toFixed(2)}`);
  setWords(`delta-${row}-words`, `${one.verdict}${found}. ${one.story.words}`);
  deltaSection.dataset[row] = one.delta.toFixed(2);
}

// The δ slider erases now, while explaining, in a model whose B trained at one δ: its label says
// which (Gradio's label, with the payload's words after it; a CAM model erases nothing).
function nameTrainedDelta(payload, tries = 25) {
  if (!payload || !payload.states || payload !== view.payload) return;
  const label = document.querySelector("#erase-threshold [data-testid='block-info']");
  if (!label) {  // the first payload may come before Gradio has drawn its slider
    if (tries > 0) setTimeout(() => nameTrainedDelta(payload, tries - 1), 200);
    return;
  }
  let words = label.querySelector("[data-trained-delta]");
  if (!words) {
    words = document.createElement("span");
    words.dataset.trainedDelta = "";
    label.append(words);
  }
  words.textContent = payload.acol ? ` (B trained with δ = ${payload.trained_delta.toFixed(2)})`
    : " (a one-branch CAM model erases nothing)";
}
