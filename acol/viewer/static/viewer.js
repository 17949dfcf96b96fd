// The ACoL viewer's four panels, drawn in the browser from one payload (acol/viewer/payload.py).
//
// Runs as the body of gr.HTML's `js_on_load`: `element` is the component, `props.value` the
// payload, `trigger(event, data)` sends an event to the server and `watch` calls back when the
// server sends a new payload. Nothing here computes a map, a mask or a box: they all come
// computed, for every step of both sliders. This file only resizes them (with the weights it is
// sent), colours and blends them as acol/viewer/drawing.py does, finds the feature cell under the pointer
// and writes the words it was sent.
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

// acol.viewer.drawing.upsampled: a per-cell map (0-255) resized to the picture with the bicubic weights
// Python sent (each pixel's first cell and its weights, per side), then min-max normalized by the
// range Python found, as colour indexes (0-255).
function resized(cells, [low, high]) {
  const {width, height, grid: [rows, cols], resize} = view.payload;
  const side = ({taps, first, weights}) =>
    ({taps, first: bytes(first), weights: new Float32Array(bytes(weights).buffer)});
  const across = side(resize.cols), down = side(resize.rows);
  const rowsResized = new Float32Array(rows * width);  // each cell row, resized across
  for (let r = 0; r < rows; r++) {
    for (let x = 0; x < width; x++) {
      let sum = 0;
      for (let t = 0; t < across.taps; t++) {
        sum += across.weights[x * across.taps + t] * cells[r * cols + across.first[x] + t];
      }
      rowsResized[r * width + x] = sum / 255;
    }
  }
  const indexes = new Uint8Array(width * height);
  if (!(high > low)) return indexes;  // a constant map: normalized to zeros
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let sum = 0;
      for (let t = 0; t < down.taps; t++) {
        sum += down.weights[y * down.taps + t] * rowsResized[(down.first[y] + t) * width + x];
      }
      indexes[y * width + x] = Math.floor(Math.min(255, Math.max(0, (sum - low) / (high - low) * 255 + 0.5)));
    }
  }
  return indexes;
}

// acol.viewer.drawing.overlay_map: the map's colour (the colour map at its value) blended over the photo
// (Math.floor: ImageData would round, numpy's astype(uint8) truncates).
function overlayMap(cells, range) {
  const heat = resized(cells, range), photo = view.photo.data, colors = view.colors;
  const out = new ImageData(view.payload.width, view.payload.height), opacity = view.payload.map_opacity;
  for (let i = 0; i < out.data.length; i += 4) {
    for (let c = 0; c < 3; c++) {
      out.data[i + c] = Math.floor(photo[i + c] * (1 - opacity) + colors[3 * heat[i / 4] + c] * opacity);
    }
    out.data[i + 3] = 255;
  }
  return out;
}

// acol.viewer.drawing.overlay_mask: erased cells washed out as whole blocks, the feature grid half-way to grey.
function overlayMask(cells) {
  const {width, height, grid: [rows, cols], erased_color: color, erased_opacity: opacity} = view.payload;
  const photo = view.photo.data, out = new ImageData(width, height);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y * rows / height), rowEdge = y > 0 && row !== Math.floor((y - 1) * rows / height);
    for (let x = 0; x < width; x++) {
      const col = Math.floor(x * cols / width), colEdge = x > 0 && col !== Math.floor((x - 1) * cols / width);
      const i = 4 * (y * width + x), erased = cells[row * cols + col] > 0;
      for (let c = 0; c < 3; c++) {  // in floats, truncated once at the end, as numpy's astype(uint8)
        let value = photo[i + c];
        if (erased) value = value * (1 - opacity) + color[c] * opacity;
        if (rowEdge) value = value * 0.5 + 127;
        if (colEdge) value = value * 0.5 + 127;
        out.data[i + c] = Math.floor(value);
      }
      out.data[i + 3] = 255;
    }
  }
  return out;
}

// Each drawn picture is kept for the payload's life: a slider step drawn once is a copy after
// (about 0.6 MB a picture at 384x384, three a state).
function picture(key, draw) {
  if (!view.drawn.has(key)) view.drawn.set(key, draw());
  return view.drawn.get(key);
}

// acol.viewer.drawing.draw_boxes: the true boxes (green), then the predicted one (cyan), lines inside the box.
function drawBox(context, box, color) {
  const [x0, y0, x1, y1] = box, line = view.payload.box_line_width;
  if (!(x1 > x0 && y1 > y0)) return;
  context.fillStyle = `rgb(${color.join(",")})`;
  const w = x1 - x0, h = y1 - y0;
  [[x0, y0, w, Math.min(line, h)], [x0, y1 - Math.min(line, h), w, Math.min(line, h)],
   [x0, y0, Math.min(line, w), h], [x1 - Math.min(line, w), y0, Math.min(line, w), h]]
    .forEach(([x, y, bw, bh]) => context.fillRect(x, y, bw, bh));
}

function note(context, text) {
  const {width, height} = view.payload;
  context.fillStyle = "rgb(236,236,236)";
  context.fillRect(0, 0, width, height);
  context.fillStyle = "rgb(70,70,70)";
  context.font = "13px sans-serif";
  context.textAlign = "center";
  text.split(": ").forEach((line, index) => context.fillText(line, width / 2, height / 2 + 18 * (index - 0.5)));
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

// The hovered cell in every panel: its edges in picture pixels, as overlay_mask draws the grid.
// A mark (the lesson's) is `inset` pixels in from the cell's edges, so two marks of one cell (the
// student's guess inside B's peak) both show, and has a dark rim, so it shows on a bright map too.
function outlineCell(context, [row, col], color = "white", inset = 1, rim = false) {
  const {width, height, grid: [rows, cols]} = view.payload;
  const x0 = Math.ceil(col * width / cols), x1 = Math.ceil((col + 1) * width / cols);
  const y0 = Math.ceil(row * height / rows), y1 = Math.ceil((row + 1) * height / rows);
  const outline = [x0 + inset, y0 + inset, x1 - x0 - 2 * inset, y1 - y0 - 2 * inset];
  if (rim) {
    context.strokeStyle = "rgba(0, 0, 0, 0.8)";
    context.lineWidth = 4;
    context.strokeRect(...outline);
  }
  context.strokeStyle = color;
  context.lineWidth = 2;
  context.strokeRect(...outline);
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

// The colour key under the panels: the colour map from 0 to 1, and the erased and kept cells.
function drawKey() {
  for (const [name, rgb] of Object.entries(view.payload.swatches)) {
    element.querySelector(`[data-swatch="${name}"]`).style.background = `rgb(${rgb.join(",")})`;
  }
  const key = element.querySelector("canvas[data-key]"), context = key.getContext("2d");
  for (let x = 0; x < key.width; x++) {
    const value = Math.round(255 * x / (key.width - 1));
    context.fillStyle = `rgb(${view.colors[3 * value]},${view.colors[3 * value + 1]},${view.colors[3 * value + 2]})`;
    context.fillRect(x, 0, 1, key.height);
  }
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
