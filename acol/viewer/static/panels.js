// How the four panels are drawn: a per-cell map resized to the picture and coloured, blended over
// the photo; the erased cells washed out; the boxes, a cell's outline, a note in place of a panel,
// the colour key. Each is drawn as acol/viewer/drawing.py draws it in Python, from arrays the
// payload brings computed (no map, mask or box is computed here).
// Runs in viewer.js's scope (element, view, bytes).

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
