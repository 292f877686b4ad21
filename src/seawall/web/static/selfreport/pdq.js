// PDQ as Seawall's server (src/seawall/signals/pdq.py) and Meta's C++ reference compute it.
// The reference works in 32-bit floats in a fixed order of operations; Math.fround rounds every
// intermediate result where the reference holds a float, and Float32Array stores round the same way.
// The order of every sum is the reference's: float addition is not associative.

const f32 = Math.fround;
export const SAMPLE = 512; // larger images are sampled to 512x512 by nearest neighbour
const MIN_DIM = 5; // smaller images hash to zeros with quality 0
const LUMA_R = f32(0.299);
const LUMA_G = f32(0.587);
const LUMA_B = f32(0.114);
export const DIHEDRAL_NAMES = [
  "original", "rotate90", "rotate180", "rotate270", "flipx", "flipy", "flipplus1", "flipminus1",
];

// The 16x64 DCT matrix: a float scale times a double cosine, rounded to float.
export const DCT = (() => {
  const d = new Float32Array(16 * 64);
  const scale = f32(Math.sqrt(2.0 / 64.0));
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      d[i * 64 + j] = scale * Math.cos((Math.PI / 2.0 / 64.0) * (i + 1) * (2 * j + 1));
    }
  }
  return d;
})();

// Source indices of the reference's nearest-neighbour resize: floor(i * length / 512).
export function sampleIndices(length) {
  const out = new Int32Array(SAMPLE);
  for (let i = 0; i < SAMPLE; i++) out[i] = Math.floor((i * length) / SAMPLE);
  return out;
}

// Float luma of RGBA bytes (stride 4), optionally picking the given rows and columns.
export function lumaOf(rgba, width, height, rows, cols) {
  const outRows = rows ? rows.length : height;
  const outCols = cols ? cols.length : width;
  const luma = new Float32Array(outRows * outCols);
  for (let i = 0; i < outRows; i++) {
    const src = rows ? rows[i] : i;
    for (let j = 0; j < outCols; j++) {
      const p = 4 * (src * width + (cols ? cols[j] : j));
      luma[i * outCols + j] = f32(f32(LUMA_R * rgba[p]) + f32(LUMA_G * rgba[p + 1])) + f32(LUMA_B * rgba[p + 2]);
    }
  }
  return { luma, rows: outRows, cols: outCols };
}

// One running-sum box filter along `lines` lines of `n` values (start of line l at l*lineStep,
// consecutive values `step` apart), in the reference's four phases (grow, write, slide, shrink).
function box(src, dst, lines, n, lineStep, step, window) {
  const half = Math.floor((window + 2) / 2);
  const p1 = half - 1;
  const p2 = window - half + 1;
  const p3 = n - window;
  const p4 = half - 1;
  for (let l = 0; l < lines; l++) {
    const base = l * lineStep;
    let s = 0;
    let cur = 0;
    let ri = 0;
    let li = 0;
    let oi = 0;
    for (let k = 0; k < p1; k++) {
      s = f32(s + src[base + ri * step]);
      cur++;
      ri++;
    }
    for (let k = 0; k < p2; k++) {
      s = f32(s + src[base + ri * step]);
      cur++;
      dst[base + oi * step] = s / cur;
      ri++;
      oi++;
    }
    for (let k = 0; k < p3; k++) {
      s = f32(s + src[base + ri * step]);
      s = f32(s - src[base + li * step]);
      dst[base + oi * step] = s / cur;
      li++;
      ri++;
      oi++;
    }
    for (let k = 0; k < p4; k++) {
      s = f32(s - src[base + li * step]);
      cur--;
      dst[base + oi * step] = s / cur;
      li++;
      oi++;
    }
  }
}

