// The lesson: short steps on the picture the page shows (an example of any model, or an upload),
// one view and a sentence or two at a time, with Next / Back (or the arrow keys), its progress
// shown, and Close (or Escape) at any step. It asks before it tells: until the student has
// guessed where B will look, no view on the page shows B (its panels, the fused map, "How it
// learned"'s B and CAM maps, B's verdict, the hover values, the story's words). Its words come
// from that picture's payload: every number, and whether ACoL's story holds on it (`story`,
// acol/evaluation/story.py), computed in Python, so where the story fails the lesson says so. No request.
// Runs in viewer.js's scope (element, view, redraw, canvas, cellAt, nearest, bytes, storyInBold,
// learnCanvas, drawEpoch, stopPlaying).

const lesson = {step: 0, guess: null, steps: []};
const card = element.querySelector("[data-lesson]");
const lessonButton = () => document.getElementById("lesson-button");
const percent = (p) => `${Math.round(100 * p)}%`;
const figureOf = (id) => canvas(id).closest("figure");
const cellsAway = ([r1, c1], [r2, c2]) => Math.max(Math.abs(r1 - r2), Math.abs(c1 - c2));
const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;
const learningSection = () => element.querySelector("[data-learning]");
// Every view that shows what B found: hidden until the student has guessed.
const viewsOfB = () => [figureOf("branch-b"), figureOf("fused"), learnCanvas("b").closest("figure"),
                        learnCanvas("cam").closest("figure"),
                        ...[...deltaSection.querySelectorAll('canvas[data-delta="b"], canvas[data-delta="fused"]')]
                          .map((node) => node.closest("figure"))];
const GUESS_COLOR = "white", PEAK_COLOR = "#f59e0b";  // the guess inside B's peak: both show on one cell

// Where a cell lies in the picture, in words ("the top left", "the centre").
function whereIs([row, col]) {
  const [rows, cols] = view.payload.grid;
  const vertical = ["top", "middle", "bottom"][Math.min(2, Math.floor(3 * row / rows))];
  const horizontal = ["left", "centre", "right"][Math.min(2, Math.floor(3 * col / cols))];
  const words = vertical === "middle" ? (horizontal === "centre" ? "centre" : horizontal)
    : horizontal === "centre" ? vertical : `${vertical} ${horizontal}`;
  return `the ${words} (row ${row}, column ${col})`;
}

// Text from the payload, never markup; Python's **bold** becomes bold.
const esc = (text) => String(text).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);
const markdown = (text) => esc(text).replace(/\*\*(.+?)\*\*/g, "<b>$1</b>");

// Whether the story holds here, in Python's words, its verdict in bold.
const storyWords = (story) => markdown(storyInBold(story.words));

// The state the page shows at the model's own δ: what B saw, as the story was checked.
function lessonState() {
  const payload = view.payload, step = payload.steps[nearest(payload.deltas, payload.model_delta)];
  return payload.states[step.state];
}

// A slider moved through Gradio's own, so the page's value and the drawing agree ("erase-threshold"
// or "box-threshold").
function setSlider(id, value) {
  const range = document.querySelector(`#${id} input[type=range]`);
  if (!range) return;
  range.value = value;
  range.dispatchEvent(new Event("input", {bubbles: true}));
}

// The student's guess, outlined on the given panels (none before a click).
const guessMark = (panels) => lesson.guess ? [{cell: lesson.guess, panels, color: GUESS_COLOR, inset: 6}] : [];

// The fused map's box against the true box, at the box threshold the story was checked at (the
// steps that say it put the page's slider there).
function boxWords(p) {
  const state = lessonState(), iou = state.ious ? state.ious[p.box_thresholds.indexOf(p.view.box_threshold)] : null;
  const match = iou === null ? "" : iou >= 0.5 ? " That counts as found (IoU at least 0.5)."
    : " Under 0.5, that does not count as found.";
  return `Its box (cyan) is cut where it is above ${p.view.box_threshold.toFixed(2)}` +
    (iou === null ? " (this picture has no true box to compare it with)." :
      `; against the true box (green) its IoU is <b>${iou.toFixed(2)}</b>.${match}`);
}

