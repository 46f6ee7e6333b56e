// lmliqa in the browser: the preprocessing contract (lmliqa/contract.py, lmliqa/decode.py) ported exactly, so a page
// scores a photo as `lmliqa score` does, and the model run with ONNX Runtime Web (WebAssembly).
//
//   import { loadModel } from "./lmliqa-web.mjs";
//   const model = await loadModel(".");                  // contract.json + model.onnx of this folder
//   const r = await model.scoreBlob(file);               // {score, crops, width, height} or {error, kind}
//
// What "exactly" takes (each is asserted pixel for pixel against Python by lmliqa's tests in headless Chromium):
// - decoding: createImageBitmap with imageOrientation "from-image" (the EXIF orientation, as Pillow's
//   exif_transpose), colorSpaceConversion "none" (Pillow ignores ICC profiles) and premultiplyAlpha "none";
//   the pixels are read back through WebGL, not a 2D canvas (a 2D canvas stores premultiplied alpha and loses
//   precision where alpha is low);
// - alpha composited over the contract's background with Pillow's integer arithmetic (AlphaComposite.c);
// - resizing with Pillow's separable fixed-point resampling (Resample.c: horizontal pass to 8 bits, then vertical);
// - Python's round-half-even wherever the contract rounds (JavaScript's Math.round rounds halves up);
// - inputs Pillow and the browser decode differently are refused with the reason (16-bit PNG, CMYK JPEG), as are
//   images over the contract's pixel limit, read from the header before anything is decoded.

export const CONTRACT_VERSION = 1;                   // the contract this page implements (lmliqa.contract)
export const DEFAULT_MAX_PIXELS = 200_000_000;       // lmliqa.decode.DEFAULT_MAX_PIXELS

export class ScoreError extends Error {
  constructor(message, kind = "corrupt") { super(message); this.kind = kind; }
}

