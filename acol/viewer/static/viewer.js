// The ACoL viewer's four panels, drawn in the browser from one payload (acol/viewer/payload.py).
//
// Runs as the body of gr.HTML's `js_on_load`: `element` is the component, `props.value` the
// payload (as JSON text), `trigger(event, data)` sends an event to the server and `watch` calls
// back when the server sends a new payload. Nothing here computes a map, a mask or a box: they
// all come computed, for every step of both sliders. This file keeps the view's state, picks what to show
// at the sliders' values, finds the feature cell under the pointer, writes the words it was sent
// and wires the page's inputs; panels.js draws (resizes, colours and blends as
// acol/viewer/drawing.py does).
// So moving δ or the box threshold, or hovering a cell, asks the server nothing; a click on the
// erased panel does (branch B runs on the hand-made mask there).

const PANELS = ["branch-a", "erased", "branch-b", "fused"];
const ONE_BRANCH_NOTE = "one-branch CAM model: nothing is erased, there is no branch B";
// `marks`: cells the lesson outlines ({cell, panels, color, inset}); `hidingB`: the lesson's guess
// is on, so nothing drawn here (verdict, hover values, the story's words) may show what B found.
const view = {payload: null, photo: null, colors: null, delta: 0, box: 0, byHand: false, hover: null,
              drawn: new Map(), frame: 0, paintedAt: 0, marks: [], hidingB: false};
const canvas = (id) => element.querySelector(`canvas[data-panel="${id}"]`);
const bytes = (base64) => Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
// The index of the step nearest to a slider's value (δ: 0, 0.05, ... 1; the box threshold: those
// and the model's own, 0.37 say).
const nearest = (steps, value) => steps.reduce((best, step, index) =>
  Math.abs(step - value) < Math.abs(steps[best] - value) ? index : best, 0);
const stepOf = (value) => nearest(view.payload.deltas, value);

// What is shown now: the words of the δ step (or of the hand-made mask) and its state's arrays.
function shown() {
  const words = view.byHand && view.payload.hand ? view.payload.hand : view.payload.steps[stepOf(view.delta)];
  return {words, state: view.payload.states[words.state]};
}

// "**bold**" from Python's Markdown as text nodes, never as HTML.
function setWords(id, text) {
  const target = element.querySelector(`[data-text="${id}"]`);
  target.replaceChildren(...text.split("**").map((part, index) => {
    if (index % 2 === 0) return document.createTextNode(part);
    const bold = document.createElement("b");
    bold.textContent = part;
    return bold;
  }));
}

function draw() {
  view.frame = 0;
  const payload = view.payload;
  if (!payload || !view.photo) return;
  const {words, state} = shown(), boxStep = nearest(payload.box_thresholds, view.box);
  const pictures = statePictures(view.byHand ? "hand" : words.state, state);
  for (const id of PANELS) {
    const context = canvas(id).getContext("2d");
    if (pictures[id]) context.putImageData(pictures[id], 0, 0); else note(context, ONE_BRANCH_NOTE);
    if (id === "fused") {
      payload.true_boxes.forEach((box) => drawBox(context, box, payload.true_box_color));
      drawBox(context, state.boxes[boxStep], payload.predicted_box_color);
    }
    if (view.hover) outlineCell(context, view.hover);
    for (const {cell, panels, color, inset} of view.marks) {
      if (panels.includes(id)) outlineCell(context, cell, color, inset, true);
    }
  }
  const iou = state.ious ? ` · IoU with true box ${state.ious[boxStep].toFixed(2)}` : "";
  setWords("status", [payload.caption, words.erasing, `box above ${payload.box_thresholds[boxStep].toFixed(2)}${iou}`]
    .filter(Boolean).join(" · ") + (payload.note ? `  ${payload.note}` : ""));
  setWords("verdict", !payload.acol ? "A one-branch CAM model has no branch B."
    : view.hidingB ? "(B's verdict waits until you have guessed where B will look.)" : words.verdict);
  showStory(payload.story);
  setWords("cell", view.hover ? cellWords(view.hover, state) : "Hover a cell to read its values.");
  element.dataset.byHand = String(view.byHand);
  element.dataset.delta = payload.deltas[stepOf(view.delta)].toFixed(2);
  view.paintedAt = performance.now();
  // A drag moves one step at a time: draw the neighbouring steps while the page is idle, so the
  // next move only copies pictures.
  for (const step of [stepOf(view.delta) - 1, stepOf(view.delta) + 1]) {
    const words = payload.steps[step];
    const state = words && payload.states[words.state];
    if (state) requestIdleCallback(() => view.payload === payload && statePictures(words.state, state));
  }
}

// The four panels' pictures of one state (``key``: its index, or "hand"), each drawn once.
function statePictures(key, state) {
  const payload = view.payload;
  return {
    "branch-a": picture("a", () => overlayMap(bytes(payload.a), payload.a_range)),
    "erased": state.mask && picture(`mask ${key}`, () => overlayMask(bytes(state.mask))),
    "branch-b": state.b && picture(`b ${key}`, () => overlayMap(bytes(state.b), state.b_range)),
    "fused": picture(`fused ${key}`, () => overlayMap(bytes(state.fused), state.fused_range)),
  };
}

