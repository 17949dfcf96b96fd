// The lesson: seven short steps on the first example, one view and a sentence or two at a time,
// with Next / Back (or the arrow keys), its progress shown, and Close (or Escape) at any step.
// It asks before it tells: the student guesses where B will look before B's map is shown. It
// uses only the payload the page opened with (every number in it computed in Python): no request.
// Runs in viewer.js's scope (element, view, load, redraw, canvas, cellAt, drawEpoch).

const lesson = {step: 0, guess: null, shownBefore: null, steps: []};
const card = element.querySelector("[data-lesson]");
const lessonButton = () => document.getElementById("lesson-button");
const firstPayload = props.value && props.value.states ? props.value : null;
const percent = (p) => `${Math.round(100 * p)}%`;
const figureOf = (id) => canvas(id).closest("figure");
const cellsAway = ([r1, c1], [r2, c2]) => Math.max(Math.abs(r1 - r2), Math.abs(c1 - c2));

// Where a cell lies in the picture, in words ("the top left", "the centre").
function whereIs([row, col]) {
  const [rows, cols] = view.payload.grid;
  const vertical = ["top", "middle", "bottom"][Math.min(2, Math.floor(3 * row / rows))];
  const horizontal = ["left", "centre", "right"][Math.min(2, Math.floor(3 * col / cols))];
  const words = vertical === "middle" ? (horizontal === "centre" ? "centre" : horizontal)
    : horizontal === "centre" ? vertical : `${vertical} ${horizontal}`;
  return `the ${words} (row ${row}, column ${col})`;
}

// Text from the payload, never markup.
const esc = (text) => String(text).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);

// The state the page shows at the model's own δ: what B sees in the lesson.
function lessonState() {
  const payload = view.payload, step = payload.steps[payload.deltas.indexOf(payload.model_delta)];
  return payload.states[step.state];
}

function setDelta(delta) {  // through Gradio's own slider, so the page's δ and the drawing agree
  const range = document.querySelector("#erase-threshold input[type=range]");
  if (!range) return;
  range.value = delta;
  range.dispatchEvent(new Event("input", {bubbles: true}));
}

lesson.steps = [
  {focus: () => [document.getElementById("image-column"), figureOf("branch-a")], text: (p) =>
    `This picture is labelled <b>${esc(p.true_class || "(no label)")}</b>. Branch A, a classifier ending in one ` +
    `map per class, says <b>${esc(p.class_name)}</b> (${percent(p.probability)}). Its map for that class (lit up ` +
    `in yellow) is where A found its evidence: it peaks at ${whereIs(p.a_peak)}.`},
  {focus: () => [figureOf("erased"), document.getElementById("erase-threshold")],
   enter: (p) => setDelta(p.model_delta), text: (p) => {
     const cells = bytes(lessonState().mask).reduce((sum, v) => sum + (v > 0), 0);
     return `ACoL now <b>erases</b> the feature cells where A's map is at least δ = ${p.model_delta.toFixed(2)}: ` +
       `${cells} of ${p.grid[0] * p.grid[1]} cells, washed out here. They are set to zero before branch B sees ` +
       `them, so B cannot use what A used.`;
   }},
  {focus: () => [figureOf("erased"), figureOf("branch-b")], hide: ["branch-b", "fused"], guess: true, text: (p) =>
    `<b>Where will B look now?</b> B must still name ${esc(p.class_name)}, without the erased cells. ` +
    `Click the cell (on either picture) where you think B's map will be brightest.` +
    (lesson.guess ? "" : " <i>(Next shows B's answer.)</i>")},
  {focus: () => [figureOf("branch-b")], mark: () => lessonState().b_peak, text: (p) => {
    const peak = lessonState().b_peak, away = lesson.guess && cellsAway(lesson.guess, peak);
    const verdict = lesson.guess === null ? "You did not guess: that is fine."
      : away === 0 ? "Your guess was <b>right on it</b>."
      : away <= 2 ? `Your guess was <b>${away} cell${away > 1 ? "s" : ""} away</b>: close.`
      : `Your guess was <b>${away} cells away</b>.`;
    return `${verdict} B's map peaks at ${whereIs(peak)} (outlined in amber; yours in white), ` +
      `${cellsAway(peak, p.a_peak)} cells from A's peak: ` +
      `with A's evidence gone, B learned to find <b>other</b> evidence of the same class.`;
  }},
  {focus: () => [figureOf("fused")], text: (p) => {
    const state = lessonState(), box = p.box_thresholds.indexOf(p.view.box_threshold);
    const iou = state.ious ? state.ious[box] : null;
    const match = iou === null ? "" : iou >= 0.5 ? " That counts as found (IoU at least 0.5)."
      : " Under 0.5, that does not count as found.";
    return `The <b>fused map</b> keeps the brighter of A's and B's maps at every cell, so it covers what either ` +
      `found. Its box (cyan) is cut where it is above ${p.view.box_threshold.toFixed(2)}` +
      (iou === null ? "." : `; against the true box (green) its IoU is <b>${iou.toFixed(2)}</b>.${match}`);
  }},
  {focus: () => [element.querySelector("[data-learning]")], epoch: () => 0, text: () =>
    `<b>How it learned.</b> Before training (epoch 0) the heads are random: ${said(0)}. ` +
    `Their maps say nothing yet; B's peak lies ${apart(0)} from A's.`},
  {focus: () => [element.querySelector("[data-learning]")], epoch: () => middleEpoch(), text: () =>
    `Half-way (after epoch ${view.learning.epochs[middleEpoch()]}): ${said(middleEpoch())}. B's peak now lies ` +
    `${apart(middleEpoch())} from A's. Drag the Epoch slider to watch the maps move.`},
  {focus: () => [element.querySelector("[data-learning]")], epoch: () => view.learning.epochs.length - 1, text: () => {
    const last = view.learning.epochs.length - 1, learning = view.learning;
    const cam = learning.cam ? ` The CAM baseline, trained the same way with nothing erased, peaks ` +
      `${cellsAway(learning.cam_peak[last], learning.a_peak[last])} cells from A's peak and ` +
      `${cellsAway(learning.cam_peak[last], learning.b_peak[last])} from B's.` : "";
    return `At the end: ${said(last)}, and B's peak lies ${apart(last)} from A's.${cam} ` +
      "Close the lesson to explore: drag δ, click cells, try your own photo.";
  }},
];