// ------------------------------------------------------------------------------------------------- rounding
/** Python's round(): halves to the even neighbour. */
export function roundHalfEven(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// ------------------------------------------------------------------------------------------------- headers
const td = new TextDecoder("latin1");

/** {format, width, height, refuse?} from an image file's first bytes (what Pillow reads before it decodes). */
export function sniffHeader(u8) {
  const at = (i, s) => td.decode(u8.subarray(i, i + s.length)) === s;
  const be16 = (i) => (u8[i] << 8) | u8[i + 1];
  const be32 = (i) => ((u8[i] << 24) >>> 0) + (u8[i + 1] << 16) + (u8[i + 2] << 8) + u8[i + 3];
  const le16 = (i) => u8[i] | (u8[i + 1] << 8);
  const le32 = (i) => (u8[i] | (u8[i + 1] << 8) | (u8[i + 2] << 16)) + u8[i + 3] * 16777216;
  if (u8.length === 0) throw new ScoreError("empty file (0 bytes)", "empty");
  if (u8[0] === 0x89 && at(1, "PNG")) {
    if (u8.length < 33 || !at(12, "IHDR")) throw new ScoreError("truncated PNG: the file ends inside its header", "truncated");
    const depth = u8[24], colour = u8[25];
    const out = { format: "PNG", width: be32(16), height: be32(20) };
    if (depth === 16) out.refuse = "16-bit PNG: browsers decode it to 8 bits their own way; lmliqa's contract scales it by 1/257 (convert it to 8 bits, or score it with lmliqa score)";
    // a tRNS chunk on a grey or RGB PNG: Pillow keeps such an image opaque (its mode stays L or RGB), browsers
    // make the keyed colour transparent; the page keeps it opaque too
    out.ignoreAlpha = (colour === 0 || colour === 2) && pngHasChunk(u8, "tRNS", be32);
    return out;
  }
  if (u8[0] === 0xff && u8[1] === 0xd8 && u8[2] === 0xff) return jpegHeader(u8, be16);
  if (at(0, "GIF87a") || at(0, "GIF89a")) return { format: "GIF", width: le16(6), height: le16(8) };
  if (at(0, "RIFF") && at(8, "WEBP")) return webpHeader(u8, le16, le32);
  if (at(0, "BM")) return { format: "BMP", width: Math.abs(le32(18) | 0), height: Math.abs(le32(22) | 0) };
  if (at(0, "II*\x00") || at(0, "MM\x00*")) throw new ScoreError("TIFF image: browsers do not decode TIFF (convert it to PNG or JPEG, or score it with lmliqa score)", "unsupported");
  if (at(4, "ftyp")) throw new ScoreError("HEIC/AVIF image: convert it to JPEG (lmliqa's contract decodes with Pillow)", "unsupported");
  const head = td.decode(u8.subarray(0, 512)).toLowerCase();
  if (head.includes("<svg")) throw new ScoreError("not an image: SVG vector graphics (rasterise it to PNG first)", "not_an_image");
  if (head.includes("<html") || head.includes("<!doctype html")) throw new ScoreError("not an image: an HTML page", "not_an_image");
  if (isText(u8.subarray(0, 512))) throw new ScoreError("not an image: a text file", "not_an_image");
  throw new ScoreError(`not an image: unrecognised format (starts with ${hex(u8.subarray(0, 8))})`, "not_an_image");
}

function pngHasChunk(u8, tag, be32) {
  let i = 8;
  while (i + 8 <= u8.length) {
    const name = td.decode(u8.subarray(i + 4, i + 8));
    if (name === tag) return true;
    if (name === "IDAT" || name === "IEND") return false;
    i += 12 + be32(i);
  }
  return false;
}

function jpegHeader(u8, be16) {
  let i = 2;
  while (i + 9 < u8.length) {
    if (u8[i] !== 0xff) { i += 1; continue; }
    const marker = u8[i + 1];
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue; }
    const len = be16(i + 2);
    const sof = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (sof) {
      const out = { format: "JPEG", height: be16(i + 5), width: be16(i + 7), components: u8[i + 9] };
      if (out.components === 4) out.refuse = "CMYK JPEG: browsers convert CMYK to RGB their own way; lmliqa's contract uses Pillow's conversion (score it with lmliqa score, or convert it to RGB)";
      return out;
    }
    i += 2 + len;
  }
  throw new ScoreError("truncated JPEG (the file ends before the image data does)", "truncated");
}

function webpHeader(u8, le16, le32) {
  const kind = td.decode(u8.subarray(12, 16));
  if (kind === "VP8 ") return { format: "WebP", width: le16(26) & 0x3fff, height: le16(28) & 0x3fff };
  if (kind === "VP8L") {
    const b = le32(21);
    return { format: "WebP", width: (b & 0x3fff) + 1, height: ((b >>> 14) & 0x3fff) + 1 };
  }
  if (kind === "VP8X") {
    const w = 1 + (u8[24] | (u8[25] << 8) | (u8[26] << 16)), h = 1 + (u8[27] | (u8[28] << 8) | (u8[29] << 16));
    return { format: "WebP", width: w, height: h };
  }
  throw new ScoreError("corrupt WebP: its header cannot be read", "corrupt");
}

function isText(u8) {
  if (u8.includes(0)) return false;
  let printable = 0;
  for (const c of u8) if ((c >= 32 && c < 127) || c === 9 || c === 10 || c === 13 || c >= 128) printable++;
  return u8.length > 0 && printable / u8.length > 0.95;
}

const hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join(" ");

// ------------------------------------------------------------------------------------------------- decoding
let gl = null;