// Each step: `when` it applies (every step without one), what it points at (`focus`), whether
// it keeps B hidden (`hidesB`), the cells it outlines (`marks`), the epoch it shows, and its words.
const isAcol = (p) => p.acol;
const hasLearning = (p) => p.acol && view.learning && view.learning.b;
lesson.steps = [
  {focus: () => [document.getElementById("image-column"), figureOf("branch-a")], hidesB: true, text: (p) =>
    (p.true_class ? `This picture is labelled <b>${esc(p.true_class)}</b>.`
      : "This picture has no label: nobody told the model what it shows.") +
    ` ${p.acol ? "Branch A" : "The model"}, a classifier ending in one map per class, says ` +
    `<b>${esc(p.class_name)}</b> (${percent(p.probability)}). Its map for that class (lit up in yellow) is where ` +
    `it found its evidence: it peaks at ${whereIs(p.a_peak)}.` + (p.note ? ` <i>${markdown(p.note)}</i>` : "")},
  {when: isAcol, focus: () => [figureOf("erased"), document.getElementById("erase-threshold")], hidesB: true,
   enter: (p) => setSlider("erase-threshold", p.model_delta), text: (p) => {
     const cells = bytes(lessonState().mask).reduce((sum, v) => sum + (v > 0), 0);
     return `ACoL now <b>erases</b> the feature cells where A's map is at least δ = ${p.model_delta.toFixed(2)}: ` +
       `${cells} of ${p.grid[0] * p.grid[1]} cells, washed out here. They are set to zero before branch B sees ` +
       `them, so B cannot use what A used.`;
   }},
  {when: isAcol, focus: () => [figureOf("erased"), figureOf("branch-b")], hidesB: true, guess: true,
   marks: () => guessMark(["branch-a", "erased"]), text: (p) =>
    `<b>Where will B look now?</b> B must still name ${esc(p.class_name)}, without the erased cells. ` +
    (lesson.guess
      ? `Your guess: ${whereIs(lesson.guess)}, outlined in white. Click another cell to change it, or ` +
        "<b>Next</b> to see B's answer."
      : "Click the cell (on A's map or the erased features) where you think B's map will be brightest; " +
        "<b>Next</b> then shows B's answer.")},
  {when: isAcol, focus: () => [figureOf("branch-b")],
   marks: () => [{cell: lessonState().b_peak, panels: ["erased", "branch-b", "fused"], color: PEAK_COLOR, inset: 2},
                 ...guessMark(["erased", "branch-b", "fused"])], text: (p) => {
    const story = p.story, peak = lessonState().b_peak, away = lesson.guess && cellsAway(lesson.guess, peak);
    const verdict = lesson.guess === null ? "You did not guess: that is fine."
      : away === 0 ? "Your guess was <b>right on it</b>."
      : away <= 2 ? `Your guess was <b>${plural(away, "cell")} away</b>: close.`
      : `Your guess was <b>${away} cells away</b>.`;
    const said = story.b_class ? ` Shown only the kept cells, B says <b>${esc(story.b_class)}</b>.` : "";
    return `${verdict} B's map peaks at ${whereIs(peak)}, outlined in amber` +
      `${lesson.guess ? " (your guess in white)" : ""}: ` +
      `${plural(cellsAway(peak, p.a_peak), "cell")} from A's peak.${said} ` +
      (story.holds ? "With A's evidence gone, B found <b>other</b> evidence of the same class."
        : storyWords(story));
  }},
  {when: isAcol, focus: () => [figureOf("fused")], enter: (p) => setSlider("box-threshold", p.view.box_threshold),
   text: (p) =>
    "The <b>fused map</b> keeps the brighter of A's and B's maps at every cell, so it covers what either " +
    `found. ${boxWords(p)}` + (p.story.holds ? ` ${storyWords(p.story)}` : "")},
  {when: (p) => !p.acol, focus: () => [figureOf("erased"), figureOf("fused")],
   enter: (p) => setSlider("box-threshold", p.view.box_threshold), text: (p) =>
    `${esc(p.story.words)} Its map is the whole explanation. ${boxWords(p)} ` +
    "<b>Pick an ACoL model</b> (the Model menu) to see the rest: what a second branch finds once A's evidence " +
    "is erased."},
  {when: hasLearning, focus: learningSection, epoch: () => 0, text: () =>
    `<b>How it learned.</b> Before training (epoch 0) the heads are random: ${said(0)}. ` +
    `Their maps say nothing yet; B's peak lies ${apart(0)} from A's.`},
  {when: hasLearning, focus: learningSection, epoch: () => middleEpoch(), text: () =>
    `Half-way (after epoch ${view.learning.epochs[middleEpoch()]}): ${said(middleEpoch())}. B's peak now lies ` +
    `${apart(middleEpoch())} from A's. Drag the Epoch slider (or ▶ Play) to watch the maps move.`},
  {when: hasLearning, focus: learningSection, epoch: () => view.learning.epochs.length - 1, text: () => {
    const last = view.learning.epochs.length - 1, learning = view.learning;
    const cam = learning.cam ? ` The CAM baseline, trained the same way with nothing erased, peaks ` +
      `${plural(cellsAway(learning.cam_peak[last], learning.a_peak[last]), "cell")} from A's peak and ` +
      `${cellsAway(learning.cam_peak[last], learning.b_peak[last])} from B's.` : "";
    return `At the end: ${said(last)}, and B's peak lies ${apart(last)} from A's.${cam}`;
  }},
];

// The last step's parting words: what to do next, and, where the story failed here, that other
// pictures may tell it.
const ending = (p) => " Close the lesson to explore: drag δ, click cells, try another example or your own photo." +
  (p.story.holds === false ? " (On this picture ACoL's story does not hold: see whether it does on another.)" : "");

