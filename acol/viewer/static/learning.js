// "How it learned": the picture's maps after every epoch of the model's training, drawn in the
// browser from the payload's `learning` (acol/viewer/learning.py computed every map, mask and word).
// Moving the Epoch slider asks the server nothing: it only picks which epoch's pictures to show.
// It opens at epoch 0 (before training), so the student sees the maps start from nothing; ▶ Play
// steps through the epochs once.
// Runs in the viewer's scope (element, view, bytes, setWords: viewer.js; overlayMap, overlayMask: panels.js).

const LEARN_PANELS = ["a", "mask", "b", "cam"];
const learnCanvas = (id) => element.querySelector(`canvas[data-learn="${id}"]`);
const epochSlider = element.querySelector("input[data-epoch]");
const playButton = element.querySelector("[data-epoch-play]");
const PLAY_EPOCH_MS = 700;  // one epoch's pictures stay this long while playing: enough to see them

// A new payload: keep the learning it brings ("unchanged" after a cell erased by hand, which does
// not change what training did), or hide the view for a model without a history.
function loadLearning(payload) {
  if (!payload || payload.learning === "unchanged") return;
  stopPlaying();
  view.learning = payload.learning || null;
  view.learnDrawn = new Map();
  const section = element.querySelector("[data-learning]");
  section.hidden = !view.learning;
  if (!view.learning) return;
  Object.assign(epochSlider, {max: view.learning.epochs.length - 1, value: 0});
  setWords("learn-delta", view.learning.delta.toFixed(2));
  element.querySelector("[data-learn-cam]").hidden = !view.learning.cam;
  // A one-branch model's history has no erasing and no B: only its map (and its baseline's).
  for (const node of element.querySelectorAll("[data-learn-b], [data-learn-erasing]")) node.hidden = !view.learning.b;
  for (const id of LEARN_PANELS) Object.assign(learnCanvas(id), {width: payload.width, height: payload.height});
  drawEpoch(0);
}

// One epoch's pictures (each drawn once, then copied) and its words; the charts mark the epoch.
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
  drawCharts(index);
  element.dataset.epoch = String(learning.epochs[index]);
}

// ▶ Play: from epoch 0 to the last, once; any other move of the epoch (the slider, the lesson) stops it.
function stopPlaying() {
  clearInterval(view.playing);
  view.playing = null;
  playButton.textContent = "▶ Play";
}
playButton.addEventListener("click", () => {
  if (view.playing) return stopPlaying();
  if (!view.learning) return;
  let index = 0;
  drawEpoch(index);
  playButton.textContent = "❚❚ Pause";
  view.playing = setInterval(() => {
    index += 1;
    if (index >= view.learning.epochs.length) return stopPlaying();
    drawEpoch(index);
  }, PLAY_EPOCH_MS);
});

// The charts: each branch's training loss, and its accuracy, per epoch; the epoch shown is a blue
// vertical line. Every series has its own colour, dash and marker, so none hides another (the
// CAM baseline's lines nearly coincide with A's: drawn last, dotted, hollow triangles around A's
// dots) and the charts read without colour too.
const SERIES = [
  {branch: "A", label: "A", color: "#ea580c", dash: [], marker: "circle"},
  {branch: "B", label: "B (erased input)", color: "#7c3aed", dash: [8, 4], marker: "square"},
  {branch: "cam", label: "CAM baseline", color: "#374151", dash: [2, 3], marker: "triangle"},
];
const EPOCH_SHOWN = {label: "epoch shown", color: "#2563eb", dash: [], marker: null};  // a vertical line
const CHARTS = [
  {name: "loss", title: "Training loss", figure: {A: "loss_A", B: "loss_B", cam: "cam_loss_A"}},
  {name: "accuracy", title: "Training accuracy (%)", figure: {A: "top1_A", B: "top1_B", cam: "cam_top1_A"},
   top: 100},
];
const CHART_FONT_PX = 12;  // CSS pixels: legible on a phone (the canvas is drawn at its shown size)
const chartCanvas = (name) => element.querySelector(`canvas[data-chart="${name}"]`);

// Round tick values from 0 to at least `top`: 4 or 5 steps of 1, 2, 2.5 or 5 times a power of ten.
function ticksUpTo(top) {
  const rough = top / 4, power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (step / power === 2.5 ? 1 : 0));
  const count = Math.ceil(top / step - 1e-9);
  return Array.from({length: count + 1}, (_, i) => ({value: i * step, label: (i * step).toFixed(decimals)}));
}

function drawCharts(index) {
  view.charts = CHARTS.map((chart) => drawChart(chart, index)).filter(Boolean);
}