/** RGBA bytes of an ImageBitmap as decoded (not premultiplied), read back through WebGL. */
function bitmapRGBA(bitmap) {
  const w = bitmap.width, h = bitmap.height;
  if (!gl) {
    const canvas = new OffscreenCanvas(1, 1);
    gl = canvas.getContext("webgl2", { premultipliedAlpha: false, antialias: false }) ||
      canvas.getContext("webgl", { premultipliedAlpha: false, antialias: false });
  }
  if (!gl) return bitmapRGBA2d(bitmap);
  const tex = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, tex);
  gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
  gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
  gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
  const fb = gl.createFramebuffer();
  gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
  gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
  const out = new Uint8Array(w * h * 4);
  gl.pixelStorei(gl.PACK_ALIGNMENT, 1);
  gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, out);
  gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  gl.deleteFramebuffer(fb);
  gl.deleteTexture(tex);
  return out;
}

function bitmapRGBA2d(bitmap) {   // where WebGL is missing: exact for opaque images
  const c = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return new Uint8Array(ctx.getImageData(0, 0, bitmap.width, bitmap.height).data.buffer);
}

/** Steps 1-3 of the contract: decode (first frame), orient, 8-bit RGB with alpha over the background.
 * Returns {rgb: Uint8Array (h*w*3), width, height}. */
export async function decodeRGB(blob, contract, maxPixels = DEFAULT_MAX_PIXELS) {
  const u8 = new Uint8Array(await blob.slice(0, 65536).arrayBuffer());
  const head = sniffHeader(u8);
  if (head.width < 1 || head.height < 1) throw new ScoreError(`image has no pixels (${head.width}x${head.height})`);
  if (maxPixels && head.width * head.height > maxPixels) {
    throw new ScoreError(`image too large: ${Math.round(head.width * head.height / 1e6)} megapixels (${head.width}x${head.height}; limit ${maxPixels / 1e6}, --max-pixels)`, "too_large");
  }
  if (head.refuse) throw new ScoreError(head.refuse, "unsupported");
  await checkComplete(blob, head.format, u8);
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: contract.exif_transpose ? "from-image" : "none",
      colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch (e) {
    throw new ScoreError(`corrupt ${head.format}: the browser cannot decode it (${e.message})`, "corrupt");
  }
  const rgba = bitmapRGBA(bitmap);
  if (head.ignoreAlpha) for (let i = 3; i < rgba.length; i += 4) rgba[i] = 255;
  const out = { rgb: compositeRGB(rgba, contract.background), width: bitmap.width, height: bitmap.height };
  bitmap.close();
  return out;
}

/** Refuse a file that ends before its image does (browsers would show a partly grey image; Pillow refuses it). */
async function checkComplete(blob, format, head) {
  const tail = new Uint8Array(await blob.slice(Math.max(0, blob.size - 4096)).arrayBuffer());
  const has = (bytes) => { outer: for (let i = tail.length - bytes.length; i >= 0; i--) {
    for (let j = 0; j < bytes.length; j++) if (tail[i + j] !== bytes[j]) continue outer;
    return true; } return false; };
  if (format === "PNG" && !has([0x49, 0x45, 0x4e, 0x44])) {            // IEND
    const idat = td.decode(head).includes("IDAT");
    throw new ScoreError(idat ? "truncated PNG (the file ends before the image data does)"
      : "truncated PNG: the file ends inside its header", "truncated");
  }
  if (format === "JPEG" && !has([0xff, 0xd9])) {                     // EOI
    throw new ScoreError("truncated JPEG (the file ends before the image data does)", "truncated");
  }
}

/** RGBA -> RGB over an opaque background, as Pillow's Image.alpha_composite then convert("RGB"). */
export function compositeRGB(rgba, background) {
  const n = rgba.length / 4, rgb = new Uint8Array(n * 3);
  const bg = background;
  for (let i = 0; i < n; i++) {
    const a = rgba[4 * i + 3];
    for (let c = 0; c < 3; c++) {
      const s = rgba[4 * i + c];
      let v;
      if (a === 0) v = bg[c];
      else if (a === 255) v = s;
      else {
        // AlphaComposite.c over an opaque destination: coef1 = a * 128, coef2 = (255 - a) * 128
        const tmp = s * a * 128 + bg[c] * (255 - a) * 128 + (0x80 << 7);
        v = ((((tmp >> 8) + tmp) >> 8) >> 7);
      }
      rgb[3 * i + c] = v;
    }
  }
  return rgb;
}