// Whether ACoL's story holds on this picture (acol/evaluation/story.py, at the model's own δ), in Python's
// words: shown where the picture's parts are known, so a bundled example where it fails says so.
// (For any other picture the lesson says it.) Hidden while the lesson asks where B will look.
function showStory(story) {
  const line = element.querySelector('[data-text="story"]');
  line.hidden = !(story && story.parts_known) || view.hidingB;
  if (line.hidden) return;
  line.dataset.holds = String(story.holds);
  setWords("story", `At the model's own δ = ${view.payload.model_delta.toFixed(2)}: ${storyInBold(story.words)}`);
}

// The story's words with their verdict ("holds", "does not hold") in **bold**.
const storyInBold = (words) => words.replace(/^Here the story (holds|does not hold)/, "Here the story **$1**");

// Redraw in the next animation frame, once however many inputs arrive before it.
function redraw() {
  if (!view.frame) view.frame = requestAnimationFrame(draw);
}

function cellWords([row, col], state) {
  const index = row * view.payload.grid[1] + col, value = (base64) => (bytes(base64)[index] / 255).toFixed(2);
  if (!view.payload.acol) return `cell (row ${row}, column ${col}): A ${value(view.payload.a)}`;
  const erased = bytes(state.mask)[index] > 0 ? "**erased**" : "kept";
  if (view.hidingB) return `cell (row ${row}, column ${col}): A ${value(view.payload.a)} · ${erased} · ` +
                           "B and fused: after your guess";
  return `cell (row ${row}, column ${col}): A ${value(view.payload.a)} · ${erased} · B ${value(state.b)}` +
         ` · fused ${value(state.fused)}`;
}

// The feature cell under the pointer (acol.viewer.drawing.feature_cell), or null off the picture.
function cellAt(event) {
  const {width, height, grid: [rows, cols]} = view.payload, bounds = event.target.getBoundingClientRect();
  const x = Math.floor((event.clientX - bounds.left) * width / bounds.width);
  const y = Math.floor((event.clientY - bounds.top) * height / bounds.height);
  if (x < 0 || y < 0 || x >= width || y >= height) return null;
  return [Math.floor(y * rows / height), Math.floor(x * cols / width)];
}

async function load(payload) {
  view.payload = payload && payload.states ? payload : null;
  view.drawn.clear();
  view.hover = null;
  element.querySelector(".acol-panels").style.display = view.payload ? "" : "none";
  if (!view.payload) {
    setWords("status", payload && payload.message ? payload.message : "");
    element.querySelector("[data-learning]").hidden = true;
    element.querySelector('[data-text="story"]').hidden = true;
    lessonOnNewPicture();  // no picture: an open lesson closes
    return;
  }
  ({delta: view.delta, box_threshold: view.box, by_hand: view.byHand} = payload.view);
  view.colors = bytes(payload.colormap);
  const image = new Image();
  image.src = payload.image;
  await image.decode();
  if (view.payload !== payload) return;  // a newer payload arrived meanwhile
  const photo = new OffscreenCanvas(payload.width, payload.height).getContext("2d");
  photo.drawImage(image, 0, 0);
  view.photo = photo.getImageData(0, 0, payload.width, payload.height);
  for (const id of PANELS) Object.assign(canvas(id), {width: payload.width, height: payload.height});
  drawKey();
  draw();
  loadLearning(payload);
  loadTrainedDeltas(payload);
  lessonOnNewPicture();  // an open lesson starts again on the new picture
}

// The sliders are Gradio's: their every `input` (a drag, a key, the number box) redraws here.
document.addEventListener("input", (event) => {
  const slider = event.target.closest && event.target.closest("#erase-threshold, #box-threshold");
  if (!slider || !view.payload || event.target.value === "") return;
  if (slider.id === "erase-threshold") Object.assign(view, {delta: Number(event.target.value), byHand: false});
  else view.box = Number(event.target.value);
  redraw();
});
for (const id of PANELS) {
  canvas(id).addEventListener("pointermove", (event) => {
    const cell = view.payload && cellAt(event);
    if (String(cell) === String(view.hover)) return;
    view.hover = cell;
    redraw();
  });
  canvas(id).addEventListener("pointerleave", () => {
    view.hover = null;
    redraw();
  });
}
canvas("erased").addEventListener("click", (event) => {
  const cell = view.payload && view.payload.acol && !view.lesson && cellAt(event);  // a lesson's guess stays here
  if (cell) trigger("select", {index: cell, value: view.byHand});
});
element.querySelector("[data-reset]").addEventListener("click", () => {
  view.byHand = false;
  redraw();
});
// learning.js and lesson.js follow in this scope; the first load waits for them (see the end).
