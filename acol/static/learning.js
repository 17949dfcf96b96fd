// "How it learned": the picture's maps after every epoch of the model's training, drawn in the
// browser from the payload's `learning` (acol/learning.py computed every map, mask and word).
// Moving the Epoch slider asks the server nothing: it only picks which epoch's pictures to show.
// Runs in viewer.js's scope (element, view, bytes, overlayMap, overlayMask, setWords).

const LEARN_PANELS = ["a", "mask", "b", "cam"];
const learnCanvas = (id) => element.querySelector(`canvas[data-learn="${id}"]`);
const epochSlider = element.querySelector("input[data-epoch]");

// A new payload: keep the learning it brings ("unchanged" after a cell erased by hand, which does
// not change what training did), or hide the view for a model without a history.
function loadLearning(payload) {
  if (!payload || payload.learning === "unchanged") return;
  view.learning = payload.learning || null;
  view.learnDrawn = new Map();
  const section = element.querySelector("[data-learning]");
  section.hidden = !view.learning;
  if (!view.learning) return;
  const last = view.learning.epochs.length - 1;
  Object.assign(epochSlider, {max: last, value: last});
  setWords("learn-delta", view.learning.delta.toFixed(2));
  element.querySelector("[data-learn-cam]").hidden = !view.learning.cam;
  for (const id of LEARN_PANELS) Object.assign(learnCanvas(id), {width: payload.width, height: payload.height});
  drawEpoch(last);
}

// One epoch's pictures (each drawn once, then copied) and its words; the chart marks the epoch.
function drawEpoch(index) {
  const learning = view.learning;
  if (!learning || !view.photo) return;
  epochSlider.value = index;
  element.querySelector("[data-epoch-value]").textContent = learning.epochs[index];
  const draw = {
    a: () => overlayMap(bytes(learning.a[index]), learning.a_range[index]),
    mask: () => learning.mask && overlayMask(bytes(learning.mask[index])),
    b: () => learning.b && overlayMap(bytes(learning.b[index]), learning.b_range[index]),
    cam: () => learning.cam && overlayMap(bytes(learning.cam[index]), learning.cam_range[index]),
  };
  for (const id of LEARN_PANELS) {
    const key = `${id} ${index}`;
    if (!view.learnDrawn.has(key)) view.learnDrawn.set(key, draw[id]());
    const picture = view.learnDrawn.get(key);
    if (picture) learnCanvas(id).getContext("2d").putImageData(picture, 0, 0);
  }
  setWords("epoch-words", learning.words[index]);
  drawChart(index);
  element.dataset.epoch = String(learning.epochs[index]);
}

// Each branch's training loss (solid, left axis) and accuracy (dashed, right axis, %) per epoch,
// A in orange, B in purple, the CAM baseline in grey; the epoch shown is a vertical line.
function drawChart(index) {
  const {epochs, figures} = view.learning;
  const chart = element.querySelector("canvas[data-chart]"), context = chart.getContext("2d");
  const [left, right, top, bottom] = [44, chart.width - 44, 16, chart.height - 40];
  const x = (i) => left + (right - left) * i / Math.max(1, epochs.length - 1);
  const losses = Object.entries(figures).filter(([name]) => name.includes("loss")).flatMap(([, v]) => v);
  const maxLoss = Math.max(...losses.filter((v) => v !== null), 1e-6);
  context.clearRect(0, 0, chart.width, chart.height);
  context.font = "12px sans-serif";
  context.strokeStyle = "#999";
  context.strokeRect(left, top, right - left, bottom - top);
  context.fillStyle = "#333";
  context.fillText("loss", 4, top + 10);
  context.fillText("acc. %", right + 4, top + 10);
  epochs.forEach((epoch, i) => context.fillText(String(epoch), x(i) - 3, bottom + 14));
  context.fillText("epoch", right + 6, bottom + 14);
  // The CAM baseline first, so A's and B's lines are drawn over it where they coincide.
  const lines = [["cam_loss_A", "#9ca3af", false, "CAM loss"], ["cam_top1_A", "#9ca3af", true, "CAM acc."],
                 ["loss_A", "#ea580c", false, "A loss"], ["loss_B", "#7c3aed", false, "B loss"],
                 ["top1_A", "#ea580c", true, "A acc."], ["top1_B", "#7c3aed", true, "B acc."]];
  let legend = left;
  for (const [name, color, isAccuracy, label] of lines) {
    const values = figures[name];
    if (!values) continue;
    const y = (v) => isAccuracy ? bottom - (bottom - top) * v / 100 : bottom - (bottom - top) * v / maxLoss;
    context.strokeStyle = color;
    context.setLineDash(isAccuracy ? [5, 4] : []);
    context.lineWidth = 2;
    context.beginPath();
    let started = false;
    values.forEach((v, i) => {
      if (v === null) return;
      if (started) context.lineTo(x(i), y(v)); else context.moveTo(x(i), y(v));
      started = true;
    });
    context.stroke();
    context.setLineDash([]);
    context.fillStyle = color;
    context.fillText(label, legend, chart.height - 2);
    legend += context.measureText(label).width + 14;
  }
  context.strokeStyle = "#111";
  context.lineWidth = 1;
  context.beginPath();
  context.moveTo(x(index), top);
  context.lineTo(x(index), bottom);
  context.stroke();
}

epochSlider.addEventListener("input", () => drawEpoch(Number(epochSlider.value)));