// Blur, decimate to 64x64, quality, and the 16x16 DCT (reference order). Returns {dct, quality}.
function dct16(luma, rows, cols) {
  let a;
  if (rows === 64 && cols === 64) {
    a = luma;
  } else {
    const buf1 = Float32Array.from(luma);
    const buf2 = new Float32Array(luma.length);
    const winRows = Math.ceil(cols / 128);
    const winCols = Math.ceil(rows / 128);
    for (let pass = 0; pass < 2; pass++) {
      box(buf1, buf2, rows, cols, cols, 1, winRows);
      box(buf2, buf1, cols, rows, 1, cols, winCols);
    }
    a = new Float32Array(64 * 64);
    for (let i = 0; i < 64; i++) {
      const ii = Math.floor(((i + 0.5) * rows) / 64);
      for (let j = 0; j < 64; j++) {
        const jj = Math.floor(((j + 0.5) * cols) / 64);
        a[i * 64 + j] = buf1[ii * cols + jj];
      }
    }
  }
  let grad = 0;
  for (let i = 0; i < 63; i++) {
    for (let j = 0; j < 64; j++) {
      grad += Math.abs(Math.trunc(f32(f32(f32(a[i * 64 + j] - a[(i + 1) * 64 + j]) * 100) / 255)));
    }
  }
  for (let i = 0; i < 64; i++) {
    for (let j = 0; j < 63; j++) {
      grad += Math.abs(Math.trunc(f32(f32(f32(a[i * 64 + j] - a[i * 64 + j + 1]) * 100) / 255)));
    }
  }
  const quality = Math.min(Math.floor(grad / 90), 100);
  const t = new Float32Array(16 * 64);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      let s = 0;
      for (let k = 0; k < 64; k++) s = f32(s + f32(DCT[i * 64 + k] * a[k * 64 + j]));
      t[i * 64 + j] = s;
    }
  }
  const b = new Float32Array(256);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let s = 0;
      for (let k = 0; k < 64; k++) s = f32(s + f32(t[i * 64 + k] * DCT[j * 64 + k]));
      b[i * 16 + j] = s;
    }
  }
  return { dct: b, quality };
}

const HEX = "0123456789abcdef";

// 64-hex of a 16x16 DCT: bit k (set when coefficient k exceeds the lower median) weighs 2**k.
function bitsToHex(b) {
  const median = Float32Array.from(b).sort()[127];
  let hex = "";
  for (let m = 0; m < 32; m++) {
    let byte = 0;
    for (let t = 0; t < 8; t++) {
      if (b[255 - 8 * m - t] > median) byte |= 1 << (7 - t);
    }
    hex += HEX[byte >> 4] + HEX[byte & 15];
  }
  return hex;
}

// The DCTs of the 8 rotations and flips, derived from the original's as the reference does.
function dihedralDcts(b) {
  const out = [];
  const make = (f) => {
    const d = new Float32Array(256);
    for (let i = 0; i < 16; i++) for (let j = 0; j < 16; j++) d[i * 16 + j] = f(i, j);
    return d;
  };
  const at = (i, j) => b[i * 16 + j];
  out.push(b);
  out.push(make((i, j) => (i & 1 ? at(j, i) : -at(j, i))));
  out.push(make((i, j) => ((i + j) & 1 ? -at(i, j) : at(i, j))));
  out.push(make((i, j) => (j & 1 ? at(j, i) : -at(j, i))));
  out.push(make((i, j) => (i & 1 ? at(i, j) : -at(i, j))));
  out.push(make((i, j) => (j & 1 ? at(i, j) : -at(i, j))));
  out.push(make((i, j) => at(j, i)));
  out.push(make((i, j) => ((i + j) & 1 ? -at(j, i) : at(j, i))));
  return out;
}

const ZERO = "0".repeat(64);

// PDQ of a float luma image (no resizing). Returns {pdq, quality, dihedral?}.
export function pdqFromLuma(luma, rows, cols, withDihedral = false) {
  if (rows < MIN_DIM || cols < MIN_DIM) {
    const r = { pdq: ZERO, quality: 0 };
    if (withDihedral) r.dihedral = new Array(8).fill(ZERO);
    return r;
  }
  const { dct, quality } = dct16(luma, rows, cols);
  const result = { pdq: bitsToHex(dct), quality };
  if (withDihedral) result.dihedral = dihedralDcts(dct).map(bitsToHex);
  return result;
}

// PDQ of decoded RGBA pixels, as `seawall hash` computes it: the whole image when both sides are at
// most 512, else the exact 512x512 nearest-neighbour sample.
// `rowsSampled`: the pixels hold only the 512 sampled rows already (in order), full width.
// `whole`: hash every pixel whatever the size, as vPDQ hashes a video frame.
export function pdqFromRgba(rgba, width, height, withDihedral = false, rowsSampled = false, whole = false) {
  let rows = null;
  let cols = null;
  if (rowsSampled) {
    cols = sampleIndices(width);
  } else if (!whole && (width > SAMPLE || height > SAMPLE)) {
    rows = sampleIndices(height);
    cols = sampleIndices(width);
  }
  const l = lumaOf(rgba, width, height, rows, cols);
  return pdqFromLuma(l.luma, l.rows, l.cols, withDihedral);
}