// One chart on its canvas, at the canvas's shown size times the screen's pixel ratio; what it
// drew (ticks, series and their styles) is returned for the browser tests.
function drawChart(chart, index) {
  const canvas = chartCanvas(chart.name), {epochs, figures} = view.learning;
  const width = canvas.clientWidth, height = canvas.clientHeight, ratio = window.devicePixelRatio || 1;
  if (!width || !height) return null;  // not shown: drawn when it is (see the ResizeObserver below)
  Object.assign(canvas, {width: Math.round(width * ratio), height: Math.round(height * ratio)});
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  context.font = `${CHART_FONT_PX}px sans-serif`;
  context.textBaseline = "middle";
  const series = SERIES.filter((s) => figures[chart.figure[s.branch]])
    .map((s) => ({...s, name: chart.figure[s.branch], values: figures[chart.figure[s.branch]]}));
  const known = series.flatMap((s) => s.values).filter((v) => v !== null);
  const yTicks = ticksUpTo(chart.top || Math.max(...known, 1e-6));
  // The title, then the legend (wrapping when narrow), then the plot with its axes' numbers.
  const legendY = drawLegend(context, chart.title, series, width);
  const left = 8 + Math.max(...yTicks.map((t) => context.measureText(t.label).width));
  const plot = {left, right: width - 12, top: legendY + 16, bottom: height - 34};
  const x = (i) => plot.left + (plot.right - plot.left) * i / Math.max(1, epochs.length - 1);
  const y = (v) => plot.bottom - (plot.bottom - plot.top) * v / yTicks[yTicks.length - 1].value;
  const xTicks = drawAxes(context, plot, yTicks, epochs, x, y);
  context.textAlign = "left";
  for (const s of series) {  // A, then B, then the CAM baseline on top
    const points = s.values.map((v, i) => v === null ? null : [x(i), y(v)]);
    line(context, s, points);
    points.forEach((point) => point && marker(context, s, ...point));
  }
  line(context, EPOCH_SHOWN, [[x(index), plot.top], [x(index), plot.bottom]]);
  return {name: chart.name, title: chart.title, fontPx: CHART_FONT_PX, cssWidth: width, pixelWidth: canvas.width,
          xTicks: xTicks.map((t) => t.label), yTicks: yTicks.map((t) => t.label),
          series: series.map(({name, label, color, dash, marker}) =>
            ({name, label, color, dash: dash.join(","), marker}))};
}

// A chart's title and its legend (every series, then the epoch shown), wrapping when narrow;
// returns the legend's last line's y.
function drawLegend(context, title, series, width) {
  context.fillStyle = "#111";
  context.font = `600 ${CHART_FONT_PX}px sans-serif`;
  context.fillText(title, 4, 10);
  context.font = `${CHART_FONT_PX}px sans-serif`;
  let legendX = 4, legendY = 28;
  for (const s of [...series, EPOCH_SHOWN]) {
    const size = 34 + context.measureText(s.label).width;
    if (legendX + size > width) [legendX, legendY] = [4, legendY + 18];
    if (s === EPOCH_SHOWN) line(context, s, [[legendX + 13, legendY - 7], [legendX + 13, legendY + 7]]);
    else line(context, s, [[legendX, legendY], [legendX + 26, legendY]]);
    marker(context, s, legendX + 13, legendY);
    context.fillStyle = "#111";
    context.fillText(s.label, legendX + 30, legendY);
    legendX += size + 12;
  }
  return legendY;
}

// The plot's grid lines and frame, the values' numbers (`yTicks`) and the epochs' (every one, or
// every second, fifth... where they would crowd: 28 px apart at least); returns the epochs labelled.
function drawAxes(context, {left, right, top, bottom}, yTicks, epochs, x, y) {
  context.strokeStyle = "#e5e7eb";
  context.lineWidth = 1;
  context.fillStyle = "#111";
  context.textAlign = "right";
  for (const tick of yTicks) {
    context.beginPath();
    context.moveTo(left, y(tick.value));
    context.lineTo(right, y(tick.value));
    context.stroke();
    context.fillText(tick.label, left - 4, y(tick.value));
  }
  const spacing = (right - left) / Math.max(1, epochs.length - 1), last = epochs.length - 1;
  const every = [1, 2, 5, 10, 20, 50, 100].find((n) => n * spacing >= 28) || epochs.length;
  const labelled = epochs.map((_, i) => i).filter((i) => i % every === 0);
  if ((last - labelled[labelled.length - 1]) * spacing >= 28) labelled.push(last);
  const xTicks = labelled.map((i) => ({index: i, label: String(epochs[i])}));
  context.textAlign = "center";
  for (const tick of xTicks) context.fillText(tick.label, x(tick.index), bottom + 10);
  context.fillText("epoch", (left + right) / 2, bottom + 26);
  context.strokeStyle = "#9ca3af";
  context.strokeRect(left, top, right - left, bottom - top);
  return xTicks;
}

// A series' line through its points (a null point breaks it), in its colour and dash.
function line(context, {color, dash}, points) {
  context.strokeStyle = color;
  context.lineWidth = 2;
  context.setLineDash(dash);
  context.beginPath();
  let drawing = false;
  for (const point of points) {
    if (point && drawing) context.lineTo(...point); else if (point) context.moveTo(...point);
    drawing = Boolean(point);
  }
  context.stroke();
  context.setLineDash([]);
}

// A series' marker at (x, y): a filled dot, a filled square, or a hollow triangle (larger, so a
// dot under it still shows).
function marker(context, {color, marker: shape}, x, y) {
  if (!shape) return;
  context.fillStyle = color;
  context.strokeStyle = color;
  context.lineWidth = 1.5;
  context.beginPath();
  if (shape === "circle") context.arc(x, y, 3.5, 0, 2 * Math.PI);
  if (shape === "square") context.rect(x - 3.5, y - 3.5, 7, 7);
  if (shape === "triangle") [[x, y - 7], [x + 6.5, y + 4.5], [x - 6.5, y + 4.5]].forEach(([px, py], i) =>
    i ? context.lineTo(px, py) : context.moveTo(px, py));
  context.closePath();
  if (shape === "triangle") context.stroke(); else context.fill();
}

// Drawn again at its new size when the page's width changes (a phone turned, a window resized).
const chartsResized = new ResizeObserver(() => view.learning && drawCharts(Number(epochSlider.value)));
for (const chart of CHARTS) chartsResized.observe(chartCanvas(chart.name));

epochSlider.addEventListener("input", () => {
  stopPlaying();
  drawEpoch(Number(epochSlider.value));
});
