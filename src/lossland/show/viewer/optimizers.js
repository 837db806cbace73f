/*
 * lossland optimizers.js: the surface interpolant and PyTorch's optimizers in plain JavaScript.
 *
 * This mirrors lossland/paths.py step for step, so the viewer draws the same paths as
 * `lossland path`: the cubic Hermite (Catmull-Rom on uniform grids) or bilinear interpolant,
 * the stopping rules (edge of the grid, holes: not evaluated or NaN, divergence) and the update
 * rules of torch.optim.SGD (momentum, nesterov), Adam (amsgrad, AdamW), NAdam and RMSprop in
 * their single-tensor form. tests/test_view.py runs this file under Node and compares every
 * optimizer with PyTorch to 1e-5. Works in the page (window.LosslandOptimizers) and under Node
 * (module.exports).
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.LosslandOptimizers = api;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const OPTIMIZERS = ["sgd", "momentum", "nesterov", "adam", "nadam", "rmsprop"];

  // Index k of the cell [nodes[k], nodes[k+1]] holding v: the largest k with nodes[k] <= v,
  // clamped to [0, n-2] (numpy.searchsorted(nodes, v, "right") - 1 in Python).
  function cell(nodes, v) {
    let lo = 0;
    let hi = nodes.length; // first index with nodes[i] > v lies in [lo, hi]
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (nodes[mid] <= v) lo = mid + 1;
      else hi = mid;
    }
    return Math.min(Math.max(lo - 1, 0), nodes.length - 2);
  }

  // Grid indices read along one axis, their weights and the weights' derivatives d/dv.
  function axis(nodes, v, interpolation) {
    const n = nodes.length;
    const k = cell(nodes, v);
    const x0 = nodes[k];
    const x1 = nodes[k + 1];
    const h = x1 - x0;
    const t = (v - x0) / h;
    if (interpolation === "bilinear") {
      return { idx: [k, k + 1], w: [1 - t, t], dw: [-1 / h, 1 / h] };
    }
    const lo = Math.max(k - 1, 0);
    const hi = Math.min(k + 2, n - 1);
    const dl = x1 - nodes[lo];
    const dr = nodes[hi] - x0;
    const t2 = t * t;
    const t3 = t2 * t;
    const h00 = 2 * t3 - 3 * t2 + 1;
    const h10 = t3 - 2 * t2 + t;
    const h01 = -2 * t3 + 3 * t2;
    const h11 = t3 - t2;
    const d00 = 6 * t2 - 6 * t;
    const d10 = 3 * t2 - 4 * t + 1;
    const d01 = -6 * t2 + 6 * t;
    const d11 = 3 * t2 - 2 * t;
    return {
      idx: [lo, k, k + 1, hi],
      w: [(-h * h10) / dl, h00 - (h * h11) / dr, h01 + (h * h10) / dl, (h * h11) / dr],
      dw: [-d10 / dl, d00 / h - d11 / dr, d01 / h + d10 / dl, d11 / dr],
    };
  }

  /*
   * The interpolant of a grid {x: [nx], y: [ny], z: [ny][nx]} (z[i][j] at (x[j], y[i]); null or
   * NaN = not evaluated; x and y strictly increasing). With log, it interpolates ln(z).
   */
  function makeInterpolant(grid, options) {
    const opts = options || {};
    const interpolation = opts.interpolation || "cubic";
    const log = Boolean(opts.log);
    const xs = grid.x;
    const ys = grid.y;
    const values = grid.z.map((row) =>
      row.map((v) => {
        if (v === null || v === undefined || Number.isNaN(v)) return NaN;
        return log ? Math.log(v) : v;
      }),
    );
    const bounds = [xs[0], xs[xs.length - 1], ys[0], ys[ys.length - 1]];

    function contains(x, y) {
      return bounds[0] <= x && x <= bounds[1] && bounds[2] <= y && y <= bounds[3];
    }

    // [value, d/dx, d/dy], or null where undefined (outside, or the stencil reads a hole).
    function evaluate(x, y) {
      if (!contains(x, y)) return null;
      const ax = axis(xs, x, interpolation);
      const ay = axis(ys, y, interpolation);
      // Row combination first, as Python's wy @ Z @ wx.
      let f = 0;
      let fx = 0;
      let fy = 0;
      for (let b = 0; b < ax.idx.length; b++) {
        let r = 0;
        let ry = 0;
        for (let a = 0; a < ay.idx.length; a++) {
          const z = values[ay.idx[a]][ax.idx[b]];
          if (!Number.isFinite(z)) return null;
          r += ay.w[a] * z;
          ry += ay.dw[a] * z;
        }
        f += r * ax.w[b];
        fx += r * ax.dw[b];
        fy += ry * ax.w[b];
      }
      return [f, fx, fy];
    }

    function value(x, y) {
      const e = evaluate(x, y);
      return e === null ? NaN : e[0];
    }

    return {
      bounds,
      log,
      interpolation,
      contains,
      evaluate,
      value,
      raw: (v) => (log ? Math.exp(v) : v),
    };
  }

  // torch.lerp: self + w * (end - self) for |w| < 0.5, else end - (end - self) * (1 - w).
  function lerp(self, end, w) {
    return Math.abs(w) < 0.5 ? self + w * (end - self) : end - (end - self) * (1 - w);
  }

  /*
   * One PyTorch optimizer on a 2-vector. step(p, g) updates p in place from the gradient g,
   * following torch/optim/*.py's _single_tensor_* functions line by line.
   */
  function makeOptimizer(name, lr, h) {
    const state = { step: 0 };
    const wd = h.weight_decay || 0;
    if (name === "sgd" || name === "momentum" || name === "nesterov") {
      const momentum = name === "sgd" ? 0 : h.momentum;
      const dampening = name === "momentum" ? h.dampening || 0 : 0;
      const nesterov = name === "nesterov";
      let buf = null;
      return function step(p, g0) {
        for (let i = 0; i < 2; i++) {
          let g = g0[i];
          if (wd !== 0) g = g + wd * p[i];
          if (momentum !== 0) {
            if (buf === null) buf = [0, 0];
            if (state.step === 0) buf[i] = g;
            else buf[i] = buf[i] * momentum + (1 - dampening) * g;
            g = nesterov ? g + momentum * buf[i] : buf[i];
          }
          p[i] = p[i] + -lr * g;
        }
        state.step += 1;
      };
    }
    if (name === "adam") {
      const [beta1, beta2, eps] = [h.beta1, h.beta2, h.eps];
      const amsgrad = Boolean(h.amsgrad);
      const decoupled = Boolean(h.decoupled_weight_decay);
      const m = [0, 0];
      const v = [0, 0];
      const vmax = [0, 0];
      return function step(p, g0) {
        state.step += 1;
        const t = state.step;
        for (let i = 0; i < 2; i++) {
          let g = g0[i];
          if (wd !== 0) {
            if (decoupled) p[i] = p[i] * (1 - lr * wd);
            else g = g + wd * p[i];
          }
          m[i] = lerp(m[i], g, 1 - beta1);
          v[i] = v[i] * beta2 + (1 - beta2) * g * g;
          const bc1 = 1 - beta1 ** t;
          const bc2 = 1 - beta2 ** t;
          const stepSize = lr / bc1;
          const bc2Sqrt = bc2 ** 0.5;
          let second = v[i];
          if (amsgrad) {
            vmax[i] = Math.max(vmax[i], v[i]);
            second = vmax[i];
          }
          const denom = Math.sqrt(second) / bc2Sqrt + eps;
          p[i] = p[i] + (-stepSize * m[i]) / denom;
        }
      };
    }
    if (name === "nadam") {
      const [beta1, beta2, eps] = [h.beta1, h.beta2, h.eps];
      const momentumDecay = h.momentum_decay;
      const decoupled = Boolean(h.decoupled_weight_decay);
      const m = [0, 0];
      const v = [0, 0];
      // PyTorch keeps mu_product in a float32 tensor (the default scalar dtype): round like it.
      let muProduct = Math.fround(1);
      return function step(p, g0) {
        state.step += 1;
        const t = state.step;
        const bc2 = 1 - beta2 ** t;
        const mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * momentumDecay));
        const muNext = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentumDecay));
        muProduct = Math.fround(muProduct * Math.fround(mu));
        const muProductNext = muProduct * muNext;
        for (let i = 0; i < 2; i++) {
          let g = g0[i];
          if (wd !== 0) {
            if (decoupled) p[i] = p[i] * (1 - lr * wd);
            else g = g + wd * p[i];
          }
          m[i] = lerp(m[i], g, 1 - beta1);
          v[i] = v[i] * beta2 + (1 - beta2) * g * g;
          const denom = Math.sqrt(v[i] / bc2) + eps;
          p[i] = p[i] + ((-lr * (1.0 - mu)) / (1.0 - muProduct)) * g / denom;
          p[i] = p[i] + ((-lr * muNext) / (1.0 - muProductNext)) * m[i] / denom;
        }
      };
    }
    if (name === "rmsprop") {
      const [alpha, eps, momentum] = [h.alpha, h.eps, h.momentum];
      const centered = Boolean(h.centered);
      const sq = [0, 0];
      const gAvg = [0, 0];
      const buf = [0, 0];
      return function step(p, g0) {
        state.step += 1;
        for (let i = 0; i < 2; i++) {
          let g = g0[i];
          if (wd !== 0) g = g + wd * p[i];
          sq[i] = sq[i] * alpha + (1 - alpha) * g * g;
          let avg;
          if (centered) {
            gAvg[i] = lerp(gAvg[i], g, 1 - alpha);
            avg = Math.sqrt(sq[i] + -1 * gAvg[i] * gAvg[i]);
          } else {
            avg = Math.sqrt(sq[i]);
          }
          avg = avg + eps;
          if (momentum > 0) {
            buf[i] = buf[i] * momentum + g / avg;
            p[i] = p[i] + -lr * buf[i];
          } else {
            p[i] = p[i] + (-lr * g) / avg;
          }
        }
      };
    }
    throw new Error("unknown optimizer " + name + ": use one of " + OPTIMIZERS.join(", "));
  }

  // Where the segment from p (inside) to q (outside) crosses the grid's edge (as edge_point).
  function edgePoint(p, q, bounds) {
    const lows = [bounds[0], bounds[2]];
    const highs = [bounds[1], bounds[3]];
    let s = 1.0;
    for (let a = 0; a < 2; a++) {
      if (q[a] < lows[a]) s = Math.min(s, (lows[a] - p[a]) / (q[a] - p[a]));
      else if (q[a] > highs[a]) s = Math.min(s, (highs[a] - p[a]) / (q[a] - p[a]));
    }
    return [0, 1].map((a) => Math.min(Math.max(p[a] + s * (q[a] - p[a]), lows[a]), highs[a]));
  }

  /*
   * descend(grid, {start: [x, y], optimizer, lr, steps, log, interpolation, hyper}) →
   * {points: [[x, y], ...], losses: [...] (loss units), stopped: null | "why"}, or
   * {error: "why"} when the start is outside the grid or on a hole (not evaluated, or NaN).
   * hyper must hold every hyper-parameter of the optimizer (the page has Python's defaults).
   * An interpolant built once may be passed as options.interpolant to save work.
   */
  function descend(grid, options) {
    const f =
      options.interpolant ||
      makeInterpolant(grid, { interpolation: options.interpolation, log: options.log });
    const start = [Number(options.start[0]), Number(options.start[1])];
    if (!f.contains(start[0], start[1])) {
      return { error: "the start lies outside the grid", points: [], losses: [], stopped: null };
    }
    let e = f.evaluate(start[0], start[1]);
    if (e === null) {
      return {
        error: "the start lies on a hole of the surface (points not evaluated, or NaN)",
        points: [],
        losses: [],
        stopped: null,
      };
    }
    const step = makeOptimizer(options.optimizer, options.lr, options.hyper || {});
    const p = start.slice();
    const points = [start.slice()];
    const values = [e[0]];
    let stopped = null;
    for (let k = 1; k <= options.steps; k++) {
      step(p, [e[1], e[2]]);
      if (!(Number.isFinite(p[0]) && Number.isFinite(p[1]))) {
        stopped = "diverged at step " + k;
        break;
      }
      if (!f.contains(p[0], p[1])) {
        stopped = "left the grid at step " + k;
        const edge = edgePoint(points[points.length - 1], p, f.bounds);
        const ev = f.value(edge[0], edge[1]);
        if (Number.isFinite(ev)) {
          points.push(edge);
          values.push(ev);
        }
        break;
      }
      e = f.evaluate(p[0], p[1]);
      if (e === null) {
        stopped = "reached a hole (not evaluated, or NaN) at step " + k;
        break;
      }
      points.push(p.slice());
      values.push(e[0]);
    }
    return { points, losses: values.map(f.raw), values, stopped };
  }

  return { OPTIMIZERS, cell, makeInterpolant, makeOptimizer, edgePoint, descend };
});
