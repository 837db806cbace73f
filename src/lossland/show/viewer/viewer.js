/*
 * lossland viewer.js: the interactive page written by `lossland view`.
 *
 * Reads the surface from the page's JSON block, draws a 3-D surface (contours projected on the
 * floor) and a top-down contour with plotly.js (the minima and saddles of the surface's topology
 * marked on it), and redraws the optimizer path from optimizers.js whenever a control moves.
 * State is exposed as window.losslandViewer for tests.
 */
(function () {
  "use strict";

  const COOLWARM = [
    [0.0, "rgb(59,76,192)"],
    [0.1, "rgb(89,119,227)"],
    [0.2, "rgb(123,159,249)"],
    [0.3, "rgb(158,190,255)"],
    [0.4, "rgb(192,212,245)"],
    [0.5, "rgb(221,220,220)"],
    [0.6, "rgb(242,203,183)"],
    [0.7, "rgb(247,172,142)"],
    [0.8, "rgb(238,132,104)"],
    [0.9, "rgb(214,82,68)"],
    [1.0, "rgb(180,4,38)"],
  ];
  const PATH_COLOR = "#111111";
  const STATIC_COLORS = ["#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  const FLAGS = ["amsgrad", "centered", "decoupled_weight_decay"];

  const O = window.LosslandOptimizers;
  const data = JSON.parse(document.getElementById("lossland-data").textContent);
  const grid = data.grid;
  const el = (id) => document.getElementById(id);

  const view = {
    data,
    state: null,
    path: null,
    ready: false,
    updates: 0,
    recompute: null,
  };
  window.losslandViewer = view;

  // --- numbers -----------------------------------------------------------------------------

  function fmt(v, digits) {
    if (v === null || v === undefined || !Number.isFinite(v)) return "n/a";
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(Math.max(digits - 1, 1));
    return Number(v.toPrecision(digits)).toString();
  }

  function fieldText(v, spec) {
    const digits = Number((/\.(\d+)/.exec(spec) || [0, 4])[1]);
    if (spec.endsWith("f") && Number.isFinite(v)) return v.toFixed(digits);
    return fmt(v, Math.max(digits, 1));
  }

  const interpolants = new Map();
  function interpolant(interpolation, log) {
    const key = interpolation + "|" + log;
    if (!interpolants.has(key)) {
      interpolants.set(key, O.makeInterpolant(grid, { interpolation, log }));
    }
    return interpolants.get(key);
  }

  // The surface values as drawn: ln(loss) with the log scale, holes as null.
  function shown(log) {
    return grid.z.map((row) =>
      row.map((v) => (v === null ? null : log ? Math.log(v) : v)),
    );
  }

  function range(rows) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const row of rows) {
      for (const v of row) {
        if (v !== null && Number.isFinite(v)) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
    }
    if (!Number.isFinite(lo)) return [0, 1];
    if (hi === lo) return [lo - 0.5, hi + 0.5];
    return [lo, hi];
  }

  // Why a point has no finite loss ("not evaluated", "evaluated, loss NaN") or what an
  // infinite one is drawn as, keyed "row,column".
  function pointNotes() {
    return new Map((data.notes || []).map(([i, j, text]) => [i + "," + j, text]));
  }
  let notes = pointNotes();

  function hoverTexts() {
    return grid.z.map((row, i) =>
      row.map((v, j) => {
        let text = notes.get(i + "," + j) || "loss " + fmt(v, 6);
        if (data.acc && data.acc[i][j] !== null) text += "<br>accuracy " + fmt(data.acc[i][j], 4) + " %";
        for (const f of data.fields || []) {
          // The other shown rows of FIELDS, each with its Python format spec (".6g", ".2f").
          const z = f.z[i][j];
          if (z !== null) text += "<br>" + f.label + " " + fieldText(z, f.fmt) + f.unit;
        }
        return text;
      }),
    );
  }
  let hoverText = hoverTexts();

  // Several direction seeds: the page holds every seed's grid and shows one at a time.
  function showSeed(k) {
    const s = data.seeds[k];
    grid.z = s.z;
    data.acc = s.acc;
    data.fields = s.fields;
    data.notes = s.notes;
    notes = pointNotes();
    data.critical = k === 0 ? data.critical_first : null; // the markers are the first seed's
    interpolants.clear();
    hoverText = hoverTexts();
  }

  // A recording: every recorded step's slice; the slider shows one step at a time, with the
  // run so far projected onto that step's plane (the current weights at its origin).
  function showStep(k) {
    const s = data.steps[k];
    data.step_index = k;
    grid.z = s.z;
    data.acc = s.acc;
    data.notes = s.notes;
    notes = pointNotes();
    data.critical = k === data.steps.length - 1 ? data.critical_last : null; // the last step's
    data.trajectories = s.path.length ? [{ name: "run so far", points: s.path }] : [];
    interpolants.clear();
    hoverText = hoverTexts();
    el("step-value").textContent = s.step + (s.lambda_max === null ? "" : ", λmax " + fmt(s.lambda_max, 4));
  }

  // --- state -------------------------------------------------------------------------------

  function defaultStart() {
    // A start away from the minimum, on an evaluated part of the surface.
    const f = interpolant("cubic", false);
    const [x0, x1, y0, y1] = f.bounds;
    const fractions = [
      [0.8, 0.75],
      [0.2, 0.25],
      [0.8, 0.25],
      [0.2, 0.75],
      [0.5, 0.85],
      [0.5, 0.5],
    ];
    for (const [fx, fy] of fractions) {
      const x = x0 + fx * (x1 - x0);
      const y = y0 + fy * (y1 - y0);
      if (Number.isFinite(f.value(x, y))) return [x, y];
    }
    for (let i = 0; i < grid.y.length; i++) {
      for (let j = 0; j < grid.x.length; j++) {
        if (Number.isFinite(f.value(grid.x[j], grid.y[i]))) return [grid.x[j], grid.y[i]];
      }
    }
    return [x0, y0];
  }

  const d = data.defaults;
  const hyper = {};
  for (const name of O.OPTIMIZERS) hyper[name] = Object.assign({}, data.optimizers[name]);
  const state = {
    optimizer: d.optimizer,
    lr: d.lr,
    steps: d.steps,
    start: d.start || defaultStart(),
    log: Boolean(d.log) && data.log_allowed,
    interpolation: d.interpolation,
    azimuth: 225,
    elevation: 40,
    hyper,
  };
  view.state = state;

  // --- controls ----------------------------------------------------------------------------

  function setOutput(id, text) {
    el(id + "-value").textContent = text;
  }

  function initControls() {
    const select = el("optimizer");
    for (const name of O.OPTIMIZERS) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      select.appendChild(option);
    }
    select.value = state.optimizer;
    el("lr").value = String(Math.log10(state.lr));
    el("steps").value = String(state.steps);
    const [x0, x1, y0, y1] = [grid.x[0], grid.x[grid.x.length - 1], grid.y[0], grid.y[grid.y.length - 1]];
    for (const [id, lo, hi, v] of [
      ["start-x", x0, x1, state.start[0]],
      ["start-y", y0, y1, state.start[1]],
    ]) {
      const input = el(id);
      input.min = String(lo);
      input.max = String(hi);
      input.step = "any";
      input.value = String(v);
    }
    el("interpolation").value = state.interpolation;
    el("camera-azimuth").value = String(state.azimuth);
    el("camera-elevation").value = String(state.elevation);
    const log = el("log");
    log.checked = state.log;
    if (!data.log_allowed) {
      log.disabled = true;
      log.parentElement.title = data.log_reason;
    }
    renderHyper();
    showValues();
    if (data.seeds) {
      const seeds = el("seed");
      data.critical_first = data.critical;
      data.seeds.forEach((s, k) => {
        const option = document.createElement("option");
        option.value = String(k);
        option.textContent = "seed " + s.seed;
        if (!s.drawable) {
          // Nothing finite to draw (every loss NaN, say): listed, not selectable.
          option.textContent += " (no finite loss)";
          option.disabled = true;
        }
        seeds.appendChild(option);
      });
      seeds.parentElement.hidden = false;
      seeds.addEventListener("change", () => {
        showSeed(Number(seeds.value));
        drawAll();
      });
    }

    if (data.steps) {
      const slider = el("step");
      data.critical_last = data.critical;
      slider.min = "0";
      slider.max = String(data.steps.length - 1);
      slider.step = "1";
      slider.value = String(data.step_index);
      showStep(data.step_index);
      slider.parentElement.hidden = false;
      slider.addEventListener("input", () => {
        showStep(Number(slider.value));
        drawAll();
      });
    }

    el("optimizer").addEventListener("change", () => {
      state.optimizer = select.value;
      renderHyper();
      updatePath();
    });
    el("lr").addEventListener("input", (e) => {
      state.lr = 10 ** Number(e.target.value);
      updatePath();
    });
    el("steps").addEventListener("input", (e) => {
      state.steps = Number(e.target.value);
      updatePath();
    });
    el("start-x").addEventListener("input", (e) => {
      state.start = [Number(e.target.value), state.start[1]];
      updatePath();
    });
    el("start-y").addEventListener("input", (e) => {
      state.start = [state.start[0], Number(e.target.value)];
      updatePath();
    });
    el("interpolation").addEventListener("change", (e) => {
      state.interpolation = e.target.value;
      updatePath();
    });
    el("log").addEventListener("change", (e) => {
      state.log = e.target.checked;
      drawAll().catch(fail);
    });
    for (const id of ["camera-azimuth", "camera-elevation"]) {
      el(id).addEventListener("input", () => {
        state.azimuth = Number(el("camera-azimuth").value);
        state.elevation = Number(el("camera-elevation").value);
        showValues();
        Plotly.relayout("surface3d", { "scene.camera.eye": cameraEye() }).catch(fail);
      });
    }
  }

  function renderHyper() {
    const box = el("hyper");
    box.replaceChildren();
    const title = document.createElement("span");
    title.textContent = state.optimizer + " hyper-parameters:";
    box.appendChild(title);
    const values = state.hyper[state.optimizer];
    for (const name of Object.keys(values)) {
      const item = document.createElement("label");
      item.className = "hyper-item";
      const input = document.createElement("input");
      input.id = "hyper-" + name;
      if (FLAGS.includes(name)) {
        input.type = "checkbox";
        input.checked = Boolean(values[name]);
        input.addEventListener("change", () => {
          values[name] = input.checked ? 1 : 0;
          updatePath();
        });
        item.append(input, name);
      } else {
        input.type = "number";
        input.step = "any";
        input.min = "0";
        input.value = String(values[name]);
        input.addEventListener("input", () => {
          const v = Number(input.value);
          const ok = input.value !== "" && validHyper(name, v);
          input.style.outline = ok ? "" : "2px solid #c0392b";
          input.title = ok ? "" : "out of range: the path keeps the last valid value";
          if (ok) {
            values[name] = v;
            updatePath();
          }
        });
        item.append(name, input);
      }
      box.appendChild(item);
    }
  }

  // The checks lossland.paths.resolve_hyper makes, so the page never runs what Python refuses.
  function validHyper(name, v) {
    if (!Number.isFinite(v)) return false;
    const range = data.ranges[name];
    if (range) {
      const [low, high, closed] = range;
      if (v < low) return false;
      if (high !== null && (closed ? v > high : v >= high)) return false;
    }
    return !(name === "momentum" && state.optimizer === "nesterov" && v <= 0);
  }

  function showValues() {
    setOutput("lr", fmt(state.lr, 3));
    setOutput("steps", String(state.steps));
    setOutput("start-x", fmt(state.start[0], 4));
    setOutput("start-y", fmt(state.start[1], 4));
    setOutput("camera-azimuth", state.azimuth + "°");
    setOutput("camera-elevation", state.elevation + "°");
  }

  function cameraEye() {
    const r = 2.1;
    const az = (state.azimuth * Math.PI) / 180;
    const el_ = (state.elevation * Math.PI) / 180;
    return { x: r * Math.cos(el_) * Math.cos(az), y: r * Math.cos(el_) * Math.sin(az), z: r * Math.sin(el_) };
  }

  // --- traces ------------------------------------------------------------------------------

  function zOf(points, f, lift) {
    return points.map(([x, y]) => {
      const v = f.value(x, y);
      return Number.isFinite(v) ? v + lift : null;
    });
  }

  function computePath() {
    const f = interpolant(state.interpolation, state.log);
    const result = O.descend(grid, {
      start: state.start,
      optimizer: state.optimizer,
      lr: state.lr,
      steps: state.steps,
      log: state.log,
      interpolation: state.interpolation,
      hyper: state.hyper[state.optimizer],
      interpolant: f,
    });
    view.path = result;
    return result;
  }

  function pathInfo(result) {
    const info = el("path-info");
    const label = state.optimizer + " lr=" + fmt(state.lr, 3);
    if (result.error) {
      info.textContent = label + ": " + result.error + " (move the start)";
      info.className = "stopped";
      return;
    }
    const n = result.points.length - 1;
    const [x, y] = result.points[n];
    let text =
      label +
      ": " +
      n +
      " steps from (" +
      fmt(state.start[0], 4) +
      ", " +
      fmt(state.start[1], 4) +
      ") to (" +
      fmt(x, 4) +
      ", " +
      fmt(y, 4) +
      "), loss " +
      fmt(result.losses[0], 5) +
      " → " +
      fmt(result.losses[n], 5);
    if (result.stopped) text += " — stopped: " + result.stopped;
    info.textContent = text;
    info.className = result.stopped ? "stopped" : "";
    info.dataset.steps = String(n);
  }

  let lift = 0;
  let pathIndex3d = 0;
  let pathIndex2d = 0;

  function pathTraces(result, f) {
    const xs = result.points.map((p) => p[0]);
    const ys = result.points.map((p) => p[1]);
    const text = result.losses.map((v, k) => "step " + k + "<br>loss " + fmt(v, 6));
    const trace3d = {
      type: "scatter3d",
      mode: "lines+markers",
      name: "path",
      x: xs,
      y: ys,
      z: zOf(result.points, f, lift),
      text,
      hovertemplate: "x %{x:.4g}<br>y %{y:.4g}<br>%{text}<extra>path</extra>",
      line: { color: PATH_COLOR, width: 6 },
      marker: { size: 3, color: PATH_COLOR },
      showlegend: false,
    };
    const trace2d = {
      type: "scatter",
      mode: "lines+markers",
      name: "path",
      x: xs,
      y: ys,
      text,
      hovertemplate: "x %{x:.4g}<br>y %{y:.4g}<br>%{text}<extra>path</extra>",
      line: { color: PATH_COLOR, width: 2.5 },
      marker: { size: 5, color: PATH_COLOR },
      showlegend: false,
    };
    const start3d = {
      type: "scatter3d",
      mode: "markers",
      name: "start",
      x: xs.slice(0, 1),
      y: ys.slice(0, 1),
      z: zOf(result.points.slice(0, 1), f, lift),
      text: ["start"],
      marker: { size: 6, color: "#ffd400", line: { color: "#000", width: 1 } },
      hoverinfo: "skip",
      showlegend: false,
    };
    const start2d = {
      type: "scatter",
      mode: "markers",
      name: "start",
      x: xs.slice(0, 1),
      y: ys.slice(0, 1),
      text: ["start"],
      marker: { size: 12, color: "#ffd400", symbol: "circle", line: { color: "#000", width: 1.5 } },
      hoverinfo: "skip",
      showlegend: false,
    };
    return { trace3d, trace2d, start3d, start2d };
  }

  function staticLines(f) {
    // Stored training trajectories and paths from `lossland view --path`, drawn as they are.
    const lines = [];
    let c = 0;
    for (const t of data.trajectories) lines.push({ name: "trajectory " + t.name, points: t.points, dash: "dot", color: STATIC_COLORS[c++ % STATIC_COLORS.length] });
    for (const p of data.paths) lines.push({ name: p.label, points: p.points, dash: "dash", color: STATIC_COLORS[c++ % STATIC_COLORS.length] });
    const traces3d = [];
    const traces2d = [];
    for (const line of lines) {
      const xs = line.points.map((p) => p[0]);
      const ys = line.points.map((p) => p[1]);
      traces3d.push({ type: "scatter3d", mode: "lines", name: line.name, x: xs, y: ys, z: zOf(line.points, f, lift), line: { color: line.color, width: 5 }, hovertemplate: "x %{x:.4g}<br>y %{y:.4g}<extra>" + line.name + "</extra>" });
      traces2d.push({ type: "scatter", mode: "lines", name: line.name, x: xs, y: ys, line: { color: line.color, width: 2, dash: line.dash }, hovertemplate: "x %{x:.4g}<br>y %{y:.4g}<extra>" + line.name + "</extra>" });
    }
    if (data.steps) {
      // The weights of the step shown: the origin of its plane.
      const name = "weights at step " + data.steps[data.step_index].step;
      const hover = "x %{x:.4g}<br>y %{y:.4g}<extra>" + name + "</extra>";
      traces3d.push({ type: "scatter3d", mode: "markers", name, x: [0], y: [0], z: zOf([[0, 0]], f, lift), marker: { color: "#000000", size: 5, symbol: "diamond" }, hovertemplate: hover });
      traces2d.push({ type: "scatter", mode: "markers", name, x: [0], y: [0], marker: { color: "#000000", size: 11, symbol: "diamond" }, hovertemplate: hover });
    }
    return { traces3d, traces2d };
  }

  function criticalTraces() {
    // The most persistent minima (global first) and their saddles, as [x, y, loss] rows.
    const c = data.critical;
    if (!c) return [];
    const marker = (name, rows, style) => ({
      type: "scatter",
      mode: "markers",
      name,
      x: rows.map((r) => r[0]),
      y: rows.map((r) => r[1]),
      text: rows.map((r) => fmt(r[2], 5)),
      marker: style,
      hovertemplate: "x %{x:.4g}<br>y %{y:.4g}<br>loss %{text}<extra>" + name + "</extra>",
    });
    const traces = [
      marker("global minimum", c.minima.slice(0, 1), {
        symbol: "star",
        size: 16,
        color: "#ffd400",
        line: { color: "#000", width: 1 },
      }),
    ];
    if (c.minima.length > 1) {
      traces.push(
        marker("minima", c.minima.slice(1), { size: 8, color: "#111", line: { color: "#fff", width: 1.5 } }),
      );
    }
    if (c.saddles.length) {
      traces.push(
        marker("saddles", c.saddles, { symbol: "x", size: 9, color: "#c0392b", line: { color: "#fff", width: 1 } }),
      );
    }
    return traces;
  }

  function drawAll() {
    const f = interpolant(state.interpolation, state.log);
    const z = shown(state.log);
    const [lo, hi] = range(z);
    lift = 0.012 * (hi - lo);
    const zTitle = state.log ? "ln loss" : "loss";
    const result = computePath();
    const p = pathTraces(result, f);
    const s = staticLines(f);
    const surface = {
      type: "surface",
      x: grid.x,
      y: grid.y,
      z,
      text: hoverText,
      colorscale: COOLWARM,
      showscale: false,
      hovertemplate: "x %{x:.4g}<br>y %{y:.4g}<br>%{text}<extra></extra>",
      contours: {
        z: { show: true, usecolormap: true, project: { z: true }, highlightcolor: "#32cd32", width: 1 },
      },
      lighting: { ambient: 0.75, diffuse: 0.6, specular: 0.15, roughness: 0.8 },
    };
    const contour = {
      type: "contour",
      x: grid.x,
      y: grid.y,
      z,
      text: hoverText,
      colorscale: COOLWARM,
      ncontours: 30,
      contours: { coloring: "heatmap", showlines: true },
      line: { width: 0.6, color: "rgba(40,40,40,0.45)" },
      colorbar: { title: { text: zTitle, side: "right" }, thickness: 14 },
      hovertemplate: "x %{x:.4g}<br>y %{y:.4g}<br>%{text}<extra></extra>",
      connectgaps: false,
    };
    const traces3d = [surface, ...s.traces3d, p.trace3d, p.start3d];
    const critical = criticalTraces();
    // The path and its start stay the last two traces: updatePath restyles them by index.
    const traces2d = [contour, ...critical, ...s.traces2d, p.trace2d, p.start2d];
    pathIndex3d = traces3d.length - 2;
    pathIndex2d = traces2d.length - 2;
    const span = hi - lo;
    const layout3d = {
      margin: { l: 0, r: 0, t: 30, b: 0 },
      title: { text: "surface (" + zTitle + ")", font: { size: 14 }, x: 0.02, xanchor: "left" },
      showlegend: s.traces3d.length > 0,
      legend: { x: 0, y: 1 },
      uirevision: "keep",
      scene: {
        xaxis: { title: { text: "x" } },
        yaxis: { title: { text: "y" } },
        zaxis: { title: { text: zTitle }, range: [lo - 0.08 * span, hi + 0.08 * span] },
        aspectratio: { x: 1, y: 1, z: 0.7 },
        camera: { eye: cameraEye() },
      },
    };
    const layout2d = {
      margin: { l: 55, r: 10, t: 30, b: 45 },
      title: { text: "contour: click to move the start", font: { size: 14 }, x: 0.06, xanchor: "left" },
      showlegend: s.traces2d.length + critical.length > 0,
      legend: { x: 0, y: 1, bgcolor: "rgba(255,255,255,0.7)" },
      uirevision: "keep",
      xaxis: { title: { text: "x" }, range: [grid.x[0], grid.x[grid.x.length - 1]] },
      yaxis: { title: { text: "y" }, range: [grid.y[0], grid.y[grid.y.length - 1]] },
      hovermode: "closest",
    };
    const config = { responsive: true, displaylogo: false, showLink: false };
    pathInfo(result);
    showValues();
    return Promise.all([
      Plotly.react("surface3d", traces3d, layout3d, config),
      Plotly.react("contour", traces2d, layout2d, config),
    ]);
  }

  function updatePath() {
    const f = interpolant(state.interpolation, state.log);
    const result = computePath();
    const p = pathTraces(result, f);
    showValues();
    pathInfo(result);
    // One restyle per plot moves the path and its start marker; the surface stays as it is.
    const restyle = (div, traces, index) => {
      const update = {
        x: traces.map((t) => t.x),
        y: traces.map((t) => t.y),
        text: traces.map((t) => t.text),
      };
      if (traces[0].z) update.z = traces.map((t) => t.z);
      return Plotly.restyle(div, update, [index, index + 1]).catch(fail);
    };
    restyle("surface3d", [p.trace3d, p.start3d], pathIndex3d);
    restyle("contour", [p.trace2d, p.start2d], pathIndex2d);
    view.updates += 1;
  }
  view.recompute = updatePath;

  // --- hover, click, metadata ----------------------------------------------------------------

  function onHover(event) {
    const point = event.points && event.points[0];
    if (!point) return;
    const x = Number(point.x);
    const y = Number(point.y);
    const f = interpolant(state.interpolation, false);
    const loss = f.value(x, y);
    // On a grid point without a finite loss, say why rather than "n/a".
    const at = Array.isArray(point.pointNumber) ? point.pointNumber.join(",") : null;
    const text = at !== null && notes.has(at) ? notes.get(at) : "loss " + fmt(loss, 6);
    el("hover-info").textContent = "x " + fmt(x, 5) + ", y " + fmt(y, 5) + ", " + text;
  }

  function onClick(event) {
    const point = event.points && event.points[0];
    if (!point) return;
    state.start = [Number(point.x), Number(point.y)];
    el("start-x").value = String(state.start[0]);
    el("start-y").value = String(state.start[1]);
    updatePath();
  }

  function fillMetadata() {
    const body = el("metadata").tBodies[0];
    for (const [key, value] of data.metadata) {
      const row = body.insertRow();
      row.insertCell().textContent = key;
      row.insertCell().textContent = value;
    }
    el("summary").textContent = data.summary;
  }

  function fail(error) {
    el("message").textContent = "the viewer failed: " + (error && error.message ? error.message : String(error));
    console.error(error);
  }

  try {
    fillMetadata();
    initControls();
    drawAll()
      .then(() => {
        el("surface3d").on("plotly_hover", onHover);
        el("contour").on("plotly_hover", onHover);
        el("contour").on("plotly_click", onClick);
        view.ready = true;
        document.body.dataset.ready = "1";
      })
      .catch(fail);
  } catch (error) {
    fail(error);
  }
})();