// ------------------------------------------------------------------------------------------------- resizing
const FILTERS = {
  bilinear: { support: 1.0, f: (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; } },
  box: { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0) },
  bicubic: { support: 2.0, f: (x) => {
    const a = -0.5; x = Math.abs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0; } },
  hamming: { support: 1.0, f: (x) => {
    x = Math.abs(x); if (x === 0.0) return 1.0; if (x >= 1.0) return 0.0;
    x *= Math.PI; return Math.sin(x) / x * (0.54 + 0.46 * Math.cos(x)); } },
  lanczos: { support: 3.0, f: (x) => {
    const sinc = (t) => (t === 0.0 ? 1.0 : Math.sin(t * Math.PI) / (t * Math.PI));
    return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0; } },
};
const PRECISION_BITS = 32 - 8 - 2;

/** Resample.c's precompute_coeffs + normalize_coeffs_8bpc: fixed-point weights and bounds per output pixel. */
function coeffs(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const kk = new Int32Array(outSize * ksize), bounds = new Int32Array(outSize * 2);
  const inv = 1.0 / filterscale;
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let ww = 0.0;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    for (let x = 0; x < xmax; x++) { w[x] = filter.f((x + xmin - center + 0.5) * inv); ww += w[x]; }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0.0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * (1 << PRECISION_BITS)) : Math.trunc(0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[2 * xx] = xmin; bounds[2 * xx + 1] = xmax;
  }
  return { kk, bounds, ksize };
}

const clip8 = (ss) => { const v = ss >> PRECISION_BITS; return v < 0 ? 0 : v > 255 ? 255 : v; };