// What the branches said after an epoch (the words after "after epoch N: "), and how far apart
// their peaks were then.
const said = (index) => esc(view.learning.words[index].split(": ").slice(1).join(": "));
const apart = (index) => plural(cellsAway(view.learning.a_peak[index], view.learning.b_peak[index]), "cell");
const middleEpoch = () => Math.floor((view.learning.epochs.length - 1) / 2);

// The steps that apply to the picture shown: ACoL's for an ACoL model (the learning ones when it
// has a history), A's map and "one branch, no B" for a CAM model.
const activeSteps = () => lesson.steps.filter((step) => !step.when || step.when(view.payload));

// Everything a step shows that a guess can change: B hidden or not, the cells outlined, the words.
function paintStep() {
  const steps = activeSteps(), step = steps[lesson.step], p = view.payload;
  hideB(Boolean(step.hidesB && p.acol));
  view.marks = step.marks ? step.marks() : [];
  redraw();
  const last = lesson.step === steps.length - 1;
  card.querySelector("[data-lesson-text]").innerHTML = step.text(p) + (last ? ending(p) : "");
  card.querySelector("[data-lesson-progress]").textContent = `Lesson: step ${lesson.step + 1} of ${steps.length}`;
  card.querySelector("[data-lesson-back]").disabled = lesson.step === 0;
  card.querySelector("[data-lesson-next]").textContent = last ? "Finish" : "Next →";
  element.dataset.lessonStep = String(lesson.step + 1);
}

function showStep(index) {
  const steps = activeSteps();
  lesson.step = Math.max(0, Math.min(steps.length - 1, index));
  const step = steps[lesson.step];
  document.querySelectorAll(".lesson-focus").forEach((node) => node.classList.remove("lesson-focus"));
  if (step.enter) step.enter(view.payload);
  if (step.epoch) {
    stopPlaying();
    drawEpoch(step.epoch());
  }
  paintStep();
  const focus = [step.focus()].flat().filter(Boolean);
  focus.forEach((node) => node.classList.add("lesson-focus"));
  // At the top of the window: the card takes the bottom of it.
  if (focus[0]) focus[0].scrollIntoView({block: "start", behavior: "instant"});
}

// B's views hidden (striped, "hidden until you guess") or shown again, with the tabs' pictures
// drawn by the server (page.css) and "How it learned"'s words, which say what B said.
function hideB(hidden) {
  view.hidingB = hidden;
  for (const figure of viewsOfB()) figure.classList.toggle("lesson-hidden", hidden);
  for (const words of element.querySelectorAll('[data-text="epoch-words"], [data-text$="-words"]')) {
    words.style.visibility = hidden ? "hidden" : "";  // what B said, in words: the epoch's, each trained δ's
  }
  document.body.classList.toggle("lesson-hiding-b", hidden);
  redraw();
}

function startLesson() {
  if (!view.payload) return;  // no picture (a message instead): nothing to walk through
  localStorage.setItem("acol-lesson-seen", "1");
  document.getElementById("lesson-invite")?.setAttribute("hidden", "");
  lesson.guess = null;
  view.lesson = true;
  card.hidden = false;
  showStep(0);
  card.querySelector("[data-lesson-next]").focus();
}

function closeLesson() {
  if (!view.lesson) return;
  view.lesson = false;
  card.hidden = true;
  document.querySelectorAll(".lesson-focus").forEach((node) => node.classList.remove("lesson-focus"));
  hideB(false);
  delete element.dataset.lessonStep;
  view.marks = [];
  redraw();
  lessonButton()?.focus();
}

// A new picture while the lesson is open (an example clicked, a class or model chosen): the
// lesson starts again, on it; no picture: it closes.
function lessonOnNewPicture() {
  if (!view.lesson) return;
  if (!view.payload) return closeLesson();
  lesson.guess = null;
  showStep(0);
}

function next() {
  if (lesson.step === activeSteps().length - 1) closeLesson(); else showStep(lesson.step + 1);
}

// The guess: a click on A's map or the erased features while the guessing step shows marks the
// cell (the student may change it); the answer waits for Next. Never a request.
for (const id of ["branch-a", "erased"]) {
  canvas(id).addEventListener("click", (event) => {
    if (!view.lesson || !activeSteps()[lesson.step].guess) return;
    lesson.guess = cellAt(event) || lesson.guess;
    paintStep();
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
  const opensOnAPicture = Boolean(payloadOf(props.value)?.states);
  if (!localStorage.getItem("acol-lesson-seen") && opensOnAPicture) document.getElementById("lesson-invite").hidden = false;
})(25);

// The server sends the payload as JSON text (acol.viewer.gradio_adapters.payload_text).
function payloadOf(value) {
  return typeof value === "string" ? (value ? JSON.parse(value) : null) : value;
}
watch("value", () => load(payloadOf(props.value)));
element.acolView = view;  // for the browser tests: what is drawn, and when it was painted
element.acolShow = load;  // and to draw a payload a test made (a story that does not hold, say)
load(payloadOf(props.value));