// What the branches said after an epoch (the words after "after epoch N: "), and how far apart
// their peaks were then.
const said = (index) => esc(view.learning.words[index].split(": ").slice(1).join(": "));
const apart = (index) => {
  const away = cellsAway(view.learning.a_peak[index], view.learning.b_peak[index]);
  return `${away} cell${away === 1 ? "" : "s"}`;
};
const middleEpoch = () => Math.floor((view.learning.epochs.length - 1) / 2);

// The steps that apply: the learning steps only for a model with a history.
const activeSteps = () => lesson.steps.filter((step) => !step.epoch || view.learning);

function showStep(index) {
  const steps = activeSteps();
  lesson.step = Math.max(0, Math.min(steps.length - 1, index));
  const step = steps[lesson.step];
  document.querySelectorAll(".lesson-focus").forEach((node) => node.classList.remove("lesson-focus"));
  for (const id of ["branch-b", "fused"]) figureOf(id).classList.toggle("lesson-hidden", (step.hide || []).includes(id));
  if (step.enter) step.enter(view.payload);
  view.mark = step.mark ? {cell: step.mark(), panels: ["branch-b", "fused"], color: "#f59e0b"} : null;
  redraw();
  if (step.epoch) drawEpoch(step.epoch());
  const focus = step.focus().filter(Boolean);
  focus.forEach((node) => node.classList.add("lesson-focus"));
  // At the top of the window: the card takes the bottom of it.
  if (focus[0]) focus[0].scrollIntoView({block: "start", behavior: "instant"});
  card.querySelector("[data-lesson-text]").innerHTML = step.text(view.payload);
  card.querySelector("[data-lesson-progress]").textContent = `Lesson: step ${lesson.step + 1} of ${steps.length}`;
  card.querySelector("[data-lesson-back]").disabled = lesson.step === 0;
  card.querySelector("[data-lesson-next]").textContent = lesson.step === steps.length - 1 ? "Finish" : "Next →";
  element.dataset.lessonStep = String(lesson.step + 1);
}

async function startLesson() {
  if (!firstPayload || !firstPayload.acol) return;
  localStorage.setItem("acol-lesson-seen", "1");
  document.getElementById("lesson-invite")?.setAttribute("hidden", "");
  lesson.shownBefore = view.payload !== firstPayload ? view.payload : null;  // the page's picture, kept
  if (lesson.shownBefore) await load(firstPayload);
  Object.assign(lesson, {guess: null});
  view.lesson = true;
  card.hidden = false;
  showStep(0);
  card.querySelector("[data-lesson-next]").focus();
}

async function closeLesson() {
  if (!view.lesson) return;
  view.lesson = false;
  card.hidden = true;
  document.querySelectorAll(".lesson-focus").forEach((node) => node.classList.remove("lesson-focus"));
  for (const id of ["branch-b", "fused"]) figureOf(id).classList.remove("lesson-hidden");
  delete element.dataset.lessonStep;
  view.mark = null;
  redraw();
  if (lesson.shownBefore) await load(lesson.shownBefore);  // back to the student's own picture
  lessonButton()?.focus();
}

function next() {
  if (lesson.step === activeSteps().length - 1) closeLesson(); else showStep(lesson.step + 1);
}

// The guess: a click on the erased or B's panel while the guessing step shows (never a request).
for (const id of ["erased", "branch-b"]) {
  canvas(id).addEventListener("click", (event) => {
    if (!view.lesson || !activeSteps()[lesson.step].guess) return;
    lesson.guess = cellAt(event);
    view.hover = lesson.guess;
    redraw();
    next();
  });
}
card.querySelector("[data-lesson-next]").addEventListener("click", next);
card.querySelector("[data-lesson-back]").addEventListener("click", () => showStep(lesson.step - 1));
card.querySelector("[data-lesson-close]").addEventListener("click", closeLesson);
document.addEventListener("keydown", (event) => {
  if (!view.lesson) return;
  if (event.key === "Escape") closeLesson();
  else if (event.key === "ArrowRight") next();
  else if (event.key === "ArrowLeft") showStep(lesson.step - 1);
});
// The Lesson button sits at the top of the page (app.py); a first visit is invited, never sent.
(function wireLessonButton(tries) {
  const button = lessonButton();
  if (!button) return tries > 0 && setTimeout(() => wireLessonButton(tries - 1), 200);
  button.addEventListener("click", startLesson);
  document.querySelector("[data-invite-start]")?.addEventListener("click", startLesson);
  document.querySelector("[data-invite-dismiss]")?.addEventListener("click", () => {
    localStorage.setItem("acol-lesson-seen", "1");
    document.getElementById("lesson-invite").hidden = true;
  });
  if (!localStorage.getItem("acol-lesson-seen") && firstPayload) document.getElementById("lesson-invite").hidden = false;
})(25);

watch("value", () => load(props.value));
element.acolView = view;  // for the browser tests: what is drawn, and when it was painted
load(props.value);