/** Pillow's Image.resize((tw, th), filter) of an RGB image: horizontal pass to 8 bits, then vertical. */
export function resize(rgb, w, h, tw, th, interpolation = "bilinear") {
  const filter = FILTERS[interpolation];
  if (!filter) throw new ScoreError(`interpolation ${interpolation} is not ported to the browser`, "unsupported");
  let src = rgb, sw = w;
  const vert = coeffs(h, th, filter);
  const y0 = vert.bounds[0], y1 = vert.bounds[2 * th - 2] + vert.bounds[2 * th - 1];
  if (tw !== w) {                                   // horizontal pass over the rows the vertical pass reads
    const { kk, bounds, ksize } = coeffs(w, tw, filter);
    const rows = y1 - y0, tmp = new Uint8Array(rows * tw * 3);
    for (let yy = 0; yy < rows; yy++) {
      const line = (yy + y0) * w * 3;
      for (let xx = 0; xx < tw; xx++) {
        const xmin = bounds[2 * xx], xmax = bounds[2 * xx + 1], k = xx * ksize;
        let s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
        for (let x = 0; x < xmax; x++) {
          const p = line + (x + xmin) * 3, kx = kk[k + x];
          s0 += src[p] * kx; s1 += src[p + 1] * kx; s2 += src[p + 2] * kx;
        }
        const o = (yy * tw + xx) * 3;
        tmp[o] = clip8(s0); tmp[o + 1] = clip8(s1); tmp[o + 2] = clip8(s2);
      }
    }
    src = tmp; sw = tw;
    for (let i = 0; i < th; i++) vert.bounds[2 * i] -= y0;
  } else if (th !== h) {
    src = rgb;
  }
  if (th === h) return src === rgb && tw === w ? rgb : src;
  const { kk, bounds, ksize } = vert, out = new Uint8Array(th * sw * 3);
  for (let yy = 0; yy < th; yy++) {
    const ymin = bounds[2 * yy], ymax = bounds[2 * yy + 1], k = yy * ksize;
    for (let xx = 0; xx < sw; xx++) {
      let s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
      for (let y = 0; y < ymax; y++) {
        const p = ((y + ymin) * sw + xx) * 3, ky = kk[k + y];
        s0 += src[p] * ky; s1 += src[p + 1] * ky; s2 += src[p + 2] * ky;
      }
      const o = (yy * sw + xx) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  return out;
}

/** PreprocessContract.resize_image's target size (w, h), or an error for small_image "error". */
export function targetSize(contract, w, h) {
  let tw = w, th = h;
  const size = contract.resize_size;
  if (contract.resize === "shorter_side") { const s = size[0] / Math.min(w, h); tw = roundHalfEven(w * s); th = roundHalfEven(h * s); }
  else if (contract.resize === "longer_side") { const s = size[0] / Math.max(w, h); tw = roundHalfEven(w * s); th = roundHalfEven(h * s); }
  else if (contract.resize === "fixed") { tw = size[1]; th = size[0]; }
  const c = contract.crop_size;
  if (Math.min(tw, th) < c) {
    if (contract.small_image === "error") throw new ScoreError(`image is ${w}x${h} (after resize ${tw}x${th}); crops need ${c}px`, "unsupported");
    const s = c / Math.min(tw, th);
    [tw, th] = [Math.max(c, roundHalfEven(tw * s)), Math.max(c, roundHalfEven(th * s))];
  }
  return [tw, th];
}

// ------------------------------------------------------------------------------------------------- crops
function gridPos(i, n, span) { return n === 1 ? Math.floor(span / 2) : roundHalfEven(i * span / (n - 1)); }

/** Top-left corners [top, left] of the evaluation grid, row-major (PreprocessContract.eval_boxes). */
export function evalBoxes(contract, h, w) {
  const s = contract.crop_size, out = [];
  if (h < s || w < s) throw new ScoreError(`image ${w}x${h} is smaller than the ${s}px crop`, "unsupported");
  for (let r = 0; r < contract.eval_rows; r++)
    for (let c = 0; c < contract.eval_cols; c++) out.push([gridPos(r, contract.eval_rows, h - s), gridPos(c, contract.eval_cols, w - s)]);
  return out;
}

/** Steps 4-5: resize, the grid's crops (mirrored too with eval_hflip), float32 NCHW pixels 0..255. */
export function gridCrops(contract, rgb, w, h) {
  const [tw, th] = targetSize(contract, w, h);
  const img = tw === w && th === h ? rgb : resize(rgb, w, h, tw, th, contract.interpolation);
  const s = contract.crop_size, boxes = evalBoxes(contract, th, tw);
  const flips = contract.eval_hflip ? [false, true] : [false];
  const n = boxes.length * flips.length, out = new Float32Array(n * 3 * s * s);
  let i = 0;
  for (const flip of flips) {
    for (const [t, l] of boxes) {
      const base = i * 3 * s * s;
      for (let y = 0; y < s; y++) {
        for (let x = 0; x < s; x++) {
          const sx = flip ? l + s - 1 - x : l + x, p = ((t + y) * tw + sx) * 3, o = y * s + x;
          out[base + o] = img[p]; out[base + s * s + o] = img[p + 1]; out[base + 2 * s * s + o] = img[p + 2];
        }
      }
      i++;
    }
  }
  return { crops: out, n, width: tw, height: th };
}

/** Step 6: the image score from its crop scores. */
export function aggregate(contract, scores) {
  const v = Array.from(scores);
  if (contract.aggregation === "median") {
    v.sort((a, b) => a - b);
    const m = v.length >> 1;
    return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  }
  return v.reduce((a, b) => a + b, 0) / v.length;
}

// ------------------------------------------------------------------------------------------------- the model
/** The artifact's metadata (contract.json), refused when it was written for a newer contract. */
export function checkMetadata(meta) {
  const v = meta?.contract?.version ?? 1;
  if (!Number.isInteger(v) || v < 1) throw new ScoreError(`malformed lmliqa metadata: contract version ${v}`, "unsupported");
  if (v > CONTRACT_VERSION) throw new ScoreError(`this model was written for preprocessing contract version ${v}; this page implements version ${CONTRACT_VERSION}: export it again with this lmliqa`, "unsupported");
  return meta;
}

/** Load contract.json and model.onnx from BASE (a URL or path of the exported folder). */
export async function loadModel(base = ".", { threads = 1, device = "wasm", ortBase } = {}) {
  const root = base.endsWith("/") ? base : base + "/";
  const meta = checkMetadata(await (await fetch(root + "contract.json")).json());
  const ort = await import(ortBase ? ortBase + "ort.wasm.min.mjs" : root + "ort/ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = ortBase || new URL(root + "ort/", location.href).href;
  ort.env.wasm.numThreads = threads;
  const session = await ort.InferenceSession.create(root + "model.onnx", { executionProviders: [device] });
  return new Model(ort, session, meta);
}

export class Model {
  constructor(ort, session, meta) {
    this.ort = ort; this.session = session; this.meta = meta; this.contract = meta.contract;
    this.batch = Number.isInteger(meta.batch) ? meta.batch : null;
  }

  /** Raw network call: float32 NCHW crops (n x 3 x s x s) -> n scores. */
  async infer(crops, n) {
    const s = this.contract.crop_size, size = 3 * s * s, out = new Float64Array(n);
    const step = this.batch || n;
    for (let i = 0; i < n; i += step) {
      const m = Math.min(step, n - i);
      let chunk = crops.subarray(i * size, (i + m) * size);
      if (this.batch && m < this.batch) {      // a fixed-batch model: pad with the last crop
        const padded = new Float32Array(this.batch * size);
        padded.set(chunk);
        for (let j = m; j < this.batch; j++) padded.set(chunk.subarray((m - 1) * size, m * size), j * size);
        chunk = padded;
      }
      const feeds = { [this.session.inputNames[0]]: new this.ort.Tensor("float32", chunk, [chunk.length / size, 3, s, s]) };
      const res = await this.session.run(feeds);
      out.set(res[this.session.outputNames[0]].data.subarray(0, m), i);
    }
    return out;
  }

  /** One photo (a File or Blob): {score, crops, width, height} or {error, kind}. */
  async scoreBlob(blob, { maxPixels = DEFAULT_MAX_PIXELS, contract = this.contract } = {}) {
    try {
      const img = await decodeRGB(blob, contract, maxPixels);
      return await this.scoreRGB(img.rgb, img.width, img.height, contract);
    } catch (e) {
      if (e instanceof ScoreError) return { error: e.message, kind: e.kind };
      throw e;
    }
  }

  /** Decoded RGB pixels (e.g. a camera frame): the same crops, network and aggregation. */
  async scoreRGB(rgb, width, height, contract = this.contract) {
    const { crops, n } = gridCrops(contract, rgb, width, height);
    const scores = await this.infer(crops, n);
    const score = aggregate(contract, scores);
    if (!Number.isFinite(score)) return { error: "the model returned a non-finite score", kind: "corrupt" };
    return { score, crops: Array.from(scores), width, height };
  }
}

/** A layout of the contract (PreprocessContract.with_layout), e.g. "fast" for a live camera view. */
export function withLayout(contract, name) {
  const s = contract.crop_size;
  const changes = {
    accurate: { eval_rows: 3, eval_cols: 3 }, fast: { eval_rows: 2, eval_cols: 2 }, centre: { eval_rows: 1, eval_cols: 1 },
    whole: { resize: "fixed", resize_size: [s, s], eval_rows: 1, eval_cols: 1 },
    whole_aspect: { resize: "shorter_side", resize_size: [s], eval_rows: 1, eval_cols: 1 },
    accurate_flip: { eval_rows: 3, eval_cols: 3, eval_hflip: true }, dense: { eval_rows: 4, eval_cols: 4 },
  }[name];
  if (!changes) throw new ScoreError(`unknown layout ${name}`, "unsupported");
  return { ...contract, eval_hflip: false, ...changes, notes: { ...(contract.notes || {}), layout: name } };
}
