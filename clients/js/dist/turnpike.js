// turnpike-client: generated from clients/js/src by `npm run bundle` in clients/js (do not edit).
// Includes tweetnacl (public domain, https://tweetnacl.js.org).
var __create = Object.create;
var __defProp = Object.defineProperty;
var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __getProtoOf = Object.getPrototypeOf;
var __hasOwnProp = Object.prototype.hasOwnProperty;
var __require = /* @__PURE__ */ ((x) => typeof require !== "undefined" ? require : typeof Proxy !== "undefined" ? new Proxy(x, {
  get: (a, b) => (typeof require !== "undefined" ? require : a)[b]
}) : x)(function(x) {
  if (typeof require !== "undefined") return require.apply(this, arguments);
  throw Error('Dynamic require of "' + x + '" is not supported');
});
var __commonJS = (cb, mod) => function __require2() {
  try {
    return mod || (0, cb[__getOwnPropNames(cb)[0]])((mod = { exports: {} }).exports, mod), mod.exports;
  } catch (e) {
    throw mod = 0, e;
  }
};
var __copyProps = (to, from, except, desc) => {
  if (from && typeof from === "object" || typeof from === "function") {
    for (let key of __getOwnPropNames(from))
      if (!__hasOwnProp.call(to, key) && key !== except)
        __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
  }
  return to;
};
var __toESM = (mod, isNodeMode, target) => (target = mod != null ? __create(__getProtoOf(mod)) : {}, __copyProps(
  // If the importer is in node compatibility mode or this is not an ESM
  // file that has been converted to a CommonJS file using a Babel-
  // compatible transform (i.e. "__esModule" has not been set), then set
  // "default" to the CommonJS "module.exports" for node compatibility.
  isNodeMode || !mod || !mod.__esModule ? __defProp(target, "default", { value: mod, enumerable: true }) : target,
  mod
));

// crypto-shim:crypto
var require_crypto = __commonJS({
  "crypto-shim:crypto"(exports, module) {
    module.exports = { randomBytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i += 65536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
      return out;
    } };
  }
});

// node_modules/tweetnacl/nacl-fast.js
var require_nacl_fast = __commonJS({
  "node_modules/tweetnacl/nacl-fast.js"(exports, module) {
    (function(nacl4) {
      "use strict";
      var gf = function(init) {
        var i, r = new Float64Array(16);
        if (init) for (i = 0; i < init.length; i++) r[i] = init[i];
        return r;
      };
      var randombytes = function() {
        throw new Error("no PRNG");
      };
      var _0 = new Uint8Array(16);
      var _9 = new Uint8Array(32);
      _9[0] = 9;
      var gf0 = gf(), gf1 = gf([1]), _121665 = gf([56129, 1]), D = gf([30883, 4953, 19914, 30187, 55467, 16705, 2637, 112, 59544, 30585, 16505, 36039, 65139, 11119, 27886, 20995]), D2 = gf([61785, 9906, 39828, 60374, 45398, 33411, 5274, 224, 53552, 61171, 33010, 6542, 64743, 22239, 55772, 9222]), X = gf([54554, 36645, 11616, 51542, 42930, 38181, 51040, 26924, 56412, 64982, 57905, 49316, 21502, 52590, 14035, 8553]), Y = gf([26200, 26214, 26214, 26214, 26214, 26214, 26214, 26214, 26214, 26214, 26214, 26214, 26214, 26214, 26214, 26214]), I = gf([41136, 18958, 6951, 50414, 58488, 44335, 6150, 12099, 55207, 15867, 153, 11085, 57099, 20417, 9344, 11139]);
      function ts64(x, i, h, l) {
        x[i] = h >> 24 & 255;
        x[i + 1] = h >> 16 & 255;
        x[i + 2] = h >> 8 & 255;
        x[i + 3] = h & 255;
        x[i + 4] = l >> 24 & 255;
        x[i + 5] = l >> 16 & 255;
        x[i + 6] = l >> 8 & 255;
        x[i + 7] = l & 255;
      }
      function vn(x, xi, y, yi, n) {
        var i, d = 0;
        for (i = 0; i < n; i++) d |= x[xi + i] ^ y[yi + i];
        return (1 & d - 1 >>> 8) - 1;
      }
      function crypto_verify_16(x, xi, y, yi) {
        return vn(x, xi, y, yi, 16);
      }
      function crypto_verify_32(x, xi, y, yi) {
        return vn(x, xi, y, yi, 32);
      }
      function core_salsa20(o, p, k, c) {
        var j0 = c[0] & 255 | (c[1] & 255) << 8 | (c[2] & 255) << 16 | (c[3] & 255) << 24, j1 = k[0] & 255 | (k[1] & 255) << 8 | (k[2] & 255) << 16 | (k[3] & 255) << 24, j2 = k[4] & 255 | (k[5] & 255) << 8 | (k[6] & 255) << 16 | (k[7] & 255) << 24, j3 = k[8] & 255 | (k[9] & 255) << 8 | (k[10] & 255) << 16 | (k[11] & 255) << 24, j4 = k[12] & 255 | (k[13] & 255) << 8 | (k[14] & 255) << 16 | (k[15] & 255) << 24, j5 = c[4] & 255 | (c[5] & 255) << 8 | (c[6] & 255) << 16 | (c[7] & 255) << 24, j6 = p[0] & 255 | (p[1] & 255) << 8 | (p[2] & 255) << 16 | (p[3] & 255) << 24, j7 = p[4] & 255 | (p[5] & 255) << 8 | (p[6] & 255) << 16 | (p[7] & 255) << 24, j8 = p[8] & 255 | (p[9] & 255) << 8 | (p[10] & 255) << 16 | (p[11] & 255) << 24, j9 = p[12] & 255 | (p[13] & 255) << 8 | (p[14] & 255) << 16 | (p[15] & 255) << 24, j10 = c[8] & 255 | (c[9] & 255) << 8 | (c[10] & 255) << 16 | (c[11] & 255) << 24, j11 = k[16] & 255 | (k[17] & 255) << 8 | (k[18] & 255) << 16 | (k[19] & 255) << 24, j12 = k[20] & 255 | (k[21] & 255) << 8 | (k[22] & 255) << 16 | (k[23] & 255) << 24, j13 = k[24] & 255 | (k[25] & 255) << 8 | (k[26] & 255) << 16 | (k[27] & 255) << 24, j14 = k[28] & 255 | (k[29] & 255) << 8 | (k[30] & 255) << 16 | (k[31] & 255) << 24, j15 = c[12] & 255 | (c[13] & 255) << 8 | (c[14] & 255) << 16 | (c[15] & 255) << 24;
        var x0 = j0, x1 = j1, x2 = j2, x3 = j3, x4 = j4, x5 = j5, x6 = j6, x7 = j7, x8 = j8, x9 = j9, x10 = j10, x11 = j11, x12 = j12, x13 = j13, x14 = j14, x15 = j15, u;
        for (var i = 0; i < 20; i += 2) {
          u = x0 + x12 | 0;
          x4 ^= u << 7 | u >>> 32 - 7;
          u = x4 + x0 | 0;
          x8 ^= u << 9 | u >>> 32 - 9;
          u = x8 + x4 | 0;
          x12 ^= u << 13 | u >>> 32 - 13;
          u = x12 + x8 | 0;
          x0 ^= u << 18 | u >>> 32 - 18;
          u = x5 + x1 | 0;
          x9 ^= u << 7 | u >>> 32 - 7;
          u = x9 + x5 | 0;
          x13 ^= u << 9 | u >>> 32 - 9;
          u = x13 + x9 | 0;
          x1 ^= u << 13 | u >>> 32 - 13;
          u = x1 + x13 | 0;
          x5 ^= u << 18 | u >>> 32 - 18;
          u = x10 + x6 | 0;
          x14 ^= u << 7 | u >>> 32 - 7;
          u = x14 + x10 | 0;
          x2 ^= u << 9 | u >>> 32 - 9;
          u = x2 + x14 | 0;
          x6 ^= u << 13 | u >>> 32 - 13;
          u = x6 + x2 | 0;
          x10 ^= u << 18 | u >>> 32 - 18;
          u = x15 + x11 | 0;
          x3 ^= u << 7 | u >>> 32 - 7;
          u = x3 + x15 | 0;
          x7 ^= u << 9 | u >>> 32 - 9;
          u = x7 + x3 | 0;
          x11 ^= u << 13 | u >>> 32 - 13;
          u = x11 + x7 | 0;
          x15 ^= u << 18 | u >>> 32 - 18;
          u = x0 + x3 | 0;
          x1 ^= u << 7 | u >>> 32 - 7;
          u = x1 + x0 | 0;
          x2 ^= u << 9 | u >>> 32 - 9;
          u = x2 + x1 | 0;
          x3 ^= u << 13 | u >>> 32 - 13;
          u = x3 + x2 | 0;
          x0 ^= u << 18 | u >>> 32 - 18;
          u = x5 + x4 | 0;
          x6 ^= u << 7 | u >>> 32 - 7;
          u = x6 + x5 | 0;
          x7 ^= u << 9 | u >>> 32 - 9;
          u = x7 + x6 | 0;
          x4 ^= u << 13 | u >>> 32 - 13;
          u = x4 + x7 | 0;
          x5 ^= u << 18 | u >>> 32 - 18;
          u = x10 + x9 | 0;
          x11 ^= u << 7 | u >>> 32 - 7;
          u = x11 + x10 | 0;
          x8 ^= u << 9 | u >>> 32 - 9;
          u = x8 + x11 | 0;
          x9 ^= u << 13 | u >>> 32 - 13;
          u = x9 + x8 | 0;
          x10 ^= u << 18 | u >>> 32 - 18;
          u = x15 + x14 | 0;
          x12 ^= u << 7 | u >>> 32 - 7;
          u = x12 + x15 | 0;
          x13 ^= u << 9 | u >>> 32 - 9;
          u = x13 + x12 | 0;
          x14 ^= u << 13 | u >>> 32 - 13;
          u = x14 + x13 | 0;
          x15 ^= u << 18 | u >>> 32 - 18;
        }
        x0 = x0 + j0 | 0;
        x1 = x1 + j1 | 0;
        x2 = x2 + j2 | 0;
        x3 = x3 + j3 | 0;
        x4 = x4 + j4 | 0;
        x5 = x5 + j5 | 0;
        x6 = x6 + j6 | 0;
        x7 = x7 + j7 | 0;
        x8 = x8 + j8 | 0;
        x9 = x9 + j9 | 0;
        x10 = x10 + j10 | 0;
        x11 = x11 + j11 | 0;
        x12 = x12 + j12 | 0;
        x13 = x13 + j13 | 0;
        x14 = x14 + j14 | 0;
        x15 = x15 + j15 | 0;
        o[0] = x0 >>> 0 & 255;
        o[1] = x0 >>> 8 & 255;
        o[2] = x0 >>> 16 & 255;
        o[3] = x0 >>> 24 & 255;
        o[4] = x1 >>> 0 & 255;
        o[5] = x1 >>> 8 & 255;
        o[6] = x1 >>> 16 & 255;
        o[7] = x1 >>> 24 & 255;
        o[8] = x2 >>> 0 & 255;
        o[9] = x2 >>> 8 & 255;
        o[10] = x2 >>> 16 & 255;
        o[11] = x2 >>> 24 & 255;
        o[12] = x3 >>> 0 & 255;
        o[13] = x3 >>> 8 & 255;
        o[14] = x3 >>> 16 & 255;
        o[15] = x3 >>> 24 & 255;
        o[16] = x4 >>> 0 & 255;
        o[17] = x4 >>> 8 & 255;
        o[18] = x4 >>> 16 & 255;
        o[19] = x4 >>> 24 & 255;
        o[20] = x5 >>> 0 & 255;
        o[21] = x5 >>> 8 & 255;
        o[22] = x5 >>> 16 & 255;
        o[23] = x5 >>> 24 & 255;
        o[24] = x6 >>> 0 & 255;
        o[25] = x6 >>> 8 & 255;
        o[26] = x6 >>> 16 & 255;
        o[27] = x6 >>> 24 & 255;
        o[28] = x7 >>> 0 & 255;
        o[29] = x7 >>> 8 & 255;
        o[30] = x7 >>> 16 & 255;
        o[31] = x7 >>> 24 & 255;
        o[32] = x8 >>> 0 & 255;
        o[33] = x8 >>> 8 & 255;
        o[34] = x8 >>> 16 & 255;
        o[35] = x8 >>> 24 & 255;
        o[36] = x9 >>> 0 & 255;
        o[37] = x9 >>> 8 & 255;
        o[38] = x9 >>> 16 & 255;
        o[39] = x9 >>> 24 & 255;
        o[40] = x10 >>> 0 & 255;
        o[41] = x10 >>> 8 & 255;
        o[42] = x10 >>> 16 & 255;
        o[43] = x10 >>> 24 & 255;
        o[44] = x11 >>> 0 & 255;
        o[45] = x11 >>> 8 & 255;
        o[46] = x11 >>> 16 & 255;
        o[47] = x11 >>> 24 & 255;
        o[48] = x12 >>> 0 & 255;
        o[49] = x12 >>> 8 & 255;
        o[50] = x12 >>> 16 & 255;
        o[51] = x12 >>> 24 & 255;
        o[52] = x13 >>> 0 & 255;
        o[53] = x13 >>> 8 & 255;
        o[54] = x13 >>> 16 & 255;
        o[55] = x13 >>> 24 & 255;
        o[56] = x14 >>> 0 & 255;
        o[57] = x14 >>> 8 & 255;
        o[58] = x14 >>> 16 & 255;
        o[59] = x14 >>> 24 & 255;
        o[60] = x15 >>> 0 & 255;
        o[61] = x15 >>> 8 & 255;
        o[62] = x15 >>> 16 & 255;
        o[63] = x15 >>> 24 & 255;
      }
      function core_hsalsa20(o, p, k, c) {
        var j0 = c[0] & 255 | (c[1] & 255) << 8 | (c[2] & 255) << 16 | (c[3] & 255) << 24, j1 = k[0] & 255 | (k[1] & 255) << 8 | (k[2] & 255) << 16 | (k[3] & 255) << 24, j2 = k[4] & 255 | (k[5] & 255) << 8 | (k[6] & 255) << 16 | (k[7] & 255) << 24, j3 = k[8] & 255 | (k[9] & 255) << 8 | (k[10] & 255) << 16 | (k[11] & 255) << 24, j4 = k[12] & 255 | (k[13] & 255) << 8 | (k[14] & 255) << 16 | (k[15] & 255) << 24, j5 = c[4] & 255 | (c[5] & 255) << 8 | (c[6] & 255) << 16 | (c[7] & 255) << 24, j6 = p[0] & 255 | (p[1] & 255) << 8 | (p[2] & 255) << 16 | (p[3] & 255) << 24, j7 = p[4] & 255 | (p[5] & 255) << 8 | (p[6] & 255) << 16 | (p[7] & 255) << 24, j8 = p[8] & 255 | (p[9] & 255) << 8 | (p[10] & 255) << 16 | (p[11] & 255) << 24, j9 = p[12] & 255 | (p[13] & 255) << 8 | (p[14] & 255) << 16 | (p[15] & 255) << 24, j10 = c[8] & 255 | (c[9] & 255) << 8 | (c[10] & 255) << 16 | (c[11] & 255) << 24, j11 = k[16] & 255 | (k[17] & 255) << 8 | (k[18] & 255) << 16 | (k[19] & 255) << 24, j12 = k[20] & 255 | (k[21] & 255) << 8 | (k[22] & 255) << 16 | (k[23] & 255) << 24, j13 = k[24] & 255 | (k[25] & 255) << 8 | (k[26] & 255) << 16 | (k[27] & 255) << 24, j14 = k[28] & 255 | (k[29] & 255) << 8 | (k[30] & 255) << 16 | (k[31] & 255) << 24, j15 = c[12] & 255 | (c[13] & 255) << 8 | (c[14] & 255) << 16 | (c[15] & 255) << 24;
        var x0 = j0, x1 = j1, x2 = j2, x3 = j3, x4 = j4, x5 = j5, x6 = j6, x7 = j7, x8 = j8, x9 = j9, x10 = j10, x11 = j11, x12 = j12, x13 = j13, x14 = j14, x15 = j15, u;
        for (var i = 0; i < 20; i += 2) {
          u = x0 + x12 | 0;
          x4 ^= u << 7 | u >>> 32 - 7;
          u = x4 + x0 | 0;
          x8 ^= u << 9 | u >>> 32 - 9;
          u = x8 + x4 | 0;
          x12 ^= u << 13 | u >>> 32 - 13;
          u = x12 + x8 | 0;
          x0 ^= u << 18 | u >>> 32 - 18;
          u = x5 + x1 | 0;
          x9 ^= u << 7 | u >>> 32 - 7;
          u = x9 + x5 | 0;
          x13 ^= u << 9 | u >>> 32 - 9;
          u = x13 + x9 | 0;
          x1 ^= u << 13 | u >>> 32 - 13;
          u = x1 + x13 | 0;
          x5 ^= u << 18 | u >>> 32 - 18;
          u = x10 + x6 | 0;
          x14 ^= u << 7 | u >>> 32 - 7;
          u = x14 + x10 | 0;
          x2 ^= u << 9 | u >>> 32 - 9;
          u = x2 + x14 | 0;
          x6 ^= u << 13 | u >>> 32 - 13;
          u = x6 + x2 | 0;
          x10 ^= u << 18 | u >>> 32 - 18;
          u = x15 + x11 | 0;
          x3 ^= u << 7 | u >>> 32 - 7;
          u = x3 + x15 | 0;
          x7 ^= u << 9 | u >>> 32 - 9;
          u = x7 + x3 | 0;
          x11 ^= u << 13 | u >>> 32 - 13;
          u = x11 + x7 | 0;
          x15 ^= u << 18 | u >>> 32 - 18;
          u = x0 + x3 | 0;
          x1 ^= u << 7 | u >>> 32 - 7;
          u = x1 + x0 | 0;
          x2 ^= u << 9 | u >>> 32 - 9;
          u = x2 + x1 | 0;
          x3 ^= u << 13 | u >>> 32 - 13;
          u = x3 + x2 | 0;
          x0 ^= u << 18 | u >>> 32 - 18;
          u = x5 + x4 | 0;
          x6 ^= u << 7 | u >>> 32 - 7;
          u = x6 + x5 | 0;
          x7 ^= u << 9 | u >>> 32 - 9;
          u = x7 + x6 | 0;
          x4 ^= u << 13 | u >>> 32 - 13;
          u = x4 + x7 | 0;
          x5 ^= u << 18 | u >>> 32 - 18;
          u = x10 + x9 | 0;
          x11 ^= u << 7 | u >>> 32 - 7;
          u = x11 + x10 | 0;
          x8 ^= u << 9 | u >>> 32 - 9;
          u = x8 + x11 | 0;
          x9 ^= u << 13 | u >>> 32 - 13;
          u = x9 + x8 | 0;
          x10 ^= u << 18 | u >>> 32 - 18;
          u = x15 + x14 | 0;
          x12 ^= u << 7 | u >>> 32 - 7;
          u = x12 + x15 | 0;
          x13 ^= u << 9 | u >>> 32 - 9;
          u = x13 + x12 | 0;
          x14 ^= u << 13 | u >>> 32 - 13;
          u = x14 + x13 | 0;
          x15 ^= u << 18 | u >>> 32 - 18;
        }
        o[0] = x0 >>> 0 & 255;
        o[1] = x0 >>> 8 & 255;
        o[2] = x0 >>> 16 & 255;
        o[3] = x0 >>> 24 & 255;
        o[4] = x5 >>> 0 & 255;
        o[5] = x5 >>> 8 & 255;
        o[6] = x5 >>> 16 & 255;
        o[7] = x5 >>> 24 & 255;
        o[8] = x10 >>> 0 & 255;
        o[9] = x10 >>> 8 & 255;
        o[10] = x10 >>> 16 & 255;
        o[11] = x10 >>> 24 & 255;
        o[12] = x15 >>> 0 & 255;
        o[13] = x15 >>> 8 & 255;
        o[14] = x15 >>> 16 & 255;
        o[15] = x15 >>> 24 & 255;
        o[16] = x6 >>> 0 & 255;
        o[17] = x6 >>> 8 & 255;
        o[18] = x6 >>> 16 & 255;
        o[19] = x6 >>> 24 & 255;
        o[20] = x7 >>> 0 & 255;
        o[21] = x7 >>> 8 & 255;
        o[22] = x7 >>> 16 & 255;
        o[23] = x7 >>> 24 & 255;
        o[24] = x8 >>> 0 & 255;
        o[25] = x8 >>> 8 & 255;
        o[26] = x8 >>> 16 & 255;
        o[27] = x8 >>> 24 & 255;
        o[28] = x9 >>> 0 & 255;
        o[29] = x9 >>> 8 & 255;
        o[30] = x9 >>> 16 & 255;
        o[31] = x9 >>> 24 & 255;
      }
      function crypto_core_salsa20(out, inp, k, c) {
        core_salsa20(out, inp, k, c);
      }
      function crypto_core_hsalsa20(out, inp, k, c) {
        core_hsalsa20(out, inp, k, c);
      }
      var sigma = new Uint8Array([101, 120, 112, 97, 110, 100, 32, 51, 50, 45, 98, 121, 116, 101, 32, 107]);
      function crypto_stream_salsa20_xor(c, cpos, m, mpos, b, n, k) {
        var z = new Uint8Array(16), x = new Uint8Array(64);
        var u, i;
        for (i = 0; i < 16; i++) z[i] = 0;
        for (i = 0; i < 8; i++) z[i] = n[i];
        while (b >= 64) {
          crypto_core_salsa20(x, z, k, sigma);
          for (i = 0; i < 64; i++) c[cpos + i] = m[mpos + i] ^ x[i];
          u = 1;
          for (i = 8; i < 16; i++) {
            u = u + (z[i] & 255) | 0;
            z[i] = u & 255;
            u >>>= 8;
          }
          b -= 64;
          cpos += 64;
          mpos += 64;
        }
        if (b > 0) {
          crypto_core_salsa20(x, z, k, sigma);
          for (i = 0; i < b; i++) c[cpos + i] = m[mpos + i] ^ x[i];
        }
        return 0;
      }
      function crypto_stream_salsa20(c, cpos, b, n, k) {
        var z = new Uint8Array(16), x = new Uint8Array(64);
        var u, i;
        for (i = 0; i < 16; i++) z[i] = 0;
        for (i = 0; i < 8; i++) z[i] = n[i];
        while (b >= 64) {
          crypto_core_salsa20(x, z, k, sigma);
          for (i = 0; i < 64; i++) c[cpos + i] = x[i];
          u = 1;
          for (i = 8; i < 16; i++) {
            u = u + (z[i] & 255) | 0;
            z[i] = u & 255;
            u >>>= 8;
          }
          b -= 64;
          cpos += 64;
        }
        if (b > 0) {
          crypto_core_salsa20(x, z, k, sigma);
          for (i = 0; i < b; i++) c[cpos + i] = x[i];
        }
        return 0;
      }
      function crypto_stream(c, cpos, d, n, k) {
        var s = new Uint8Array(32);
        crypto_core_hsalsa20(s, n, k, sigma);
        var sn = new Uint8Array(8);
        for (var i = 0; i < 8; i++) sn[i] = n[i + 16];
        return crypto_stream_salsa20(c, cpos, d, sn, s);
      }
      function crypto_stream_xor(c, cpos, m, mpos, d, n, k) {
        var s = new Uint8Array(32);
        crypto_core_hsalsa20(s, n, k, sigma);
        var sn = new Uint8Array(8);
        for (var i = 0; i < 8; i++) sn[i] = n[i + 16];
        return crypto_stream_salsa20_xor(c, cpos, m, mpos, d, sn, s);
      }
      var poly1305 = function(key) {
        this.buffer = new Uint8Array(16);
        this.r = new Uint16Array(10);
        this.h = new Uint16Array(10);
        this.pad = new Uint16Array(8);
        this.leftover = 0;
        this.fin = 0;
        var t0, t1, t2, t3, t4, t5, t6, t7;
        t0 = key[0] & 255 | (key[1] & 255) << 8;
        this.r[0] = t0 & 8191;
        t1 = key[2] & 255 | (key[3] & 255) << 8;
        this.r[1] = (t0 >>> 13 | t1 << 3) & 8191;
        t2 = key[4] & 255 | (key[5] & 255) << 8;
        this.r[2] = (t1 >>> 10 | t2 << 6) & 7939;
        t3 = key[6] & 255 | (key[7] & 255) << 8;
        this.r[3] = (t2 >>> 7 | t3 << 9) & 8191;
        t4 = key[8] & 255 | (key[9] & 255) << 8;
        this.r[4] = (t3 >>> 4 | t4 << 12) & 255;
        this.r[5] = t4 >>> 1 & 8190;
        t5 = key[10] & 255 | (key[11] & 255) << 8;
        this.r[6] = (t4 >>> 14 | t5 << 2) & 8191;
        t6 = key[12] & 255 | (key[13] & 255) << 8;
        this.r[7] = (t5 >>> 11 | t6 << 5) & 8065;
        t7 = key[14] & 255 | (key[15] & 255) << 8;
        this.r[8] = (t6 >>> 8 | t7 << 8) & 8191;
        this.r[9] = t7 >>> 5 & 127;
        this.pad[0] = key[16] & 255 | (key[17] & 255) << 8;
        this.pad[1] = key[18] & 255 | (key[19] & 255) << 8;
        this.pad[2] = key[20] & 255 | (key[21] & 255) << 8;
        this.pad[3] = key[22] & 255 | (key[23] & 255) << 8;
        this.pad[4] = key[24] & 255 | (key[25] & 255) << 8;
        this.pad[5] = key[26] & 255 | (key[27] & 255) << 8;
        this.pad[6] = key[28] & 255 | (key[29] & 255) << 8;
        this.pad[7] = key[30] & 255 | (key[31] & 255) << 8;
      };
      poly1305.prototype.blocks = function(m, mpos, bytes) {
        var hibit = this.fin ? 0 : 1 << 11;
        var t0, t1, t2, t3, t4, t5, t6, t7, c;
        var d0, d1, d2, d3, d4, d5, d6, d7, d8, d9;
        var h0 = this.h[0], h1 = this.h[1], h2 = this.h[2], h3 = this.h[3], h4 = this.h[4], h5 = this.h[5], h6 = this.h[6], h7 = this.h[7], h8 = this.h[8], h9 = this.h[9];
        var r0 = this.r[0], r1 = this.r[1], r2 = this.r[2], r3 = this.r[3], r4 = this.r[4], r5 = this.r[5], r6 = this.r[6], r7 = this.r[7], r8 = this.r[8], r9 = this.r[9];
        while (bytes >= 16) {
          t0 = m[mpos + 0] & 255 | (m[mpos + 1] & 255) << 8;
          h0 += t0 & 8191;
          t1 = m[mpos + 2] & 255 | (m[mpos + 3] & 255) << 8;
          h1 += (t0 >>> 13 | t1 << 3) & 8191;
          t2 = m[mpos + 4] & 255 | (m[mpos + 5] & 255) << 8;
          h2 += (t1 >>> 10 | t2 << 6) & 8191;
          t3 = m[mpos + 6] & 255 | (m[mpos + 7] & 255) << 8;
          h3 += (t2 >>> 7 | t3 << 9) & 8191;
          t4 = m[mpos + 8] & 255 | (m[mpos + 9] & 255) << 8;
          h4 += (t3 >>> 4 | t4 << 12) & 8191;
          h5 += t4 >>> 1 & 8191;
          t5 = m[mpos + 10] & 255 | (m[mpos + 11] & 255) << 8;
          h6 += (t4 >>> 14 | t5 << 2) & 8191;
          t6 = m[mpos + 12] & 255 | (m[mpos + 13] & 255) << 8;
          h7 += (t5 >>> 11 | t6 << 5) & 8191;
          t7 = m[mpos + 14] & 255 | (m[mpos + 15] & 255) << 8;
          h8 += (t6 >>> 8 | t7 << 8) & 8191;
          h9 += t7 >>> 5 | hibit;
          c = 0;
          d0 = c;
          d0 += h0 * r0;
          d0 += h1 * (5 * r9);
          d0 += h2 * (5 * r8);
          d0 += h3 * (5 * r7);
          d0 += h4 * (5 * r6);
          c = d0 >>> 13;
          d0 &= 8191;
          d0 += h5 * (5 * r5);
          d0 += h6 * (5 * r4);
          d0 += h7 * (5 * r3);
          d0 += h8 * (5 * r2);
          d0 += h9 * (5 * r1);
          c += d0 >>> 13;
          d0 &= 8191;
          d1 = c;
          d1 += h0 * r1;
          d1 += h1 * r0;
          d1 += h2 * (5 * r9);
          d1 += h3 * (5 * r8);
          d1 += h4 * (5 * r7);
          c = d1 >>> 13;
          d1 &= 8191;
          d1 += h5 * (5 * r6);
          d1 += h6 * (5 * r5);
          d1 += h7 * (5 * r4);
          d1 += h8 * (5 * r3);
          d1 += h9 * (5 * r2);
          c += d1 >>> 13;
          d1 &= 8191;
          d2 = c;
          d2 += h0 * r2;
          d2 += h1 * r1;
          d2 += h2 * r0;
          d2 += h3 * (5 * r9);
          d2 += h4 * (5 * r8);
          c = d2 >>> 13;
          d2 &= 8191;
          d2 += h5 * (5 * r7);
          d2 += h6 * (5 * r6);
          d2 += h7 * (5 * r5);
          d2 += h8 * (5 * r4);
          d2 += h9 * (5 * r3);
          c += d2 >>> 13;
          d2 &= 8191;
          d3 = c;
          d3 += h0 * r3;
          d3 += h1 * r2;
          d3 += h2 * r1;
          d3 += h3 * r0;
          d3 += h4 * (5 * r9);
          c = d3 >>> 13;
          d3 &= 8191;
          d3 += h5 * (5 * r8);
          d3 += h6 * (5 * r7);
          d3 += h7 * (5 * r6);
          d3 += h8 * (5 * r5);
          d3 += h9 * (5 * r4);
          c += d3 >>> 13;
          d3 &= 8191;
          d4 = c;
          d4 += h0 * r4;
          d4 += h1 * r3;
          d4 += h2 * r2;
          d4 += h3 * r1;
          d4 += h4 * r0;
          c = d4 >>> 13;
          d4 &= 8191;
          d4 += h5 * (5 * r9);
          d4 += h6 * (5 * r8);
          d4 += h7 * (5 * r7);
          d4 += h8 * (5 * r6);
          d4 += h9 * (5 * r5);
          c += d4 >>> 13;
          d4 &= 8191;
          d5 = c;
          d5 += h0 * r5;
          d5 += h1 * r4;
          d5 += h2 * r3;
          d5 += h3 * r2;
          d5 += h4 * r1;
          c = d5 >>> 13;
          d5 &= 8191;
          d5 += h5 * r0;
          d5 += h6 * (5 * r9);
          d5 += h7 * (5 * r8);
          d5 += h8 * (5 * r7);
          d5 += h9 * (5 * r6);
          c += d5 >>> 13;
          d5 &= 8191;
          d6 = c;
          d6 += h0 * r6;
          d6 += h1 * r5;
          d6 += h2 * r4;
          d6 += h3 * r3;
          d6 += h4 * r2;
          c = d6 >>> 13;
          d6 &= 8191;
          d6 += h5 * r1;
          d6 += h6 * r0;
          d6 += h7 * (5 * r9);
          d6 += h8 * (5 * r8);
          d6 += h9 * (5 * r7);
          c += d6 >>> 13;
          d6 &= 8191;
          d7 = c;
          d7 += h0 * r7;
          d7 += h1 * r6;
          d7 += h2 * r5;
          d7 += h3 * r4;
          d7 += h4 * r3;
          c = d7 >>> 13;
          d7 &= 8191;
          d7 += h5 * r2;
          d7 += h6 * r1;
          d7 += h7 * r0;
          d7 += h8 * (5 * r9);
          d7 += h9 * (5 * r8);
          c += d7 >>> 13;
          d7 &= 8191;
          d8 = c;
          d8 += h0 * r8;
          d8 += h1 * r7;
          d8 += h2 * r6;
          d8 += h3 * r5;
          d8 += h4 * r4;
          c = d8 >>> 13;
          d8 &= 8191;
          d8 += h5 * r3;
          d8 += h6 * r2;
          d8 += h7 * r1;
          d8 += h8 * r0;
          d8 += h9 * (5 * r9);
          c += d8 >>> 13;
          d8 &= 8191;
          d9 = c;
          d9 += h0 * r9;
          d9 += h1 * r8;
          d9 += h2 * r7;
          d9 += h3 * r6;
          d9 += h4 * r5;
          c = d9 >>> 13;
          d9 &= 8191;
          d9 += h5 * r4;
          d9 += h6 * r3;
          d9 += h7 * r2;
          d9 += h8 * r1;
          d9 += h9 * r0;
          c += d9 >>> 13;
          d9 &= 8191;
          c = (c << 2) + c | 0;
          c = c + d0 | 0;
          d0 = c & 8191;
          c = c >>> 13;
          d1 += c;
          h0 = d0;
          h1 = d1;
          h2 = d2;
          h3 = d3;
          h4 = d4;
          h5 = d5;
          h6 = d6;
          h7 = d7;
          h8 = d8;
          h9 = d9;
          mpos += 16;
          bytes -= 16;
        }
        this.h[0] = h0;
        this.h[1] = h1;
        this.h[2] = h2;
        this.h[3] = h3;
        this.h[4] = h4;
        this.h[5] = h5;
        this.h[6] = h6;
        this.h[7] = h7;
        this.h[8] = h8;
        this.h[9] = h9;
      };
      poly1305.prototype.finish = function(mac, macpos) {
        var g = new Uint16Array(10);
        var c, mask, f, i;
        if (this.leftover) {
          i = this.leftover;
          this.buffer[i++] = 1;
          for (; i < 16; i++) this.buffer[i] = 0;
          this.fin = 1;
          this.blocks(this.buffer, 0, 16);
        }
        c = this.h[1] >>> 13;
        this.h[1] &= 8191;
        for (i = 2; i < 10; i++) {
          this.h[i] += c;
          c = this.h[i] >>> 13;
          this.h[i] &= 8191;
        }
        this.h[0] += c * 5;
        c = this.h[0] >>> 13;
        this.h[0] &= 8191;
        this.h[1] += c;
        c = this.h[1] >>> 13;
        this.h[1] &= 8191;
        this.h[2] += c;
        g[0] = this.h[0] + 5;
        c = g[0] >>> 13;
        g[0] &= 8191;
        for (i = 1; i < 10; i++) {
          g[i] = this.h[i] + c;
          c = g[i] >>> 13;
          g[i] &= 8191;
        }
        g[9] -= 1 << 13;
        mask = (c ^ 1) - 1;
        for (i = 0; i < 10; i++) g[i] &= mask;
        mask = ~mask;
        for (i = 0; i < 10; i++) this.h[i] = this.h[i] & mask | g[i];
        this.h[0] = (this.h[0] | this.h[1] << 13) & 65535;
        this.h[1] = (this.h[1] >>> 3 | this.h[2] << 10) & 65535;
        this.h[2] = (this.h[2] >>> 6 | this.h[3] << 7) & 65535;
        this.h[3] = (this.h[3] >>> 9 | this.h[4] << 4) & 65535;
        this.h[4] = (this.h[4] >>> 12 | this.h[5] << 1 | this.h[6] << 14) & 65535;
        this.h[5] = (this.h[6] >>> 2 | this.h[7] << 11) & 65535;
        this.h[6] = (this.h[7] >>> 5 | this.h[8] << 8) & 65535;
        this.h[7] = (this.h[8] >>> 8 | this.h[9] << 5) & 65535;
        f = this.h[0] + this.pad[0];
        this.h[0] = f & 65535;
        for (i = 1; i < 8; i++) {
          f = (this.h[i] + this.pad[i] | 0) + (f >>> 16) | 0;
          this.h[i] = f & 65535;
        }
        mac[macpos + 0] = this.h[0] >>> 0 & 255;
        mac[macpos + 1] = this.h[0] >>> 8 & 255;
        mac[macpos + 2] = this.h[1] >>> 0 & 255;
        mac[macpos + 3] = this.h[1] >>> 8 & 255;
        mac[macpos + 4] = this.h[2] >>> 0 & 255;
        mac[macpos + 5] = this.h[2] >>> 8 & 255;
        mac[macpos + 6] = this.h[3] >>> 0 & 255;
        mac[macpos + 7] = this.h[3] >>> 8 & 255;
        mac[macpos + 8] = this.h[4] >>> 0 & 255;
        mac[macpos + 9] = this.h[4] >>> 8 & 255;
        mac[macpos + 10] = this.h[5] >>> 0 & 255;
        mac[macpos + 11] = this.h[5] >>> 8 & 255;
        mac[macpos + 12] = this.h[6] >>> 0 & 255;
        mac[macpos + 13] = this.h[6] >>> 8 & 255;
        mac[macpos + 14] = this.h[7] >>> 0 & 255;
        mac[macpos + 15] = this.h[7] >>> 8 & 255;
      };
      poly1305.prototype.update = function(m, mpos, bytes) {
        var i, want;
        if (this.leftover) {
          want = 16 - this.leftover;
          if (want > bytes)
            want = bytes;
          for (i = 0; i < want; i++)
            this.buffer[this.leftover + i] = m[mpos + i];
          bytes -= want;
          mpos += want;
          this.leftover += want;
          if (this.leftover < 16)
            return;
          this.blocks(this.buffer, 0, 16);
          this.leftover = 0;
        }
        if (bytes >= 16) {
          want = bytes - bytes % 16;
          this.blocks(m, mpos, want);
          mpos += want;
          bytes -= want;
        }
        if (bytes) {
          for (i = 0; i < bytes; i++)
            this.buffer[this.leftover + i] = m[mpos + i];
          this.leftover += bytes;
        }
      };
      function crypto_onetimeauth(out, outpos, m, mpos, n, k) {
        var s = new poly1305(k);
        s.update(m, mpos, n);
        s.finish(out, outpos);
        return 0;
      }
      function crypto_onetimeauth_verify(h, hpos, m, mpos, n, k) {
        var x = new Uint8Array(16);
        crypto_onetimeauth(x, 0, m, mpos, n, k);
        return crypto_verify_16(h, hpos, x, 0);
      }
      function crypto_secretbox(c, m, d, n, k) {
        var i;
        if (d < 32) return -1;
        crypto_stream_xor(c, 0, m, 0, d, n, k);
        crypto_onetimeauth(c, 16, c, 32, d - 32, c);
        for (i = 0; i < 16; i++) c[i] = 0;
        return 0;
      }
      function crypto_secretbox_open(m, c, d, n, k) {
        var i;
        var x = new Uint8Array(32);
        if (d < 32) return -1;
        crypto_stream(x, 0, 32, n, k);
        if (crypto_onetimeauth_verify(c, 16, c, 32, d - 32, x) !== 0) return -1;
        crypto_stream_xor(m, 0, c, 0, d, n, k);
        for (i = 0; i < 32; i++) m[i] = 0;
        return 0;
      }
      function set25519(r, a) {
        var i;
        for (i = 0; i < 16; i++) r[i] = a[i] | 0;
      }
      function car25519(o) {
        var i, v, c = 1;
        for (i = 0; i < 16; i++) {
          v = o[i] + c + 65535;
          c = Math.floor(v / 65536);
          o[i] = v - c * 65536;
        }
        o[0] += c - 1 + 37 * (c - 1);
      }
      function sel25519(p, q, b) {
        var t, c = ~(b - 1);
        for (var i = 0; i < 16; i++) {
          t = c & (p[i] ^ q[i]);
          p[i] ^= t;
          q[i] ^= t;
        }
      }
      function pack25519(o, n) {
        var i, j, b;
        var m = gf(), t = gf();
        for (i = 0; i < 16; i++) t[i] = n[i];
        car25519(t);
        car25519(t);
        car25519(t);
        for (j = 0; j < 2; j++) {
          m[0] = t[0] - 65517;
          for (i = 1; i < 15; i++) {
            m[i] = t[i] - 65535 - (m[i - 1] >> 16 & 1);
            m[i - 1] &= 65535;
          }
          m[15] = t[15] - 32767 - (m[14] >> 16 & 1);
          b = m[15] >> 16 & 1;
          m[14] &= 65535;
          sel25519(t, m, 1 - b);
        }
        for (i = 0; i < 16; i++) {
          o[2 * i] = t[i] & 255;
          o[2 * i + 1] = t[i] >> 8;
        }
      }
      function neq25519(a, b) {
        var c = new Uint8Array(32), d = new Uint8Array(32);
        pack25519(c, a);
        pack25519(d, b);
        return crypto_verify_32(c, 0, d, 0);
      }
      function par25519(a) {
        var d = new Uint8Array(32);
        pack25519(d, a);
        return d[0] & 1;
      }
      function unpack25519(o, n) {
        var i;
        for (i = 0; i < 16; i++) o[i] = n[2 * i] + (n[2 * i + 1] << 8);
        o[15] &= 32767;
      }
      function A(o, a, b) {
        for (var i = 0; i < 16; i++) o[i] = a[i] + b[i];
      }
      function Z(o, a, b) {
        for (var i = 0; i < 16; i++) o[i] = a[i] - b[i];
      }
      function M(o, a, b) {
        var v, c, t0 = 0, t1 = 0, t2 = 0, t3 = 0, t4 = 0, t5 = 0, t6 = 0, t7 = 0, t8 = 0, t9 = 0, t10 = 0, t11 = 0, t12 = 0, t13 = 0, t14 = 0, t15 = 0, t16 = 0, t17 = 0, t18 = 0, t19 = 0, t20 = 0, t21 = 0, t22 = 0, t23 = 0, t24 = 0, t25 = 0, t26 = 0, t27 = 0, t28 = 0, t29 = 0, t30 = 0, b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3], b4 = b[4], b5 = b[5], b6 = b[6], b7 = b[7], b8 = b[8], b9 = b[9], b10 = b[10], b11 = b[11], b12 = b[12], b13 = b[13], b14 = b[14], b15 = b[15];
        v = a[0];
        t0 += v * b0;
        t1 += v * b1;
        t2 += v * b2;
        t3 += v * b3;
        t4 += v * b4;
        t5 += v * b5;
        t6 += v * b6;
        t7 += v * b7;
        t8 += v * b8;
        t9 += v * b9;
        t10 += v * b10;
        t11 += v * b11;
        t12 += v * b12;
        t13 += v * b13;
        t14 += v * b14;
        t15 += v * b15;
        v = a[1];
        t1 += v * b0;
        t2 += v * b1;
        t3 += v * b2;
        t4 += v * b3;
        t5 += v * b4;
        t6 += v * b5;
        t7 += v * b6;
        t8 += v * b7;
        t9 += v * b8;
        t10 += v * b9;
        t11 += v * b10;
        t12 += v * b11;
        t13 += v * b12;
        t14 += v * b13;
        t15 += v * b14;
        t16 += v * b15;
        v = a[2];
        t2 += v * b0;
        t3 += v * b1;
        t4 += v * b2;
        t5 += v * b3;
        t6 += v * b4;
        t7 += v * b5;
        t8 += v * b6;
        t9 += v * b7;
        t10 += v * b8;
        t11 += v * b9;
        t12 += v * b10;
        t13 += v * b11;
        t14 += v * b12;
        t15 += v * b13;
        t16 += v * b14;
        t17 += v * b15;
        v = a[3];
        t3 += v * b0;
        t4 += v * b1;
        t5 += v * b2;
        t6 += v * b3;
        t7 += v * b4;
        t8 += v * b5;
        t9 += v * b6;
        t10 += v * b7;
        t11 += v * b8;
        t12 += v * b9;
        t13 += v * b10;
        t14 += v * b11;
        t15 += v * b12;
        t16 += v * b13;
        t17 += v * b14;
        t18 += v * b15;
        v = a[4];
        t4 += v * b0;
        t5 += v * b1;
        t6 += v * b2;
        t7 += v * b3;
        t8 += v * b4;
        t9 += v * b5;
        t10 += v * b6;
        t11 += v * b7;
        t12 += v * b8;
        t13 += v * b9;
        t14 += v * b10;
        t15 += v * b11;
        t16 += v * b12;
        t17 += v * b13;
        t18 += v * b14;
        t19 += v * b15;
        v = a[5];
        t5 += v * b0;
        t6 += v * b1;
        t7 += v * b2;
        t8 += v * b3;
        t9 += v * b4;
        t10 += v * b5;
        t11 += v * b6;
        t12 += v * b7;
        t13 += v * b8;
        t14 += v * b9;
        t15 += v * b10;
        t16 += v * b11;
        t17 += v * b12;
        t18 += v * b13;
        t19 += v * b14;
        t20 += v * b15;
        v = a[6];
        t6 += v * b0;
        t7 += v * b1;
        t8 += v * b2;
        t9 += v * b3;
        t10 += v * b4;
        t11 += v * b5;
        t12 += v * b6;
        t13 += v * b7;
        t14 += v * b8;
        t15 += v * b9;
        t16 += v * b10;
        t17 += v * b11;
        t18 += v * b12;
        t19 += v * b13;
        t20 += v * b14;
        t21 += v * b15;
        v = a[7];
        t7 += v * b0;
        t8 += v * b1;
        t9 += v * b2;
        t10 += v * b3;
        t11 += v * b4;
        t12 += v * b5;
        t13 += v * b6;
        t14 += v * b7;
        t15 += v * b8;
        t16 += v * b9;
        t17 += v * b10;
        t18 += v * b11;
        t19 += v * b12;
        t20 += v * b13;
        t21 += v * b14;
        t22 += v * b15;
        v = a[8];
        t8 += v * b0;
        t9 += v * b1;
        t10 += v * b2;
        t11 += v * b3;
        t12 += v * b4;
        t13 += v * b5;
        t14 += v * b6;
        t15 += v * b7;
        t16 += v * b8;
        t17 += v * b9;
        t18 += v * b10;
        t19 += v * b11;
        t20 += v * b12;
        t21 += v * b13;
        t22 += v * b14;
        t23 += v * b15;
        v = a[9];
        t9 += v * b0;
        t10 += v * b1;
        t11 += v * b2;
        t12 += v * b3;
        t13 += v * b4;
        t14 += v * b5;
        t15 += v * b6;
        t16 += v * b7;
        t17 += v * b8;
        t18 += v * b9;
        t19 += v * b10;
        t20 += v * b11;
        t21 += v * b12;
        t22 += v * b13;
        t23 += v * b14;
        t24 += v * b15;
        v = a[10];
        t10 += v * b0;
        t11 += v * b1;
        t12 += v * b2;
        t13 += v * b3;
        t14 += v * b4;
        t15 += v * b5;
        t16 += v * b6;
        t17 += v * b7;
        t18 += v * b8;
        t19 += v * b9;
        t20 += v * b10;
        t21 += v * b11;
        t22 += v * b12;
        t23 += v * b13;
        t24 += v * b14;
        t25 += v * b15;
        v = a[11];
        t11 += v * b0;
        t12 += v * b1;
        t13 += v * b2;
        t14 += v * b3;
        t15 += v * b4;
        t16 += v * b5;
        t17 += v * b6;
        t18 += v * b7;
        t19 += v * b8;
        t20 += v * b9;
        t21 += v * b10;
        t22 += v * b11;
        t23 += v * b12;
        t24 += v * b13;
        t25 += v * b14;
        t26 += v * b15;
        v = a[12];
        t12 += v * b0;
        t13 += v * b1;
        t14 += v * b2;
        t15 += v * b3;
        t16 += v * b4;
        t17 += v * b5;
        t18 += v * b6;
        t19 += v * b7;
        t20 += v * b8;
        t21 += v * b9;
        t22 += v * b10;
        t23 += v * b11;
        t24 += v * b12;
        t25 += v * b13;
        t26 += v * b14;
        t27 += v * b15;
        v = a[13];
        t13 += v * b0;
        t14 += v * b1;
        t15 += v * b2;
        t16 += v * b3;
        t17 += v * b4;
        t18 += v * b5;
        t19 += v * b6;
        t20 += v * b7;
        t21 += v * b8;
        t22 += v * b9;
        t23 += v * b10;
        t24 += v * b11;
        t25 += v * b12;
        t26 += v * b13;
        t27 += v * b14;
        t28 += v * b15;
        v = a[14];
        t14 += v * b0;
        t15 += v * b1;
        t16 += v * b2;
        t17 += v * b3;
        t18 += v * b4;
        t19 += v * b5;
        t20 += v * b6;
        t21 += v * b7;
        t22 += v * b8;
        t23 += v * b9;
        t24 += v * b10;
        t25 += v * b11;
        t26 += v * b12;
        t27 += v * b13;
        t28 += v * b14;
        t29 += v * b15;
        v = a[15];
        t15 += v * b0;
        t16 += v * b1;
        t17 += v * b2;
        t18 += v * b3;
        t19 += v * b4;
        t20 += v * b5;
        t21 += v * b6;
        t22 += v * b7;
        t23 += v * b8;
        t24 += v * b9;
        t25 += v * b10;
        t26 += v * b11;
        t27 += v * b12;
        t28 += v * b13;
        t29 += v * b14;
        t30 += v * b15;
        t0 += 38 * t16;
        t1 += 38 * t17;
        t2 += 38 * t18;
        t3 += 38 * t19;
        t4 += 38 * t20;
        t5 += 38 * t21;
        t6 += 38 * t22;
        t7 += 38 * t23;
        t8 += 38 * t24;
        t9 += 38 * t25;
        t10 += 38 * t26;
        t11 += 38 * t27;
        t12 += 38 * t28;
        t13 += 38 * t29;
        t14 += 38 * t30;
        c = 1;
        v = t0 + c + 65535;
        c = Math.floor(v / 65536);
        t0 = v - c * 65536;
        v = t1 + c + 65535;
        c = Math.floor(v / 65536);
        t1 = v - c * 65536;
        v = t2 + c + 65535;
        c = Math.floor(v / 65536);
        t2 = v - c * 65536;
        v = t3 + c + 65535;
        c = Math.floor(v / 65536);
        t3 = v - c * 65536;
        v = t4 + c + 65535;
        c = Math.floor(v / 65536);
        t4 = v - c * 65536;
        v = t5 + c + 65535;
        c = Math.floor(v / 65536);
        t5 = v - c * 65536;
        v = t6 + c + 65535;
        c = Math.floor(v / 65536);
        t6 = v - c * 65536;
        v = t7 + c + 65535;
        c = Math.floor(v / 65536);
        t7 = v - c * 65536;
        v = t8 + c + 65535;
        c = Math.floor(v / 65536);
        t8 = v - c * 65536;
        v = t9 + c + 65535;
        c = Math.floor(v / 65536);
        t9 = v - c * 65536;
        v = t10 + c + 65535;
        c = Math.floor(v / 65536);
        t10 = v - c * 65536;
        v = t11 + c + 65535;
        c = Math.floor(v / 65536);
        t11 = v - c * 65536;
        v = t12 + c + 65535;
        c = Math.floor(v / 65536);
        t12 = v - c * 65536;
        v = t13 + c + 65535;
        c = Math.floor(v / 65536);
        t13 = v - c * 65536;
        v = t14 + c + 65535;
        c = Math.floor(v / 65536);
        t14 = v - c * 65536;
        v = t15 + c + 65535;
        c = Math.floor(v / 65536);
        t15 = v - c * 65536;
        t0 += c - 1 + 37 * (c - 1);
        c = 1;
        v = t0 + c + 65535;
        c = Math.floor(v / 65536);
        t0 = v - c * 65536;
        v = t1 + c + 65535;
        c = Math.floor(v / 65536);
        t1 = v - c * 65536;
        v = t2 + c + 65535;
        c = Math.floor(v / 65536);
        t2 = v - c * 65536;
        v = t3 + c + 65535;
        c = Math.floor(v / 65536);
        t3 = v - c * 65536;
        v = t4 + c + 65535;
        c = Math.floor(v / 65536);
        t4 = v - c * 65536;
        v = t5 + c + 65535;
        c = Math.floor(v / 65536);
        t5 = v - c * 65536;
        v = t6 + c + 65535;
        c = Math.floor(v / 65536);
        t6 = v - c * 65536;
        v = t7 + c + 65535;
        c = Math.floor(v / 65536);
        t7 = v - c * 65536;
        v = t8 + c + 65535;
        c = Math.floor(v / 65536);
        t8 = v - c * 65536;
        v = t9 + c + 65535;
        c = Math.floor(v / 65536);
        t9 = v - c * 65536;
        v = t10 + c + 65535;
        c = Math.floor(v / 65536);
        t10 = v - c * 65536;
        v = t11 + c + 65535;
        c = Math.floor(v / 65536);
        t11 = v - c * 65536;
        v = t12 + c + 65535;
        c = Math.floor(v / 65536);
        t12 = v - c * 65536;
        v = t13 + c + 65535;
        c = Math.floor(v / 65536);
        t13 = v - c * 65536;
        v = t14 + c + 65535;
        c = Math.floor(v / 65536);
        t14 = v - c * 65536;
        v = t15 + c + 65535;
        c = Math.floor(v / 65536);
        t15 = v - c * 65536;
        t0 += c - 1 + 37 * (c - 1);
        o[0] = t0;
        o[1] = t1;
        o[2] = t2;
        o[3] = t3;
        o[4] = t4;
        o[5] = t5;
        o[6] = t6;
        o[7] = t7;
        o[8] = t8;
        o[9] = t9;
        o[10] = t10;
        o[11] = t11;
        o[12] = t12;
        o[13] = t13;
        o[14] = t14;
        o[15] = t15;
      }
      function S(o, a) {
        M(o, a, a);
      }
      function inv25519(o, i) {
        var c = gf();
        var a;
        for (a = 0; a < 16; a++) c[a] = i[a];
        for (a = 253; a >= 0; a--) {
          S(c, c);
          if (a !== 2 && a !== 4) M(c, c, i);
        }
        for (a = 0; a < 16; a++) o[a] = c[a];
      }
      function pow2523(o, i) {
        var c = gf();
        var a;
        for (a = 0; a < 16; a++) c[a] = i[a];
        for (a = 250; a >= 0; a--) {
          S(c, c);
          if (a !== 1) M(c, c, i);
        }
        for (a = 0; a < 16; a++) o[a] = c[a];
      }
      function crypto_scalarmult(q, n, p) {
        var z = new Uint8Array(32);
        var x = new Float64Array(80), r, i;
        var a = gf(), b = gf(), c = gf(), d = gf(), e = gf(), f = gf();
        for (i = 0; i < 31; i++) z[i] = n[i];
        z[31] = n[31] & 127 | 64;
        z[0] &= 248;
        unpack25519(x, p);
        for (i = 0; i < 16; i++) {
          b[i] = x[i];
          d[i] = a[i] = c[i] = 0;
        }
        a[0] = d[0] = 1;
        for (i = 254; i >= 0; --i) {
          r = z[i >>> 3] >>> (i & 7) & 1;
          sel25519(a, b, r);
          sel25519(c, d, r);
          A(e, a, c);
          Z(a, a, c);
          A(c, b, d);
          Z(b, b, d);
          S(d, e);
          S(f, a);
          M(a, c, a);
          M(c, b, e);
          A(e, a, c);
          Z(a, a, c);
          S(b, a);
          Z(c, d, f);
          M(a, c, _121665);
          A(a, a, d);
          M(c, c, a);
          M(a, d, f);
          M(d, b, x);
          S(b, e);
          sel25519(a, b, r);
          sel25519(c, d, r);
        }
        for (i = 0; i < 16; i++) {
          x[i + 16] = a[i];
          x[i + 32] = c[i];
          x[i + 48] = b[i];
          x[i + 64] = d[i];
        }
        var x32 = x.subarray(32);
        var x16 = x.subarray(16);
        inv25519(x32, x32);
        M(x16, x16, x32);
        pack25519(q, x16);
        return 0;
      }
      function crypto_scalarmult_base(q, n) {
        return crypto_scalarmult(q, n, _9);
      }
      function crypto_box_keypair(y, x) {
        randombytes(x, 32);
        return crypto_scalarmult_base(y, x);
      }
      function crypto_box_beforenm(k, y, x) {
        var s = new Uint8Array(32);
        crypto_scalarmult(s, x, y);
        return crypto_core_hsalsa20(k, _0, s, sigma);
      }
      var crypto_box_afternm = crypto_secretbox;
      var crypto_box_open_afternm = crypto_secretbox_open;
      function crypto_box(c, m, d, n, y, x) {
        var k = new Uint8Array(32);
        crypto_box_beforenm(k, y, x);
        return crypto_box_afternm(c, m, d, n, k);
      }
      function crypto_box_open(m, c, d, n, y, x) {
        var k = new Uint8Array(32);
        crypto_box_beforenm(k, y, x);
        return crypto_box_open_afternm(m, c, d, n, k);
      }
      var K = [
        1116352408,
        3609767458,
        1899447441,
        602891725,
        3049323471,
        3964484399,
        3921009573,
        2173295548,
        961987163,
        4081628472,
        1508970993,
        3053834265,
        2453635748,
        2937671579,
        2870763221,
        3664609560,
        3624381080,
        2734883394,
        310598401,
        1164996542,
        607225278,
        1323610764,
        1426881987,
        3590304994,
        1925078388,
        4068182383,
        2162078206,
        991336113,
        2614888103,
        633803317,
        3248222580,
        3479774868,
        3835390401,
        2666613458,
        4022224774,
        944711139,
        264347078,
        2341262773,
        604807628,
        2007800933,
        770255983,
        1495990901,
        1249150122,
        1856431235,
        1555081692,
        3175218132,
        1996064986,
        2198950837,
        2554220882,
        3999719339,
        2821834349,
        766784016,
        2952996808,
        2566594879,
        3210313671,
        3203337956,
        3336571891,
        1034457026,
        3584528711,
        2466948901,
        113926993,
        3758326383,
        338241895,
        168717936,
        666307205,
        1188179964,
        773529912,
        1546045734,
        1294757372,
        1522805485,
        1396182291,
        2643833823,
        1695183700,
        2343527390,
        1986661051,
        1014477480,
        2177026350,
        1206759142,
        2456956037,
        344077627,
        2730485921,
        1290863460,
        2820302411,
        3158454273,
        3259730800,
        3505952657,
        3345764771,
        106217008,
        3516065817,
        3606008344,
        3600352804,
        1432725776,
        4094571909,
        1467031594,
        275423344,
        851169720,
        430227734,
        3100823752,
        506948616,
        1363258195,
        659060556,
        3750685593,
        883997877,
        3785050280,
        958139571,
        3318307427,
        1322822218,
        3812723403,
        1537002063,
        2003034995,
        1747873779,
        3602036899,
        1955562222,
        1575990012,
        2024104815,
        1125592928,
        2227730452,
        2716904306,
        2361852424,
        442776044,
        2428436474,
        593698344,
        2756734187,
        3733110249,
        3204031479,
        2999351573,
        3329325298,
        3815920427,
        3391569614,
        3928383900,
        3515267271,
        566280711,
        3940187606,
        3454069534,
        4118630271,
        4000239992,
        116418474,
        1914138554,
        174292421,
        2731055270,
        289380356,
        3203993006,
        460393269,
        320620315,
        685471733,
        587496836,
        852142971,
        1086792851,
        1017036298,
        365543100,
        1126000580,
        2618297676,
        1288033470,
        3409855158,
        1501505948,
        4234509866,
        1607167915,
        987167468,
        1816402316,
        1246189591
      ];
      function crypto_hashblocks_hl(hh, hl, m, n) {
        var wh = new Int32Array(16), wl = new Int32Array(16), bh0, bh1, bh2, bh3, bh4, bh5, bh6, bh7, bl0, bl1, bl2, bl3, bl4, bl5, bl6, bl7, th, tl, i, j, h, l, a, b, c, d;
        var ah0 = hh[0], ah1 = hh[1], ah2 = hh[2], ah3 = hh[3], ah4 = hh[4], ah5 = hh[5], ah6 = hh[6], ah7 = hh[7], al0 = hl[0], al1 = hl[1], al2 = hl[2], al3 = hl[3], al4 = hl[4], al5 = hl[5], al6 = hl[6], al7 = hl[7];
        var pos = 0;
        while (n >= 128) {
          for (i = 0; i < 16; i++) {
            j = 8 * i + pos;
            wh[i] = m[j + 0] << 24 | m[j + 1] << 16 | m[j + 2] << 8 | m[j + 3];
            wl[i] = m[j + 4] << 24 | m[j + 5] << 16 | m[j + 6] << 8 | m[j + 7];
          }
          for (i = 0; i < 80; i++) {
            bh0 = ah0;
            bh1 = ah1;
            bh2 = ah2;
            bh3 = ah3;
            bh4 = ah4;
            bh5 = ah5;
            bh6 = ah6;
            bh7 = ah7;
            bl0 = al0;
            bl1 = al1;
            bl2 = al2;
            bl3 = al3;
            bl4 = al4;
            bl5 = al5;
            bl6 = al6;
            bl7 = al7;
            h = ah7;
            l = al7;
            a = l & 65535;
            b = l >>> 16;
            c = h & 65535;
            d = h >>> 16;
            h = (ah4 >>> 14 | al4 << 32 - 14) ^ (ah4 >>> 18 | al4 << 32 - 18) ^ (al4 >>> 41 - 32 | ah4 << 32 - (41 - 32));
            l = (al4 >>> 14 | ah4 << 32 - 14) ^ (al4 >>> 18 | ah4 << 32 - 18) ^ (ah4 >>> 41 - 32 | al4 << 32 - (41 - 32));
            a += l & 65535;
            b += l >>> 16;
            c += h & 65535;
            d += h >>> 16;
            h = ah4 & ah5 ^ ~ah4 & ah6;
            l = al4 & al5 ^ ~al4 & al6;
            a += l & 65535;
            b += l >>> 16;
            c += h & 65535;
            d += h >>> 16;
            h = K[i * 2];
            l = K[i * 2 + 1];
            a += l & 65535;
            b += l >>> 16;
            c += h & 65535;
            d += h >>> 16;
            h = wh[i % 16];
            l = wl[i % 16];
            a += l & 65535;
            b += l >>> 16;
            c += h & 65535;
            d += h >>> 16;
            b += a >>> 16;
            c += b >>> 16;
            d += c >>> 16;
            th = c & 65535 | d << 16;
            tl = a & 65535 | b << 16;
            h = th;
            l = tl;
            a = l & 65535;
            b = l >>> 16;
            c = h & 65535;
            d = h >>> 16;
            h = (ah0 >>> 28 | al0 << 32 - 28) ^ (al0 >>> 34 - 32 | ah0 << 32 - (34 - 32)) ^ (al0 >>> 39 - 32 | ah0 << 32 - (39 - 32));
            l = (al0 >>> 28 | ah0 << 32 - 28) ^ (ah0 >>> 34 - 32 | al0 << 32 - (34 - 32)) ^ (ah0 >>> 39 - 32 | al0 << 32 - (39 - 32));
            a += l & 65535;
            b += l >>> 16;
            c += h & 65535;
            d += h >>> 16;
            h = ah0 & ah1 ^ ah0 & ah2 ^ ah1 & ah2;
            l = al0 & al1 ^ al0 & al2 ^ al1 & al2;
            a += l & 65535;
            b += l >>> 16;
            c += h & 65535;
            d += h >>> 16;
            b += a >>> 16;
            c += b >>> 16;
            d += c >>> 16;
            bh7 = c & 65535 | d << 16;
            bl7 = a & 65535 | b << 16;
            h = bh3;
            l = bl3;
            a = l & 65535;
            b = l >>> 16;
            c = h & 65535;
            d = h >>> 16;
            h = th;
            l = tl;
            a += l & 65535;
            b += l >>> 16;
            c += h & 65535;
            d += h >>> 16;
            b += a >>> 16;
            c += b >>> 16;
            d += c >>> 16;
            bh3 = c & 65535 | d << 16;
            bl3 = a & 65535 | b << 16;
            ah1 = bh0;
            ah2 = bh1;
            ah3 = bh2;
            ah4 = bh3;
            ah5 = bh4;
            ah6 = bh5;
            ah7 = bh6;
            ah0 = bh7;
            al1 = bl0;
            al2 = bl1;
            al3 = bl2;
            al4 = bl3;
            al5 = bl4;
            al6 = bl5;
            al7 = bl6;
            al0 = bl7;
            if (i % 16 === 15) {
              for (j = 0; j < 16; j++) {
                h = wh[j];
                l = wl[j];
                a = l & 65535;
                b = l >>> 16;
                c = h & 65535;
                d = h >>> 16;
                h = wh[(j + 9) % 16];
                l = wl[(j + 9) % 16];
                a += l & 65535;
                b += l >>> 16;
                c += h & 65535;
                d += h >>> 16;
                th = wh[(j + 1) % 16];
                tl = wl[(j + 1) % 16];
                h = (th >>> 1 | tl << 32 - 1) ^ (th >>> 8 | tl << 32 - 8) ^ th >>> 7;
                l = (tl >>> 1 | th << 32 - 1) ^ (tl >>> 8 | th << 32 - 8) ^ (tl >>> 7 | th << 32 - 7);
                a += l & 65535;
                b += l >>> 16;
                c += h & 65535;
                d += h >>> 16;
                th = wh[(j + 14) % 16];
                tl = wl[(j + 14) % 16];
                h = (th >>> 19 | tl << 32 - 19) ^ (tl >>> 61 - 32 | th << 32 - (61 - 32)) ^ th >>> 6;
                l = (tl >>> 19 | th << 32 - 19) ^ (th >>> 61 - 32 | tl << 32 - (61 - 32)) ^ (tl >>> 6 | th << 32 - 6);
                a += l & 65535;
                b += l >>> 16;
                c += h & 65535;
                d += h >>> 16;
                b += a >>> 16;
                c += b >>> 16;
                d += c >>> 16;
                wh[j] = c & 65535 | d << 16;
                wl[j] = a & 65535 | b << 16;
              }
            }
          }
          h = ah0;
          l = al0;
          a = l & 65535;
          b = l >>> 16;
          c = h & 65535;
          d = h >>> 16;
          h = hh[0];
          l = hl[0];
          a += l & 65535;
          b += l >>> 16;
          c += h & 65535;
          d += h >>> 16;
          b += a >>> 16;
          c += b >>> 16;
          d += c >>> 16;
          hh[0] = ah0 = c & 65535 | d << 16;
          hl[0] = al0 = a & 65535 | b << 16;
          h = ah1;
          l = al1;
          a = l & 65535;
          b = l >>> 16;
          c = h & 65535;
          d = h >>> 16;
          h = hh[1];
          l = hl[1];
          a += l & 65535;
          b += l >>> 16;
          c += h & 65535;
          d += h >>> 16;
          b += a >>> 16;
          c += b >>> 16;
          d += c >>> 16;
          hh[1] = ah1 = c & 65535 | d << 16;
          hl[1] = al1 = a & 65535 | b << 16;
          h = ah2;
          l = al2;
          a = l & 65535;
          b = l >>> 16;
          c = h & 65535;
          d = h >>> 16;
          h = hh[2];
          l = hl[2];
          a += l & 65535;
          b += l >>> 16;
          c += h & 65535;
          d += h >>> 16;
          b += a >>> 16;
          c += b >>> 16;
          d += c >>> 16;
          hh[2] = ah2 = c & 65535 | d << 16;
          hl[2] = al2 = a & 65535 | b << 16;
          h = ah3;
          l = al3;
          a = l & 65535;
          b = l >>> 16;
          c = h & 65535;
          d = h >>> 16;
          h = hh[3];
          l = hl[3];
          a += l & 65535;
          b += l >>> 16;
          c += h & 65535;
          d += h >>> 16;
          b += a >>> 16;
          c += b >>> 16;
          d += c >>> 16;
          hh[3] = ah3 = c & 65535 | d << 16;
          hl[3] = al3 = a & 65535 | b << 16;
          h = ah4;
          l = al4;
          a = l & 65535;
          b = l >>> 16;
          c = h & 65535;
          d = h >>> 16;
          h = hh[4];
          l = hl[4];
          a += l & 65535;
          b += l >>> 16;
          c += h & 65535;
          d += h >>> 16;
          b += a >>> 16;
          c += b >>> 16;
          d += c >>> 16;
          hh[4] = ah4 = c & 65535 | d << 16;
          hl[4] = al4 = a & 65535 | b << 16;
          h = ah5;
          l = al5;
          a = l & 65535;
          b = l >>> 16;
          c = h & 65535;
          d = h >>> 16;
          h = hh[5];
          l = hl[5];
          a += l & 65535;
          b += l >>> 16;
          c += h & 65535;
          d += h >>> 16;
          b += a >>> 16;
          c += b >>> 16;
          d += c >>> 16;
          hh[5] = ah5 = c & 65535 | d << 16;
          hl[5] = al5 = a & 65535 | b << 16;
          h = ah6;
          l = al6;
          a = l & 65535;
          b = l >>> 16;
          c = h & 65535;
          d = h >>> 16;
          h = hh[6];
          l = hl[6];
          a += l & 65535;
          b += l >>> 16;
          c += h & 65535;
          d += h >>> 16;
          b += a >>> 16;
          c += b >>> 16;
          d += c >>> 16;
          hh[6] = ah6 = c & 65535 | d << 16;
          hl[6] = al6 = a & 65535 | b << 16;
          h = ah7;
          l = al7;
          a = l & 65535;
          b = l >>> 16;
          c = h & 65535;
          d = h >>> 16;
          h = hh[7];
          l = hl[7];
          a += l & 65535;
          b += l >>> 16;
          c += h & 65535;
          d += h >>> 16;
          b += a >>> 16;
          c += b >>> 16;
          d += c >>> 16;
          hh[7] = ah7 = c & 65535 | d << 16;
          hl[7] = al7 = a & 65535 | b << 16;
          pos += 128;
          n -= 128;
        }
        return n;
      }
      function crypto_hash(out, m, n) {
        var hh = new Int32Array(8), hl = new Int32Array(8), x = new Uint8Array(256), i, b = n;
        hh[0] = 1779033703;
        hh[1] = 3144134277;
        hh[2] = 1013904242;
        hh[3] = 2773480762;
        hh[4] = 1359893119;
        hh[5] = 2600822924;
        hh[6] = 528734635;
        hh[7] = 1541459225;
        hl[0] = 4089235720;
        hl[1] = 2227873595;
        hl[2] = 4271175723;
        hl[3] = 1595750129;
        hl[4] = 2917565137;
        hl[5] = 725511199;
        hl[6] = 4215389547;
        hl[7] = 327033209;
        crypto_hashblocks_hl(hh, hl, m, n);
        n %= 128;
        for (i = 0; i < n; i++) x[i] = m[b - n + i];
        x[n] = 128;
        n = 256 - 128 * (n < 112 ? 1 : 0);
        x[n - 9] = 0;
        ts64(x, n - 8, b / 536870912 | 0, b << 3);
        crypto_hashblocks_hl(hh, hl, x, n);
        for (i = 0; i < 8; i++) ts64(out, 8 * i, hh[i], hl[i]);
        return 0;
      }
      function add(p, q) {
        var a = gf(), b = gf(), c = gf(), d = gf(), e = gf(), f = gf(), g = gf(), h = gf(), t = gf();
        Z(a, p[1], p[0]);
        Z(t, q[1], q[0]);
        M(a, a, t);
        A(b, p[0], p[1]);
        A(t, q[0], q[1]);
        M(b, b, t);
        M(c, p[3], q[3]);
        M(c, c, D2);
        M(d, p[2], q[2]);
        A(d, d, d);
        Z(e, b, a);
        Z(f, d, c);
        A(g, d, c);
        A(h, b, a);
        M(p[0], e, f);
        M(p[1], h, g);
        M(p[2], g, f);
        M(p[3], e, h);
      }
      function cswap(p, q, b) {
        var i;
        for (i = 0; i < 4; i++) {
          sel25519(p[i], q[i], b);
        }
      }
      function pack(r, p) {
        var tx = gf(), ty = gf(), zi = gf();
        inv25519(zi, p[2]);
        M(tx, p[0], zi);
        M(ty, p[1], zi);
        pack25519(r, ty);
        r[31] ^= par25519(tx) << 7;
      }
      function scalarmult(p, q, s) {
        var b, i;
        set25519(p[0], gf0);
        set25519(p[1], gf1);
        set25519(p[2], gf1);
        set25519(p[3], gf0);
        for (i = 255; i >= 0; --i) {
          b = s[i / 8 | 0] >> (i & 7) & 1;
          cswap(p, q, b);
          add(q, p);
          add(p, p);
          cswap(p, q, b);
        }
      }
      function scalarbase(p, s) {
        var q = [gf(), gf(), gf(), gf()];
        set25519(q[0], X);
        set25519(q[1], Y);
        set25519(q[2], gf1);
        M(q[3], X, Y);
        scalarmult(p, q, s);
      }
      function crypto_sign_keypair(pk, sk, seeded) {
        var d = new Uint8Array(64);
        var p = [gf(), gf(), gf(), gf()];
        var i;
        if (!seeded) randombytes(sk, 32);
        crypto_hash(d, sk, 32);
        d[0] &= 248;
        d[31] &= 127;
        d[31] |= 64;
        scalarbase(p, d);
        pack(pk, p);
        for (i = 0; i < 32; i++) sk[i + 32] = pk[i];
        return 0;
      }
      var L = new Float64Array([237, 211, 245, 92, 26, 99, 18, 88, 214, 156, 247, 162, 222, 249, 222, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16]);
      function modL(r, x) {
        var carry, i, j, k;
        for (i = 63; i >= 32; --i) {
          carry = 0;
          for (j = i - 32, k = i - 12; j < k; ++j) {
            x[j] += carry - 16 * x[i] * L[j - (i - 32)];
            carry = Math.floor((x[j] + 128) / 256);
            x[j] -= carry * 256;
          }
          x[j] += carry;
          x[i] = 0;
        }
        carry = 0;
        for (j = 0; j < 32; j++) {
          x[j] += carry - (x[31] >> 4) * L[j];
          carry = x[j] >> 8;
          x[j] &= 255;
        }
        for (j = 0; j < 32; j++) x[j] -= carry * L[j];
        for (i = 0; i < 32; i++) {
          x[i + 1] += x[i] >> 8;
          r[i] = x[i] & 255;
        }
      }
      function reduce(r) {
        var x = new Float64Array(64), i;
        for (i = 0; i < 64; i++) x[i] = r[i];
        for (i = 0; i < 64; i++) r[i] = 0;
        modL(r, x);
      }
      function crypto_sign(sm, m, n, sk) {
        var d = new Uint8Array(64), h = new Uint8Array(64), r = new Uint8Array(64);
        var i, j, x = new Float64Array(64);
        var p = [gf(), gf(), gf(), gf()];
        crypto_hash(d, sk, 32);
        d[0] &= 248;
        d[31] &= 127;
        d[31] |= 64;
        var smlen = n + 64;
        for (i = 0; i < n; i++) sm[64 + i] = m[i];
        for (i = 0; i < 32; i++) sm[32 + i] = d[32 + i];
        crypto_hash(r, sm.subarray(32), n + 32);
        reduce(r);
        scalarbase(p, r);
        pack(sm, p);
        for (i = 32; i < 64; i++) sm[i] = sk[i];
        crypto_hash(h, sm, n + 64);
        reduce(h);
        for (i = 0; i < 64; i++) x[i] = 0;
        for (i = 0; i < 32; i++) x[i] = r[i];
        for (i = 0; i < 32; i++) {
          for (j = 0; j < 32; j++) {
            x[i + j] += h[i] * d[j];
          }
        }
        modL(sm.subarray(32), x);
        return smlen;
      }
      function unpackneg(r, p) {
        var t = gf(), chk = gf(), num = gf(), den = gf(), den2 = gf(), den4 = gf(), den6 = gf();
        set25519(r[2], gf1);
        unpack25519(r[1], p);
        S(num, r[1]);
        M(den, num, D);
        Z(num, num, r[2]);
        A(den, r[2], den);
        S(den2, den);
        S(den4, den2);
        M(den6, den4, den2);
        M(t, den6, num);
        M(t, t, den);
        pow2523(t, t);
        M(t, t, num);
        M(t, t, den);
        M(t, t, den);
        M(r[0], t, den);
        S(chk, r[0]);
        M(chk, chk, den);
        if (neq25519(chk, num)) M(r[0], r[0], I);
        S(chk, r[0]);
        M(chk, chk, den);
        if (neq25519(chk, num)) return -1;
        if (par25519(r[0]) === p[31] >> 7) Z(r[0], gf0, r[0]);
        M(r[3], r[0], r[1]);
        return 0;
      }
      function crypto_sign_open(m, sm, n, pk) {
        var i;
        var t = new Uint8Array(32), h = new Uint8Array(64);
        var p = [gf(), gf(), gf(), gf()], q = [gf(), gf(), gf(), gf()];
        if (n < 64) return -1;
        if (unpackneg(q, pk)) return -1;
        for (i = 0; i < n; i++) m[i] = sm[i];
        for (i = 0; i < 32; i++) m[i + 32] = pk[i];
        crypto_hash(h, m, n);
        reduce(h);
        scalarmult(p, q, h);
        scalarbase(q, sm.subarray(32));
        add(p, q);
        pack(t, p);
        n -= 64;
        if (crypto_verify_32(sm, 0, t, 0)) {
          for (i = 0; i < n; i++) m[i] = 0;
          return -1;
        }
        for (i = 0; i < n; i++) m[i] = sm[i + 64];
        return n;
      }
      var crypto_secretbox_KEYBYTES = 32, crypto_secretbox_NONCEBYTES = 24, crypto_secretbox_ZEROBYTES = 32, crypto_secretbox_BOXZEROBYTES = 16, crypto_scalarmult_BYTES = 32, crypto_scalarmult_SCALARBYTES = 32, crypto_box_PUBLICKEYBYTES = 32, crypto_box_SECRETKEYBYTES = 32, crypto_box_BEFORENMBYTES = 32, crypto_box_NONCEBYTES = crypto_secretbox_NONCEBYTES, crypto_box_ZEROBYTES = crypto_secretbox_ZEROBYTES, crypto_box_BOXZEROBYTES = crypto_secretbox_BOXZEROBYTES, crypto_sign_BYTES = 64, crypto_sign_PUBLICKEYBYTES = 32, crypto_sign_SECRETKEYBYTES = 64, crypto_sign_SEEDBYTES = 32, crypto_hash_BYTES = 64;
      nacl4.lowlevel = {
        crypto_core_hsalsa20,
        crypto_stream_xor,
        crypto_stream,
        crypto_stream_salsa20_xor,
        crypto_stream_salsa20,
        crypto_onetimeauth,
        crypto_onetimeauth_verify,
        crypto_verify_16,
        crypto_verify_32,
        crypto_secretbox,
        crypto_secretbox_open,
        crypto_scalarmult,
        crypto_scalarmult_base,
        crypto_box_beforenm,
        crypto_box_afternm,
        crypto_box,
        crypto_box_open,
        crypto_box_keypair,
        crypto_hash,
        crypto_sign,
        crypto_sign_keypair,
        crypto_sign_open,
        crypto_secretbox_KEYBYTES,
        crypto_secretbox_NONCEBYTES,
        crypto_secretbox_ZEROBYTES,
        crypto_secretbox_BOXZEROBYTES,
        crypto_scalarmult_BYTES,
        crypto_scalarmult_SCALARBYTES,
        crypto_box_PUBLICKEYBYTES,
        crypto_box_SECRETKEYBYTES,
        crypto_box_BEFORENMBYTES,
        crypto_box_NONCEBYTES,
        crypto_box_ZEROBYTES,
        crypto_box_BOXZEROBYTES,
        crypto_sign_BYTES,
        crypto_sign_PUBLICKEYBYTES,
        crypto_sign_SECRETKEYBYTES,
        crypto_sign_SEEDBYTES,
        crypto_hash_BYTES,
        gf,
        D,
        L,
        pack25519,
        unpack25519,
        M,
        A,
        S,
        Z,
        pow2523,
        add,
        set25519,
        modL,
        scalarmult,
        scalarbase
      };
      function checkLengths(k, n) {
        if (k.length !== crypto_secretbox_KEYBYTES) throw new Error("bad key size");
        if (n.length !== crypto_secretbox_NONCEBYTES) throw new Error("bad nonce size");
      }
      function checkBoxLengths(pk, sk) {
        if (pk.length !== crypto_box_PUBLICKEYBYTES) throw new Error("bad public key size");
        if (sk.length !== crypto_box_SECRETKEYBYTES) throw new Error("bad secret key size");
      }
      function checkArrayTypes() {
        for (var i = 0; i < arguments.length; i++) {
          if (!(arguments[i] instanceof Uint8Array))
            throw new TypeError("unexpected type, use Uint8Array");
        }
      }
      function cleanup(arr) {
        for (var i = 0; i < arr.length; i++) arr[i] = 0;
      }
      nacl4.randomBytes = function(n) {
        var b = new Uint8Array(n);
        randombytes(b, n);
        return b;
      };
      nacl4.secretbox = function(msg, nonce, key) {
        checkArrayTypes(msg, nonce, key);
        checkLengths(key, nonce);
        var m = new Uint8Array(crypto_secretbox_ZEROBYTES + msg.length);
        var c = new Uint8Array(m.length);
        for (var i = 0; i < msg.length; i++) m[i + crypto_secretbox_ZEROBYTES] = msg[i];
        crypto_secretbox(c, m, m.length, nonce, key);
        return c.subarray(crypto_secretbox_BOXZEROBYTES);
      };
      nacl4.secretbox.open = function(box, nonce, key) {
        checkArrayTypes(box, nonce, key);
        checkLengths(key, nonce);
        var c = new Uint8Array(crypto_secretbox_BOXZEROBYTES + box.length);
        var m = new Uint8Array(c.length);
        for (var i = 0; i < box.length; i++) c[i + crypto_secretbox_BOXZEROBYTES] = box[i];
        if (c.length < 32) return null;
        if (crypto_secretbox_open(m, c, c.length, nonce, key) !== 0) return null;
        return m.subarray(crypto_secretbox_ZEROBYTES);
      };
      nacl4.secretbox.keyLength = crypto_secretbox_KEYBYTES;
      nacl4.secretbox.nonceLength = crypto_secretbox_NONCEBYTES;
      nacl4.secretbox.overheadLength = crypto_secretbox_BOXZEROBYTES;
      nacl4.scalarMult = function(n, p) {
        checkArrayTypes(n, p);
        if (n.length !== crypto_scalarmult_SCALARBYTES) throw new Error("bad n size");
        if (p.length !== crypto_scalarmult_BYTES) throw new Error("bad p size");
        var q = new Uint8Array(crypto_scalarmult_BYTES);
        crypto_scalarmult(q, n, p);
        return q;
      };
      nacl4.scalarMult.base = function(n) {
        checkArrayTypes(n);
        if (n.length !== crypto_scalarmult_SCALARBYTES) throw new Error("bad n size");
        var q = new Uint8Array(crypto_scalarmult_BYTES);
        crypto_scalarmult_base(q, n);
        return q;
      };
      nacl4.scalarMult.scalarLength = crypto_scalarmult_SCALARBYTES;
      nacl4.scalarMult.groupElementLength = crypto_scalarmult_BYTES;
      nacl4.box = function(msg, nonce, publicKey, secretKey) {
        var k = nacl4.box.before(publicKey, secretKey);
        return nacl4.secretbox(msg, nonce, k);
      };
      nacl4.box.before = function(publicKey, secretKey) {
        checkArrayTypes(publicKey, secretKey);
        checkBoxLengths(publicKey, secretKey);
        var k = new Uint8Array(crypto_box_BEFORENMBYTES);
        crypto_box_beforenm(k, publicKey, secretKey);
        return k;
      };
      nacl4.box.after = nacl4.secretbox;
      nacl4.box.open = function(msg, nonce, publicKey, secretKey) {
        var k = nacl4.box.before(publicKey, secretKey);
        return nacl4.secretbox.open(msg, nonce, k);
      };
      nacl4.box.open.after = nacl4.secretbox.open;
      nacl4.box.keyPair = function() {
        var pk = new Uint8Array(crypto_box_PUBLICKEYBYTES);
        var sk = new Uint8Array(crypto_box_SECRETKEYBYTES);
        crypto_box_keypair(pk, sk);
        return { publicKey: pk, secretKey: sk };
      };
      nacl4.box.keyPair.fromSecretKey = function(secretKey) {
        checkArrayTypes(secretKey);
        if (secretKey.length !== crypto_box_SECRETKEYBYTES)
          throw new Error("bad secret key size");
        var pk = new Uint8Array(crypto_box_PUBLICKEYBYTES);
        crypto_scalarmult_base(pk, secretKey);
        return { publicKey: pk, secretKey: new Uint8Array(secretKey) };
      };
      nacl4.box.publicKeyLength = crypto_box_PUBLICKEYBYTES;
      nacl4.box.secretKeyLength = crypto_box_SECRETKEYBYTES;
      nacl4.box.sharedKeyLength = crypto_box_BEFORENMBYTES;
      nacl4.box.nonceLength = crypto_box_NONCEBYTES;
      nacl4.box.overheadLength = nacl4.secretbox.overheadLength;
      nacl4.sign = function(msg, secretKey) {
        checkArrayTypes(msg, secretKey);
        if (secretKey.length !== crypto_sign_SECRETKEYBYTES)
          throw new Error("bad secret key size");
        var signedMsg = new Uint8Array(crypto_sign_BYTES + msg.length);
        crypto_sign(signedMsg, msg, msg.length, secretKey);
        return signedMsg;
      };
      nacl4.sign.open = function(signedMsg, publicKey) {
        checkArrayTypes(signedMsg, publicKey);
        if (publicKey.length !== crypto_sign_PUBLICKEYBYTES)
          throw new Error("bad public key size");
        var tmp = new Uint8Array(signedMsg.length);
        var mlen = crypto_sign_open(tmp, signedMsg, signedMsg.length, publicKey);
        if (mlen < 0) return null;
        var m = new Uint8Array(mlen);
        for (var i = 0; i < m.length; i++) m[i] = tmp[i];
        return m;
      };
      nacl4.sign.detached = function(msg, secretKey) {
        var signedMsg = nacl4.sign(msg, secretKey);
        var sig = new Uint8Array(crypto_sign_BYTES);
        for (var i = 0; i < sig.length; i++) sig[i] = signedMsg[i];
        return sig;
      };
      nacl4.sign.detached.verify = function(msg, sig, publicKey) {
        checkArrayTypes(msg, sig, publicKey);
        if (sig.length !== crypto_sign_BYTES)
          throw new Error("bad signature size");
        if (publicKey.length !== crypto_sign_PUBLICKEYBYTES)
          throw new Error("bad public key size");
        var sm = new Uint8Array(crypto_sign_BYTES + msg.length);
        var m = new Uint8Array(crypto_sign_BYTES + msg.length);
        var i;
        for (i = 0; i < crypto_sign_BYTES; i++) sm[i] = sig[i];
        for (i = 0; i < msg.length; i++) sm[i + crypto_sign_BYTES] = msg[i];
        return crypto_sign_open(m, sm, sm.length, publicKey) >= 0;
      };
      nacl4.sign.keyPair = function() {
        var pk = new Uint8Array(crypto_sign_PUBLICKEYBYTES);
        var sk = new Uint8Array(crypto_sign_SECRETKEYBYTES);
        crypto_sign_keypair(pk, sk);
        return { publicKey: pk, secretKey: sk };
      };
      nacl4.sign.keyPair.fromSecretKey = function(secretKey) {
        checkArrayTypes(secretKey);
        if (secretKey.length !== crypto_sign_SECRETKEYBYTES)
          throw new Error("bad secret key size");
        var pk = new Uint8Array(crypto_sign_PUBLICKEYBYTES);
        for (var i = 0; i < pk.length; i++) pk[i] = secretKey[32 + i];
        return { publicKey: pk, secretKey: new Uint8Array(secretKey) };
      };
      nacl4.sign.keyPair.fromSeed = function(seed) {
        checkArrayTypes(seed);
        if (seed.length !== crypto_sign_SEEDBYTES)
          throw new Error("bad seed size");
        var pk = new Uint8Array(crypto_sign_PUBLICKEYBYTES);
        var sk = new Uint8Array(crypto_sign_SECRETKEYBYTES);
        for (var i = 0; i < 32; i++) sk[i] = seed[i];
        crypto_sign_keypair(pk, sk, true);
        return { publicKey: pk, secretKey: sk };
      };
      nacl4.sign.publicKeyLength = crypto_sign_PUBLICKEYBYTES;
      nacl4.sign.secretKeyLength = crypto_sign_SECRETKEYBYTES;
      nacl4.sign.seedLength = crypto_sign_SEEDBYTES;
      nacl4.sign.signatureLength = crypto_sign_BYTES;
      nacl4.hash = function(msg) {
        checkArrayTypes(msg);
        var h = new Uint8Array(crypto_hash_BYTES);
        crypto_hash(h, msg, msg.length);
        return h;
      };
      nacl4.hash.hashLength = crypto_hash_BYTES;
      nacl4.verify = function(x, y) {
        checkArrayTypes(x, y);
        if (x.length === 0 || y.length === 0) return false;
        if (x.length !== y.length) return false;
        return vn(x, 0, y, 0, x.length) === 0 ? true : false;
      };
      nacl4.setPRNG = function(fn) {
        randombytes = fn;
      };
      (function() {
        var crypto2 = typeof self !== "undefined" ? self.crypto || self.msCrypto : null;
        if (crypto2 && crypto2.getRandomValues) {
          var QUOTA = 65536;
          nacl4.setPRNG(function(x, n) {
            var i, v = new Uint8Array(n);
            for (i = 0; i < n; i += QUOTA) {
              crypto2.getRandomValues(v.subarray(i, i + Math.min(n - i, QUOTA)));
            }
            for (i = 0; i < n; i++) x[i] = v[i];
            cleanup(v);
          });
        } else if (typeof __require !== "undefined") {
          crypto2 = require_crypto();
          if (crypto2 && crypto2.randomBytes) {
            nacl4.setPRNG(function(x, n) {
              var i, v = crypto2.randomBytes(n);
              for (i = 0; i < n; i++) x[i] = v[i];
              cleanup(v);
            });
          }
        }
      })();
    })(typeof module !== "undefined" && module.exports ? module.exports : self.nacl = self.nacl || {});
  }
});

// src/session.js
var import_tweetnacl3 = __toESM(require_nacl_fast(), 1);

// src/bytes.js
var encoder = new TextEncoder();
var strictDecoder = new TextDecoder("utf-8", { fatal: true });
function utf8(text) {
  return encoder.encode(text);
}
function fromUtf8(bytes) {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return null;
  }
}
var B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
var B64_INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64_INDEX[B64.charCodeAt(i)] = i;
B64_INDEX["-".charCodeAt(0)] = 62;
B64_INDEX["_".charCodeAt(0)] = 63;
function toBase64(bytes) {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = bytes[i] << 16 | bytes[i + 1] << 8 | bytes[i + 2];
    out += B64[n >> 18] + B64[n >> 12 & 63] + B64[n >> 6 & 63] + B64[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += B64[n >> 18] + B64[n >> 12 & 63] + "==";
  } else if (rest === 2) {
    const n = bytes[i] << 16 | bytes[i + 1] << 8;
    out += B64[n >> 18] + B64[n >> 12 & 63] + B64[n >> 6 & 63] + "=";
  }
  return out;
}
function decode64(text, urlSafe) {
  if (typeof text !== "string") return null;
  let s = text;
  if (!urlSafe) {
    if (s.length % 4 !== 0) return null;
    s = s.replace(/={1,2}$/, "");
    if (/[-_]/.test(s)) return null;
  } else if (/[+/=]/.test(s)) {
    return null;
  }
  if (s.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor(s.length * 3 / 4));
  let bits = 0;
  let value = 0;
  let j = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? B64_INDEX[c] : -1;
    if (v < 0) return null;
    value = value << 6 | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = value >> bits & 255;
    }
  }
  if ((value & (1 << bits) - 1) !== 0) return null;
  return out;
}
function fromBase64(text) {
  return decode64(text, false);
}
function fromBase64Url(text) {
  return decode64(text, true);
}
function writeU64(bytes, offset, value) {
  const hi = Math.floor(value / 4294967296);
  const lo = value >>> 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(offset, hi);
  view.setUint32(offset + 4, lo);
}
function readU64(bytes, offset) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hi = view.getUint32(offset);
  const lo = view.getUint32(offset + 4);
  if (hi > 2097151) return null;
  return hi * 4294967296 + lo;
}
function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
function compareBytes(a, b) {
  const x = utf8(a);
  const y = utf8(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// src/emitter.js
var Emitter = class {
  constructor() {
    this._handlers = /* @__PURE__ */ new Map();
  }
  /** Adds `handler` for `event`; returns a function that removes it. */
  on(event, handler) {
    let set = this._handlers.get(event);
    if (!set) this._handlers.set(event, set = /* @__PURE__ */ new Set());
    set.add(handler);
    return () => this.off(event, handler);
  }
  /** Removes `handler` for `event`. */
  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
  }
  /** Adds a handler that runs once. */
  once(event, handler) {
    const off = this.on(event, (...args) => {
      off();
      handler(...args);
    });
    return off;
  }
  /** Calls every handler of `event` with `args`; returns whether there was one. */
  emit(event, ...args) {
    const set = this._handlers.get(event);
    if (!set || set.size === 0) return false;
    for (const handler of [...set]) {
      try {
        handler(...args);
      } catch (e) {
        const report = globalThis.reportError || ((err) => console.error(err));
        report(e);
      }
    }
    return true;
  }
};

// src/errors.js
var TurnpikeError = class extends Error {
  /**
   * @param {string} code stable code, e.g. `send_timeout`
   * @param {string} [message] text for people
   */
  constructor(code, message) {
    super(message || code);
    this.name = "TurnpikeError";
    this.code = code;
  }
};

// src/attest.js
var import_tweetnacl = __toESM(require_nacl_fast(), 1);
var ATTESTATION_TYPE = "turnpike-attest+jwt";
var CLOCK_SKEW_SECS = 30;
function parseJson(bytes) {
  const text = bytes && fromUtf8(bytes);
  if (text === null || text === void 0) return null;
  try {
    const v = JSON.parse(text);
    return v && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}
function decodeIssuerKeys(keys) {
  return (keys || []).map((k) => {
    const raw = fromBase64(k);
    if (!raw || raw.length !== 32) throw new TypeError(`trustedIssuerKeys: not a 32-byte base64 key: ${k}`);
    return raw;
  });
}
function verifyAttestation(attestation, expected) {
  if (attestation === void 0 || attestation === null || attestation === "") {
    return { ok: false, reason: "missing" };
  }
  if (typeof attestation !== "string" || attestation.length > 8192) {
    return { ok: false, reason: "malformed" };
  }
  const parts = attestation.split(".");
  if (parts.length !== 3) return { ok: false, reason: "malformed" };
  const header = parseJson(fromBase64Url(parts[0]));
  const claims = parseJson(fromBase64Url(parts[1]));
  const signature = fromBase64Url(parts[2]);
  if (!header || !claims || !signature || signature.length !== 64) {
    return { ok: false, reason: "malformed" };
  }
  if (header.alg !== "EdDSA" || header.typ !== ATTESTATION_TYPE) {
    return { ok: false, reason: "wrong_type" };
  }
  const signed = utf8(`${parts[0]}.${parts[1]}`);
  const verified = expected.trustedKeys.some((key) => import_tweetnacl.default.sign.detached.verify(signed, signature, key));
  if (!verified) return { ok: false, reason: "bad_signature" };
  if (typeof claims.exp !== "number" || typeof claims.sub !== "string" || typeof claims.pk !== "string") {
    return { ok: false, reason: "malformed" };
  }
  if (!(claims.exp + CLOCK_SKEW_SECS > expected.nowSecs)) return { ok: false, reason: "expired" };
  if (claims.sub !== expected.peerId || claims.project !== expected.project) {
    return { ok: false, reason: "identity_mismatch" };
  }
  if (claims.pk !== expected.publicKey) return { ok: false, reason: "key_mismatch" };
  return { ok: true };
}

// src/seal.js
var import_tweetnacl2 = __toESM(require_nacl_fast(), 1);
var NONCE_BYTES = 24;
var TAG_BYTES = 16;
var COUNTER_BYTES = 8;
var SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES + COUNTER_BYTES;
function seal(counter, frame, nonce, recipientPublicKey, senderSecretKey) {
  const plain = new Uint8Array(COUNTER_BYTES + frame.length);
  writeU64(plain, 0, counter);
  plain.set(frame, COUNTER_BYTES);
  const box = import_tweetnacl2.default.box(plain, nonce, recipientPublicKey, senderSecretKey);
  return concat(nonce, box);
}
function open(sealed, senderPublicKey, recipientSecretKey) {
  if (sealed.length < NONCE_BYTES + TAG_BYTES + COUNTER_BYTES) return { error: "forged" };
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const box = sealed.subarray(NONCE_BYTES);
  const plain = import_tweetnacl2.default.box.open(box, nonce, senderPublicKey, recipientSecretKey);
  if (!plain || plain.length < COUNTER_BYTES) return { error: "forged" };
  const counter = readU64(plain, 0);
  if (counter === null) return { error: "forged" };
  return { counter, frame: plain.subarray(COUNTER_BYTES) };
}
var Counter = class {
  constructor() {
    this.last = 0;
  }
  /** The next counter at wall-clock time `nowMs` (milliseconds since 1970). */
  next(nowMs) {
    this.last = Math.max(this.last + 1, Math.floor(nowMs * 1e3));
    return this.last;
  }
};
var ReplayTable = class {
  constructor(capacity = 4096) {
    this.capacity = capacity;
    this.highest = /* @__PURE__ */ new Map();
  }
  /** Accepts `counter` from `senderKey` (a string) when it is above the highest seen. */
  accept(senderKey, counter) {
    const seen = this.highest.get(senderKey);
    if (seen !== void 0 && counter <= seen) return false;
    this.highest.delete(senderKey);
    this.highest.set(senderKey, counter);
    if (this.highest.size > this.capacity) {
      this.highest.delete(this.highest.keys().next().value);
    }
    return true;
  }
};
function encodeRelayFrame(peerId, sealed) {
  const id = utf8(peerId);
  if (id.length < 1 || id.length > 255) throw new Error("bad peer id");
  return concat(Uint8Array.of(id.length), id, sealed);
}
function decodeRelayFrame(bytes) {
  if (bytes.length < 1) return { error: "empty" };
  const n = bytes[0];
  if (n === 0 || bytes.length < 1 + n + NONCE_BYTES + TAG_BYTES) return { error: "too short" };
  let peerId = "";
  for (let i = 1; i <= n; i++) {
    const c = bytes[i];
    if (c < 33 || c > 126) return { error: "bad peer id" };
    peerId += String.fromCharCode(c);
  }
  return { peerId, sealed: bytes.subarray(1 + n) };
}

// src/frame.js
var HEADER_BYTES = 18;
var MAX_FRAME_BYTES = 16384;
var MAX_FRAGMENT_PAYLOAD = MAX_FRAME_BYTES - HEADER_BYTES;
var MAX_MESSAGE_BYTES = 1048576;
var MAX_NUMBER = Number.MAX_SAFE_INTEGER;
var KINDS = ["", "data", "ack", "probe", "probe_ack", "close"];
var KIND_CODES = { data: 1, ack: 2, probe: 3, probe_ack: 4, close: 5 };
var FLAG_END = 1;
var FLAG_BINARY = 2;
function encodeFrame(frame) {
  const code = KIND_CODES[frame.kind];
  if (!code) throw new Error(`unknown frame kind ${frame.kind}`);
  const payload = frame.kind === "data" ? frame.payload || new Uint8Array(0) : new Uint8Array(0);
  if (HEADER_BYTES + payload.length > MAX_FRAME_BYTES) throw new Error("frame too large");
  if (!(frame.number >= 0 && frame.number <= MAX_NUMBER)) throw new Error("number out of range");
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  out[0] = code;
  out[1] = frame.kind === "data" ? (frame.end ? FLAG_END : 0) | (frame.binary ? FLAG_BINARY : 0) : 0;
  const view = new DataView(out.buffer);
  view.setUint32(2, frame.srcEpoch >>> 0);
  view.setUint32(6, frame.dstEpoch >>> 0);
  writeU64(out, 10, frame.number);
  out.set(payload, HEADER_BYTES);
  return out;
}
function decodeFrame(bytes) {
  if (!(bytes instanceof Uint8Array)) return { error: "not bytes" };
  if (bytes.length < HEADER_BYTES) return { error: "shorter than the 18-byte header" };
  if (bytes.length > MAX_FRAME_BYTES) return { error: "longer than 16,384 bytes" };
  const kind = KINDS[bytes[0]];
  if (!kind) return { error: `unknown kind ${bytes[0]}` };
  const flags = bytes[1];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const srcEpoch = view.getUint32(2);
  const dstEpoch = view.getUint32(6);
  if (srcEpoch === 0) return { error: "src_epoch 0" };
  if (kind !== "data" && flags !== 0) return { error: `flags on ${kind}` };
  if (kind === "data" && (flags & ~(FLAG_END | FLAG_BINARY)) !== 0) {
    return { error: "unknown flag bits" };
  }
  if (kind !== "data" && bytes.length > HEADER_BYTES) return { error: `payload on ${kind}` };
  const number = readU64(bytes, 10);
  if (number === null) return { error: "number above 2^53 - 1" };
  if (kind === "data" && number === 0) return { error: "DATA seq 0" };
  const frame = { kind, srcEpoch, dstEpoch, number };
  if (kind === "data") {
    frame.end = (flags & FLAG_END) !== 0;
    frame.binary = (flags & FLAG_BINARY) !== 0;
    frame.payload = bytes.subarray(HEADER_BYTES);
  }
  return { frame };
}
function fragmentRanges(size) {
  if (size === 0) return [[0, 0]];
  const out = [];
  for (let o = 0; o < size; o += MAX_FRAGMENT_PAYLOAD) {
    out.push([o, Math.min(MAX_FRAGMENT_PAYLOAD, size - o)]);
  }
  return out;
}

// src/core/receiver.js
var REORDER_WINDOW = 256;
var ACK_EVERY = 8;
var ACK_DELAY_MS = 20;
var Receiver = class {
  constructor() {
    this.reset();
  }
  /** Starts over (a new remote epoch). */
  reset() {
    this.next = 1;
    this.reorder = /* @__PURE__ */ new Map();
    this.parts = [];
    this.partBytes = 0;
    this.partBinary = false;
    this.unacked = 0;
    this.ackDue = null;
    this.ackPath = null;
  }
  /** The cumulative ack (the last seq delivered in order). */
  get ack() {
    return this.next - 1;
  }
  /**
   * A DATA frame on `path`. Calls `out.deliver(data)` for each completed message,
   * `out.error(message, fatal)` for a protocol error, `out.ackNow(path)` when an ACK is due at once.
   */
  onData(now, path, frame, out) {
    const seq = frame.number;
    if (seq < this.next) {
      out.ackNow(path);
      return;
    }
    if (seq > this.next) {
      if (seq - this.next <= REORDER_WINDOW && !this.reorder.has(seq)) {
        this.reorder.set(seq, { ...frame, payload: frame.payload.slice() });
      }
      return;
    }
    let filledGap = false;
    if (!this.take(frame, out)) return;
    while (this.reorder.has(this.next)) {
      const f = this.reorder.get(this.next);
      this.reorder.delete(this.next);
      filledGap = true;
      if (!this.take(f, out)) return;
    }
    this.unacked++;
    this.ackPath = path;
    if (filledGap || this.unacked >= ACK_EVERY) {
      out.ackNow(path);
    } else if (this.ackDue === null) {
      this.ackDue = now + ACK_DELAY_MS;
    }
  }
  /** Appends an in-order fragment; false when the link must close. */
  take(frame, out) {
    this.next++;
    if (this.parts.length === 0) this.partBinary = frame.binary;
    this.partBytes += frame.payload.length;
    if (this.partBytes > MAX_MESSAGE_BYTES) {
      out.error(`a message above 1 MiB (${this.partBytes} bytes so far)`, true);
      return false;
    }
    this.parts.push(frame.payload.slice());
    if (!frame.end) return true;
    const bytes = new Uint8Array(this.partBytes);
    let o = 0;
    for (const p of this.parts) {
      bytes.set(p, o);
      o += p.length;
    }
    const binary = this.partBinary;
    this.parts = [];
    this.partBytes = 0;
    if (binary) {
      out.deliver(bytes);
    } else {
      const text = fromUtf8(bytes);
      if (text === null) out.error("a text message that is not valid UTF-8", false);
      else out.deliver(text);
    }
    return true;
  }
  /** The ACK was sent: nothing is pending. */
  acked() {
    this.unacked = 0;
    this.ackDue = null;
  }
};

// src/core/sender.js
var Sender = class {
  /**
   * @param {{ maxBufferedBytes: number, sendTimeoutMs: number, emit: (event: object) => void }} options
   */
  constructor({ maxBufferedBytes, sendTimeoutMs, emit }) {
    this.maxBufferedBytes = maxBufferedBytes;
    this.sendTimeoutMs = sendTimeoutMs;
    this.emit = emit;
    this.messages = [];
    this.frags = [];
    this.head = 0;
    this.nextSeq = 1;
    this.acked = 0;
    this.cursor = 1;
    this.buffered = 0;
    this.inflight = 0;
    this.waiting = [];
    this.sentMessages = 0;
  }
  /** A new `send`: rejected at once when too large, else accepted or queued until it fits. */
  offer(now, token, data) {
    const binary = typeof data !== "string";
    const bytes = binary ? new Uint8Array(data) : utf8(data);
    if (bytes.length > MAX_MESSAGE_BYTES) {
      this.emit({ type: "rejected", token, code: "message_too_large", message: `${bytes.length} bytes is above the 1 MiB limit` });
      return;
    }
    this.waiting.push({ token, bytes, binary, size: bytes.length, deadline: now + this.sendTimeoutMs });
    this.pump();
  }
  /** Accepts waiting sends, in order, while they fit. */
  pump() {
    while (this.waiting.length > 0) {
      const w = this.waiting[0];
      if (this.buffered > 0 && this.buffered + w.size > this.maxBufferedBytes) return;
      this.waiting.shift();
      this.accept(w);
      this.emit({ type: "accepted", token: w.token });
    }
  }
  accept({ bytes, binary, size }) {
    const message = { bytes, binary, size, lastSeq: 0 };
    for (const [offset, length] of fragmentRanges(size)) {
      const payload = bytes.subarray(offset, offset + length);
      message.lastSeq = this.nextSeq;
      this.frags.push({ seq: this.nextSeq++, payload, end: false, binary, bytes: HEADER_BYTES + length, sentAt: 0, sends: 0 });
    }
    this.frags[this.frags.length - 1].end = true;
    this.messages.push(message);
    this.buffered += size;
    this.sentMessages++;
  }
  /** Rejects sends that waited past their deadline. */
  expire(now) {
    while (this.waiting.length > 0 && this.waiting[0].deadline <= now) {
      const w = this.waiting.shift();
      this.emit({ type: "rejected", token: w.token, code: "send_timeout", message: `the send buffer stayed full for ${this.sendTimeoutMs} ms` });
    }
  }
  /** Rejects every waiting send with `code`. */
  rejectAll(code, message) {
    for (const w of this.waiting.splice(0)) this.emit({ type: "rejected", token: w.token, code, message });
  }
  /** The earliest send deadline, or null. */
  nextDeadline() {
    return this.waiting.length > 0 ? this.waiting[0].deadline : null;
  }
  /** The fragment at the cursor (the next to send), or null. */
  peek() {
    const i = this.head + (this.cursor - this.acked - 1);
    return i < this.frags.length ? this.frags[i] : null;
  }
  /** Moves the cursor past the fragment `peek` returned. */
  advance(fragment) {
    this.cursor++;
    this.inflight += fragment.bytes;
  }
  /** Whether anything is unacknowledged. */
  hasUnacked() {
    return this.head < this.frags.length;
  }
  /** Sends every unacknowledged fragment again, from the first one. */
  rewind() {
    this.cursor = this.acked + 1;
    this.inflight = 0;
  }
  /**
   * A cumulative ack. Returns `{ progress, sample }`: whether it released anything, and the
   * time the newest covered fragment was sent when it was sent once on the relay.
   */
  onAck(ack) {
    if (ack <= this.acked || ack >= this.nextSeq) return { progress: false, sample: null };
    let sample = null;
    while (this.head < this.frags.length && this.frags[this.head].seq <= ack) {
      const f = this.frags[this.head++];
      if (f.seq < this.cursor) this.inflight -= f.bytes;
      if (f.seq === ack && f.sends === 1) sample = f.sentAt;
    }
    this.acked = ack;
    if (this.cursor <= ack) {
      this.cursor = ack + 1;
      this.inflight = 0;
    }
    if (this.inflight < 0) this.inflight = 0;
    while (this.messages.length > 0 && this.messages[0].lastSeq <= ack) {
      this.buffered -= this.messages.shift().size;
    }
    if (this.head > 1024 && this.head * 2 > this.frags.length) {
      this.frags = this.frags.slice(this.head);
      this.head = 0;
    }
    this.pump();
    return { progress: true, sample };
  }
  /**
   * The peer restarted: every message not fully acknowledged is numbered again from seq 1 and
   * sent again from its first fragment.
   */
  renumber() {
    const messages = this.messages;
    this.messages = [];
    this.frags = [];
    this.head = 0;
    this.nextSeq = 1;
    this.acked = 0;
    this.cursor = 1;
    this.buffered = 0;
    this.inflight = 0;
    const sent = this.sentMessages;
    for (const m of messages) this.accept(m);
    this.sentMessages = sent;
  }
  /** The last seq sent (for CLOSE). */
  lastSeq() {
    return this.nextSeq - 1;
  }
};

// src/core/link.js
var DEFAULT_FALLBACK_MS = 1e4;
var DEFAULT_MAX_BUFFERED_BYTES = 1048576;
var DEFAULT_SEND_TIMEOUT_MS = 3e4;
var PROBE_INTERVAL_MS = 1e3;
var RELAY_INFLIGHT_BYTES = 262144;
var RELAY_INFLIGHT_FRAMES = 24;
var RTO_INITIAL_MS = 1e3;
var RTO_MIN_MS = 200;
var RTO_MAX_MS = 1e4;
var RESTART_FIRST_MS = 5e3;
var RESTART_MAX_MS = 6e4;
var RETIRED_EPOCHS = 4;
var MAX_CONTROL_FRAMES = 256;
var LinkCore = class {
  /**
   * @param {object} o
   * @param {number} o.epoch     this end's random non-zero 32-bit epoch
   * @param {number} o.now       creation time (ms, any monotonic origin)
   * @param {number} [o.nonceSeed] a random number; probe nonces count up from it
   * @param {number} [o.fallbackAfterMs]
   * @param {number} [o.maxBufferedBytes]
   * @param {number} [o.sendTimeoutMs]
   * @param {number|null} [o.relayBytesPerSec] the registry's `limits.relay_bytes_per_sec`
   * @param {number} [o.relayOverheadBytes] bytes a relay blob adds to a link frame
   */
  constructor(o) {
    if (!(o.epoch >= 1 && o.epoch <= 4294967295)) throw new RangeError("epoch must be a non-zero 32-bit number");
    this.epoch = o.epoch >>> 0;
    this.remoteEpoch = 0;
    this.retired = [];
    this.fallbackAfterMs = o.fallbackAfterMs ?? DEFAULT_FALLBACK_MS;
    this.mode = "connecting";
    this.events = [];
    this.control = [];
    this.sender = new Sender({
      maxBufferedBytes: o.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
      sendTimeoutMs: o.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS,
      emit: (e) => this.events.push(e)
    });
    this.receiver = new Receiver();
    this.nonce = Math.floor(Math.abs(o.nonceSeed ?? 0)) % 2 ** 48;
    this.probeNonce = null;
    this.probeAt = null;
    this.probeSentAt = 0;
    this.fallbackAt = o.now + this.fallbackAfterMs;
    this.restartAt = null;
    this.restartDelay = RESTART_FIRST_MS;
    this.channelOpen = false;
    this.iceConnected = false;
    this.p2pWritable = true;
    this.relayUsable = true;
    this.relayRefusal = null;
    this.forced = false;
    this.opened = false;
    this.remoteLastSeq = null;
    this.srtt = null;
    this.rttMs = null;
    this.rtoBase = RTO_INITIAL_MS;
    this.rto = RTO_INITIAL_MS;
    this.rtoAt = null;
    this.closeFrame = null;
    this.drainPath = null;
    this.overhead = o.relayOverheadBytes ?? 0;
    this.bucketRate = 0;
    this.setRelayRate(o.relayBytesPerSec ?? null, o.now);
    this.stats = { received: 0, p2pBytes: 0, relayBytes: 0, malformed: 0 };
  }
  // ---- inputs -------------------------------------------------------------------------------
  /** An application message (`string` or bytes); answered by an `accepted` or `rejected` event with `token`. */
  send(now, token, data) {
    if (this.mode === "closed") {
      this.events.push({ type: "rejected", token, code: "link_closed", message: "the link is closed" });
      return;
    }
    this.sender.offer(now, token, data);
  }
  /** A frame that arrived on `path`. Never throws on its content. */
  handleFrame(now, path, bytes) {
    if (this.mode === "closed") return;
    this.stats[path === "p2p" ? "p2pBytes" : "relayBytes"] += bytes.length;
    const { frame, error } = decodeFrame(bytes);
    if (!frame) return this.protocolError(`malformed frame: ${error}`, false);
    if (frame.srcEpoch === this.epoch) return;
    if (frame.dstEpoch !== 0 && frame.dstEpoch !== this.epoch) {
      if (frame.kind === "data" || frame.kind === "probe") {
        this.queueControl(path, { kind: "ack", srcEpoch: this.epoch, dstEpoch: frame.srcEpoch, number: 0 });
      }
      return;
    }
    if (this.retired.includes(frame.srcEpoch)) return;
    if (frame.srcEpoch !== this.remoteEpoch) this.adopt(frame.srcEpoch);
    switch (frame.kind) {
      case "data":
        this.receiver.onData(now, path, frame, this.receiveOutput());
        return this.checkRemoteClose();
      case "ack":
        return this.onAck(now, frame);
      case "probe":
        return this.queueControl(path, { kind: "probe_ack", number: frame.number });
      case "probe_ack":
        if (path === "p2p" && frame.number === this.probeNonce) this.onProbeAnswered(now);
        return;
      case "close":
        this.remoteLastSeq = frame.number;
        return this.checkRemoteClose();
    }
  }
  /** Time passed: fires whatever timers are due. */
  handleTimeout(now) {
    if (this.mode === "closed") return;
    this.sender.expire(now);
    if (this.receiver.ackDue !== null && this.receiver.ackDue <= now) this.ackNow(this.receiver.ackPath);
    if (this.fallbackAt !== null && this.fallbackAt <= now) {
      this.fallbackAt = null;
      if (this.mode === "connecting" || this.mode === "p2p" && !this.iceConnected) this.enterRelay(now);
    }
    if (this.probeAt !== null && this.probeAt <= now) this.sendProbe(now);
    if (this.restartAt !== null && this.restartAt <= now && this.forced) {
      this.restartAt = null;
    } else if (this.restartAt !== null && this.restartAt <= now) {
      this.events.push({ type: "restart_ice" });
      this.restartDelay = Math.min(this.restartDelay * 2, RESTART_MAX_MS);
      this.restartAt = now + this.restartDelay;
    }
    if (this.rtoAt !== null && this.rtoAt <= now) {
      this.rtoAt = null;
      if (this.mode === "relay" && this.sender.hasUnacked()) {
        this.sender.rewind();
        this.rto = Math.min(this.rto * 2, RTO_MAX_MS);
      }
    }
  }
  /** The DataChannel opened: probe it. */
  channelOpened(now) {
    this.channelOpen = true;
    if (this.mode !== "p2p" && this.mode !== "closed") this.startProbing(now);
  }
  /** The DataChannel closed (or was replaced): leave p2p at once. */
  channelClosed(now) {
    this.channelOpen = false;
    this.probeNonce = null;
    this.probeAt = null;
    if (this.mode === "p2p" || this.mode === "connecting") this.enterRelay(now);
  }
  /** The RTCPeerConnection's `iceConnectionState`. */
  iceStateChanged(now, state) {
    const was = this.iceConnected;
    this.iceConnected = state === "connected" || state === "completed";
    if (this.mode === "closed") return;
    if (state === "failed" && this.mode !== "relay") {
      this.enterRelay(now);
    } else if (state === "disconnected" && this.mode === "p2p" && was) {
      this.events.push({ type: "restart_ice" });
      this.fallbackAt = now + this.fallbackAfterMs;
    } else if (this.iceConnected && this.mode === "p2p") {
      this.fallbackAt = null;
    }
  }
  /** Whether the DataChannel takes more data (false while `bufferedAmount` is above 1 MiB). */
  setP2pWritable(writable) {
    this.p2pWritable = writable;
  }
  /**
   * Whether the relay path may be used (false when the peer's key is not attested: `reason`
   * says why). A refused relay reports `not_attested` when the link would have used it.
   */
  setRelayUsable(now, usable, reason = null) {
    this.relayUsable = usable;
    this.relayRefusal = usable ? null : reason;
    if (!usable && this.mode === "relay") this.setMode("connecting");
  }
  /** The registry's relay rate for this peer (bytes per second); blobs go out at 90 % of it. */
  setRelayRate(bytesPerSec, now) {
    if (!bytesPerSec || !(bytesPerSec > 0)) {
      this.bucketRate = 0;
      return;
    }
    this.bucketRate = 0.9 * bytesPerSec / 1e3;
    this.bucketCap = 0.9 * bytesPerSec;
    this.bucket = this.bucketCap;
    this.bucketAt = now;
  }
  /** While on, the link sends on the relay and does not return to p2p; off: the usual rules. */
  forceRelay(now, on) {
    this.forced = on;
    if (this.mode === "closed") return;
    if (on) {
      this.probeNonce = null;
      this.probeAt = null;
      if (this.mode !== "relay") this.enterRelay(now);
    } else if (this.channelOpen && this.mode !== "p2p") {
      this.startProbing(now);
    } else if (this.mode === "relay") {
      this.scheduleRestart(now);
    }
  }
  /** Closes this end: `CLOSE` on the current path, waiting sends rejected, event `close`. */
  close(now, reason = "local") {
    if (this.mode === "closed") return;
    if (this.mode === "p2p" || this.mode === "relay") {
      this.drainPath = this.mode;
      this.closeFrame = encodeFrame({ kind: "close", srcEpoch: this.epoch, dstEpoch: this.remoteEpoch, number: this.sender.lastSeq() });
    }
    this.finish(reason);
  }
  // ---- outputs ------------------------------------------------------------------------------
  /** The next frame to send: `{ path, frame }` (frame bytes), or null. */
  pollTransmit(now) {
    if (this.control.length > 0) {
      const { path, frame } = this.control.shift();
      return { path, frame };
    }
    if (this.mode === "closed") return this.pollDrain();
    if (this.mode === "p2p") {
      if (!this.p2pWritable) return null;
      const f = this.sender.peek();
      if (!f) return null;
      this.sender.advance(f);
      return this.dataFrame("p2p", f);
    }
    if (this.mode === "relay") {
      const f = this.sender.peek();
      if (!f) return null;
      if (this.sender.inflight > 0 && this.sender.inflight + f.bytes > RELAY_INFLIGHT_BYTES) return null;
      if (this.sender.cursor - this.sender.acked - 1 >= RELAY_INFLIGHT_FRAMES) return null;
      if (this.bucketRate > 0) {
        this.refill(now);
        if (this.bucket < f.bytes + this.overhead) return null;
        this.bucket -= f.bytes + this.overhead;
      }
      this.sender.advance(f);
      f.sends++;
      f.sentAt = now;
      if (this.rtoAt === null) this.rtoAt = now + this.rto;
      return this.dataFrame("relay", f);
    }
    return null;
  }
  pollDrain() {
    if (!this.drainPath) return null;
    const f = this.sender.peek();
    if (f) {
      this.sender.advance(f);
      return this.dataFrame(this.drainPath, f);
    }
    const path = this.drainPath;
    const frame = this.closeFrame;
    this.drainPath = null;
    this.closeFrame = null;
    this.stats[path === "p2p" ? "p2pBytes" : "relayBytes"] += frame.length;
    return { path, frame };
  }
  /** The next event, or null. */
  pollEvent() {
    return this.events.length > 0 ? this.events.shift() : null;
  }
  /** When `handleTimeout` is due next (same clock as `now`), or null. */
  pollTimeout(now) {
    if (this.mode === "closed") return null;
    let t = null;
    const min = (x) => {
      if (x !== null && (t === null || x < t)) t = x;
    };
    min(this.sender.nextDeadline());
    min(this.receiver.ackDue);
    min(this.fallbackAt);
    min(this.probeAt);
    min(this.restartAt);
    if (this.mode === "relay") {
      min(this.rtoAt);
      const f = this.sender.peek();
      if (f && this.bucketRate > 0 && this.sender.inflight + f.bytes <= RELAY_INFLIGHT_BYTES) {
        this.refill(now);
        const missing = f.bytes + this.overhead - this.bucket;
        if (missing > 0) min(now + Math.ceil(missing / this.bucketRate));
      }
    }
    return t;
  }
  /** Counters for `link.stats()`. */
  snapshot() {
    return {
      mode: this.mode,
      sent: this.sender.sentMessages,
      received: this.stats.received,
      p2pBytes: this.stats.p2pBytes,
      relayBytes: this.stats.relayBytes,
      rttMs: this.rttMs,
      malformed: this.stats.malformed,
      buffered: this.sender.buffered
    };
  }
  // ---- internals ----------------------------------------------------------------------------
  receiveOutput() {
    return {
      deliver: (data) => {
        this.stats.received++;
        this.events.push({ type: "message", data });
      },
      error: (message, fatal) => {
        this.protocolError(message, fatal);
      },
      ackNow: (path) => this.ackNow(path)
    };
  }
  adopt(epoch) {
    const previous = this.remoteEpoch;
    this.remoteEpoch = epoch;
    this.receiver.reset();
    this.remoteLastSeq = null;
    if (previous !== 0) {
      this.retired.push(previous);
      if (this.retired.length > RETIRED_EPOCHS) this.retired.shift();
      this.sender.renumber();
      this.rtoAt = null;
    }
    this.events.push({ type: "remote_epoch", epoch, previous });
  }
  onAck(now, frame) {
    const { progress, sample } = this.sender.onAck(frame.number);
    if (!progress) return;
    if (sample !== null) this.rttSample(now - sample);
    this.rto = this.rtoBase;
    this.rtoAt = this.mode === "relay" && this.sender.inflight > 0 ? now + this.rto : null;
  }
  rttSample(ms) {
    this.srtt = this.srtt === null ? ms : (7 * this.srtt + ms) / 8;
    this.rttMs = Math.round(this.srtt);
    this.rtoBase = Math.min(Math.max(2 * this.srtt, RTO_MIN_MS), RTO_MAX_MS);
    this.rto = this.rtoBase;
  }
  ackNow(path) {
    this.receiver.acked();
    if (path) this.queueControl(path, { kind: "ack", number: this.receiver.ack });
    this.checkRemoteClose();
  }
  checkRemoteClose() {
    if (this.remoteLastSeq !== null && this.receiver.ack >= this.remoteLastSeq && this.mode !== "closed") {
      this.finish("remote_closed");
    }
  }
  startProbing(now) {
    if (this.forced) return;
    this.sendProbe(now);
  }
  sendProbe(now) {
    if (!this.channelOpen || this.forced || this.mode === "p2p" || this.mode === "closed") {
      this.probeAt = null;
      return;
    }
    this.nonce = (this.nonce + 1) % 2 ** 48;
    this.probeNonce = this.nonce;
    this.probeSentAt = now;
    this.queueControl("p2p", { kind: "probe", number: this.probeNonce });
    this.probeAt = now + PROBE_INTERVAL_MS;
  }
  onProbeAnswered(now) {
    if (this.forced || this.mode === "closed") return;
    this.rttSample(now - this.probeSentAt);
    this.probeNonce = null;
    this.probeAt = null;
    this.fallbackAt = null;
    this.restartAt = null;
    this.restartDelay = RESTART_FIRST_MS;
    this.rtoAt = null;
    this.sender.rewind();
    this.setMode("p2p");
  }
  enterRelay(now) {
    if (this.mode === "relay" || this.mode === "closed") return;
    if (!this.relayUsable) {
      if (this.mode === "p2p") this.setMode("connecting");
      this.events.push({ type: "error", code: "not_attested", message: `the relay path is refused: ${this.relayRefusal || "missing"}` });
      this.scheduleRestart(now);
      return;
    }
    this.fallbackAt = null;
    this.sender.rewind();
    this.rto = this.rtoBase;
    this.rtoAt = null;
    this.setMode("relay");
    this.scheduleRestart(now);
    if (this.channelOpen && !this.forced) this.probeAt = now + PROBE_INTERVAL_MS;
  }
  scheduleRestart(now) {
    if (this.restartAt === null) {
      this.restartDelay = RESTART_FIRST_MS;
      this.restartAt = now + RESTART_FIRST_MS;
    }
  }
  setMode(mode) {
    if (this.mode === mode) return;
    this.mode = mode;
    this.events.push({ type: "mode", mode });
    if (!this.opened && (mode === "p2p" || mode === "relay")) {
      this.opened = true;
      this.events.push({ type: "open", mode });
    }
  }
  finish(reason) {
    this.sender.rejectAll("link_closed", "the link closed before the message was accepted");
    this.probeAt = null;
    this.fallbackAt = null;
    this.restartAt = null;
    this.rtoAt = null;
    this.setMode("closed");
    this.events.push({ type: "close", reason });
  }
  protocolError(message, fatal) {
    this.stats.malformed++;
    this.events.push({ type: "error", code: "protocol_error", message });
    if (fatal) this.finish("protocol_error");
  }
  queueControl(path, f) {
    const full = { srcEpoch: this.epoch, dstEpoch: this.remoteEpoch, ...f };
    const frame = encodeFrame(full);
    if (f.kind === "ack") {
      const i = this.control.findIndex((c) => c.ack && c.path === path && c.dstEpoch === full.dstEpoch);
      if (i >= 0) this.control.splice(i, 1);
    }
    if (this.control.length >= MAX_CONTROL_FRAMES) this.control.shift();
    this.control.push({ path, frame, ack: f.kind === "ack", dstEpoch: full.dstEpoch });
    this.stats[path === "p2p" ? "p2pBytes" : "relayBytes"] += frame.length;
    if (path === "relay" && this.bucketRate > 0) this.bucket -= frame.length + this.overhead;
  }
  dataFrame(path, f) {
    const frame = encodeFrame({
      kind: "data",
      srcEpoch: this.epoch,
      dstEpoch: this.remoteEpoch,
      number: f.seq,
      end: f.end,
      binary: f.binary,
      payload: f.payload
    });
    this.stats[path === "p2p" ? "p2pBytes" : "relayBytes"] += frame.length;
    return { path, frame };
  }
  refill(now) {
    if (now > this.bucketAt) {
      this.bucket = Math.min(this.bucketCap, this.bucket + (now - this.bucketAt) * this.bucketRate);
      this.bucketAt = now;
    }
  }
};

// src/link.js
var LABEL = "turnpike.link.v1";
var HIGH_WATER = 1048576;
var LOW_WATER = 262144;
var MAX_QUEUED_CANDIDATES = 256;
var MAX_WAITING_SIGNAL_BYTES = 1048576;
var WAITING_SIGNAL_OVERHEAD = 256;
function randomU32() {
  const a = new Uint32Array(1);
  do
    crypto.getRandomValues(a);
  while (a[0] === 0);
  return a[0];
}
function toBytes(data) {
  if (typeof data === "string" || data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}
var Link = class extends Emitter {
  constructor(session, peerId, { initiator }) {
    super();
    this.session = session;
    this.peerId = peerId;
    this.initiator = initiator;
    this.polite = compareBytes(session.peerId, peerId) < 0;
    const o = session.options;
    this.epoch = randomU32();
    this.core = new LinkCore({
      epoch: this.epoch,
      now: performance.now(),
      nonceSeed: randomU32() * 65536,
      fallbackAfterMs: o.fallbackAfterMs,
      maxBufferedBytes: o.maxBufferedBytes,
      sendTimeoutMs: o.sendTimeoutMs,
      relayBytesPerSec: session.limits?.relay_bytes_per_sec ?? null,
      relayOverheadBytes: SEAL_OVERHEAD + 1 + peerId.length
    });
    this._pending = /* @__PURE__ */ new Map();
    this._token = 0;
    this._timer = null;
    this._driving = false;
    this._remoteSigEpoch = 0;
    this._signalChain = Promise.resolve();
    this._waitingSignalBytes = 0;
    this._candidateTypes = { local: null, remote: null };
    this._closed = false;
    this._checkRelay();
    this._newPeerConnection();
    this._drive();
  }
  /** "connecting" | "p2p" | "relay" | "closed" */
  get mode() {
    return this.core.mode;
  }
  /**
   * Sends a message (a string, or bytes). Resolves once the message is in the link's buffer
   * (it will be delivered unless the link closes); rejects with a TurnpikeError whose `code`
   * is `message_too_large`, `send_timeout` or `link_closed`.
   */
  send(data) {
    const bytes = toBytes(data);
    if (bytes === null) return Promise.reject(new TurnpikeError("bad_message", "send takes a string or bytes"));
    return new Promise((resolve, reject) => {
      const token = ++this._token;
      this._pending.set(token, { resolve, reject });
      this.core.send(performance.now(), token, bytes);
      this._drive();
    });
  }
  /** `{ mode, sent, received, p2pBytes, relayBytes, rttMs, localCandidateType, remoteCandidateType }` */
  stats() {
    const s = this.core.snapshot();
    return {
      mode: s.mode,
      sent: s.sent,
      received: s.received,
      p2pBytes: s.p2pBytes,
      relayBytes: s.relayBytes,
      rttMs: s.rttMs,
      localCandidateType: this._candidateTypes.local,
      remoteCandidateType: this._candidateTypes.remote
    };
  }
  /** While on, the link sends on the relay and does not return to p2p; off: the usual rules. */
  forceRelay(on) {
    this.core.forceRelay(performance.now(), Boolean(on));
    this._drive();
  }
  /** Closes the link: `CLOSE` to the peer, waiting sends rejected with `link_closed`. */
  close() {
    this._close("local");
  }
  // ---- peer connection ----------------------------------------------------------------------
  _newPeerConnection() {
    const o = this.session.options;
    const config = { iceServers: this.session._iceServers() };
    if (o.iceTransportPolicy) config.iceTransportPolicy = o.iceTransportPolicy;
    const RTC = o.RTCPeerConnection || globalThis.RTCPeerConnection;
    const pc = new RTC(config);
    const dc = pc.createDataChannel(LABEL, { negotiated: true, id: 0, ordered: true, protocol: LABEL });
    dc.binaryType = "arraybuffer";
    dc.bufferedAmountLowThreshold = LOW_WATER;
    this.pc = pc;
    this.dc = dc;
    this._makingOffer = false;
    this._ignoreOffer = false;
    this._candidates = [];
    const current = () => this.pc === pc && !this._closed;
    dc.onopen = () => current() && this._input((now) => this.core.channelOpened(now));
    dc.onclose = () => {
      if (!current()) return;
      this._input((now) => this.core.channelClosed(now));
      if (this.pc.connectionState !== "closed") this._replacePeerConnection();
    };
    dc.onmessage = (e) => current() && this._input((now) => this.core.handleFrame(now, "p2p", new Uint8Array(e.data)));
    dc.onbufferedamountlow = () => current() && this._input(() => this.core.setP2pWritable(true));
    pc.onicecandidate = (e) => {
      if (!current()) return;
      this._signal("webrtc_ice_candidate", { candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    pc.oniceconnectionstatechange = () => {
      if (!current()) return;
      const state = pc.iceConnectionState;
      this._input((now) => this.core.iceStateChanged(now, state));
      if (state === "connected" || state === "completed") this._refreshCandidateTypes();
    };
    pc.onnegotiationneeded = async () => {
      if (!current()) return;
      if (!this.initiator && !pc.remoteDescription) return;
      try {
        this._makingOffer = true;
        await pc.setLocalDescription();
        if (current()) this._signal("webrtc_offer", { description: pc.localDescription.toJSON() });
      } catch (e) {
        this._localError("negotiation_failed", e);
      } finally {
        this._makingOffer = false;
      }
    };
  }
  _replacePeerConnection() {
    const old = this.pc;
    const wasOpen = this.dc?.readyState === "open";
    this._newPeerConnection();
    if (wasOpen) this._input((now) => this.core.channelClosed(now));
    try {
      old.close();
    } catch {
    }
  }
  _signal(type, body) {
    if (this._closed) return;
    this.session._signal(type, this.peerId, { link: 1, epoch: this.epoch, ...body });
  }
  /**
   * Applies the peer's signaling messages one after the other: every state check below must
   * see the state the previous message left. (Two answers to one offer, the peer answering
   * an offer we sent again when it joined, both passed the "have-local-offer" check while the
   * first was still being applied, and the second failed in state "stable".)
   */
  _onSignal(type, payload, size) {
    if (this._closed) return;
    const cost = size + WAITING_SIGNAL_OVERHEAD;
    if (this._waitingSignalBytes + cost > MAX_WAITING_SIGNAL_BYTES) {
      this._localError("negotiation_failed", `${type} dropped: ${MAX_WAITING_SIGNAL_BYTES} bytes of signaling already waiting`);
      return;
    }
    this._waitingSignalBytes += cost;
    this._signalChain = this._signalChain.then(() => this._applySignal(type, payload)).catch((e) => this._localError("negotiation_failed", e)).finally(() => this._waitingSignalBytes -= cost);
  }
  async _applySignal(type, payload) {
    if (this._closed) return;
    const epoch = payload.epoch;
    if (!Number.isInteger(epoch) || epoch <= 0) return;
    if (this._remoteSigEpoch !== 0 && epoch !== this._remoteSigEpoch) {
      if (type === "webrtc_offer") {
        this._replacePeerConnection();
      } else if (epoch !== this.core.remoteEpoch) {
        return;
      }
    }
    this._remoteSigEpoch = epoch;
    const pc = this.pc;
    try {
      if (type === "webrtc_ice_candidate") {
        const c = payload.candidate;
        if (c !== null && (typeof c !== "object" || typeof c.candidate !== "string")) return;
        if (!pc.remoteDescription) {
          if (this._candidates.length < MAX_QUEUED_CANDIDATES) this._candidates.push(c);
          return;
        }
        await this._addCandidate(pc, c);
        return;
      }
      const d = payload.description;
      if (!d || typeof d.sdp !== "string" || d.type !== "offer" && d.type !== "answer") return;
      if (type === "webrtc_offer" && d.type !== "offer") return;
      if (type === "webrtc_answer" && d.type !== "answer") return;
      const collision = d.type === "offer" && (this._makingOffer || pc.signalingState !== "stable");
      this._ignoreOffer = !this.polite && collision;
      if (this._ignoreOffer) return;
      if (d.type === "answer" && pc.signalingState !== "have-local-offer") return;
      await pc.setRemoteDescription({ type: d.type, sdp: d.sdp });
      for (const c of this._candidates.splice(0)) await this._addCandidate(pc, c);
      if (d.type === "offer") {
        await pc.setLocalDescription();
        if (this.pc === pc) this._signal("webrtc_answer", { description: pc.localDescription.toJSON() });
      }
    } catch (e) {
      if (!this._ignoreOffer) this._localError("negotiation_failed", e);
    }
  }
  async _addCandidate(pc, c) {
    try {
      await pc.addIceCandidate(c === null ? void 0 : c);
    } catch (e) {
      if (!this._ignoreOffer) this._localError("negotiation_failed", e);
    }
  }
  _restartIce() {
    if (this._closed) return;
    const pc = this.pc;
    if (!this.initiator && pc.remoteDescription) return;
    this.initiator = true;
    if (pc.signalingState === "have-local-offer" && pc.localDescription) {
      this._signal("webrtc_offer", { description: pc.localDescription.toJSON() });
      return;
    }
    if (pc.connectionState === "failed" || pc.connectionState === "closed") {
      this._replacePeerConnection();
      return;
    }
    pc.restartIce();
    if (!pc.remoteDescription && pc.signalingState === "stable") pc.onnegotiationneeded?.();
  }
  async _refreshCandidateTypes() {
    try {
      const stats = await this.pc.getStats();
      let pair = null;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      });
      if (!pair) {
        stats.forEach((s) => {
          if (!pair && s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
        });
      }
      if (!pair) return;
      this._candidateTypes = {
        local: stats.get(pair.localCandidateId)?.candidateType ?? null,
        remote: stats.get(pair.remoteCandidateId)?.candidateType ?? null
      };
    } catch {
    }
  }
  // ---- from the session ---------------------------------------------------------------------
  _onRelayFrame(frame) {
    if (this._closed) return;
    this._input((now) => this.core.handleFrame(now, "relay", frame));
  }
  _registryError(err) {
    const code = err.code === "unknown_peer" || err.code === "undelivered" ? err.code : err.code;
    this.emit("error", new TurnpikeError(code, err.message));
  }
  /** The peer (re)joined or the session got a new welcome: new key, maybe a lost offer. */
  _peerChanged(joined = false) {
    if (this._closed) return;
    this._checkRelay();
    if (joined && this.core.mode !== "p2p") this._restartIce();
    this._drive();
  }
  _sessionReconnected() {
    this._peerChanged(true);
  }
  _checkRelay() {
    const verdict = this.session._relayVerdict(this.peerId);
    this.core.setRelayUsable(performance.now(), verdict.ok, verdict.ok ? null : verdict.reason);
  }
  // ---- driving the core ---------------------------------------------------------------------
  _input(fn) {
    fn(performance.now());
    this._drive();
  }
  _drive() {
    if (this._driving) return;
    this._driving = true;
    try {
      const now = performance.now();
      for (let t; t = this.core.pollTransmit(now); ) {
        if (t.path === "p2p") {
          if (this.dc.readyState !== "open") continue;
          try {
            this.dc.send(t.frame);
          } catch {
            continue;
          }
          if (this.dc.bufferedAmount > HIGH_WATER) this.core.setP2pWritable(false);
        } else {
          this.session._sendRelay(this.peerId, t.frame);
        }
      }
      for (let e; e = this.core.pollEvent(); ) this._dispatch(e);
      clearTimeout(this._timer);
      this._timer = null;
      const at = this.core.pollTimeout(now);
      if (at !== null) {
        this._timer = setTimeout(() => {
          this._timer = null;
          this._input((t) => this.core.handleTimeout(t));
        }, Math.max(0, Math.ceil(at - now)));
      }
    } finally {
      this._driving = false;
    }
  }
  _dispatch(e) {
    switch (e.type) {
      case "accepted":
        this._pending.get(e.token)?.resolve();
        this._pending.delete(e.token);
        return;
      case "rejected":
        this._pending.get(e.token)?.reject(new TurnpikeError(e.code, e.message));
        this._pending.delete(e.token);
        return;
      case "open":
        this.emit("open", { mode: e.mode });
        return;
      case "mode":
        if (e.mode === "p2p") this._refreshCandidateTypes();
        if (e.mode !== "closed") this.emit("mode", e.mode);
        return;
      case "message":
        this.emit("message", e.data);
        return;
      case "error":
        this.emit("error", new TurnpikeError(e.code, e.message));
        return;
      case "restart_ice":
        queueMicrotask(() => this._restartIce());
        return;
      case "remote_epoch":
        if (e.previous !== 0) {
          queueMicrotask(() => {
            if (this._closed || e.epoch === this._remoteSigEpoch) return;
            this._remoteSigEpoch = e.epoch;
            this.initiator = true;
            this._replacePeerConnection();
          });
        }
        return;
      case "close":
        this._teardown(e.reason);
    }
  }
  _close(reason) {
    if (this._closed) return;
    this.core.close(performance.now(), reason);
    this._drive();
  }
  _teardown(reason) {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    const { pc, dc } = this;
    setTimeout(() => {
      try {
        dc.close();
        pc.close();
      } catch {
      }
    }, 100);
    this.session._forget(this);
    this.emit("mode", "closed");
    this.emit("close", { reason });
  }
  _localError(code, e) {
    this.emit("error", new TurnpikeError(code, String(e?.message || e)));
  }
};

// src/session.js
var SUBPROTOCOL = "turnpike.registry.v1";
var RECONNECT_FIRST_MS = 1e3;
var RECONNECT_MAX_MS = 3e4;
var CONNECT_TIMEOUT_MS = 15e3;
var MAX_DEPARTED = 64;
var SIGNAL_TYPES = /* @__PURE__ */ new Set(["webrtc_offer", "webrtc_answer", "webrtc_ice_candidate"]);
async function connect(options) {
  const session = new Session(options);
  await session._start();
  return session;
}
var Session = class extends Emitter {
  constructor(options) {
    super();
    const urls = options && (Array.isArray(options.urls) ? options.urls : typeof options.url === "string" ? [options.url] : null);
    if (!urls || urls.length === 0 || !urls.every((u) => typeof u === "string" && u.length > 0)) {
      throw new TypeError("connect: `url` or a non-empty `urls` array is required");
    }
    if (!options.token && typeof options.getToken !== "function") {
      throw new TypeError("connect: `token` or `getToken` is required");
    }
    this.options = { ...options };
    this._urls = [...urls];
    this._urlIndex = 0;
    const secret = options.secretKey ? fromBase64(options.secretKey) : null;
    if (options.secretKey && (!secret || secret.length !== 32)) throw new TypeError("connect: `secretKey` must be base64 of 32 bytes");
    this.keyPair = secret ? import_tweetnacl3.default.box.keyPair.fromSecretKey(secret) : import_tweetnacl3.default.box.keyPair();
    this.publicKey = toBase64(this.keyPair.publicKey);
    this.trustedKeys = options.trustedIssuerKeys ? decodeIssuerKeys(options.trustedIssuerKeys) : null;
    this.peerId = null;
    this.project = null;
    this.limits = null;
    this.welcomeIceServers = null;
    this._peers = /* @__PURE__ */ new Map();
    this._departed = /* @__PURE__ */ new Map();
    this._links = /* @__PURE__ */ new Map();
    this._counter = new Counter();
    this._replay = new ReplayTable();
    this._ws = null;
    this._closed = false;
    this._token = options.token || null;
    this._reconnectDelay = RECONNECT_FIRST_MS;
    this._reconnectTimer = null;
    this.relayDrops = { forged: 0, replay: 0, unknown_sender: 0, malformed: 0 };
  }
  /** The other peers of the project: `[{ peerId, publicKey }]`, sorted by peer id. */
  peers() {
    return [...this._peers.values()].map((p) => ({ peerId: p.peerId, publicKey: p.publicKey })).sort((a, b) => a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0);
  }
  /** The link to `peerId` (the same object for the same peer id while it is open). */
  link(peerId) {
    if (typeof peerId !== "string" || peerId.length === 0) throw new TypeError("link: a peer id is required");
    if (this._closed) throw new TurnpikeError("session_closed", "the session is closed");
    if (peerId === this.peerId) throw new TypeError("link: a link to oneself");
    let link = this._links.get(peerId);
    if (!link) {
      link = new Link(this, peerId, { initiator: true });
      this._links.set(peerId, link);
    }
    return link;
  }
  /** Closes every link (`session_closed`) and the registry connection. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    for (const link of [...this._links.values()]) link._close("session_closed");
    this._ws?.close(1e3);
    this._ws = null;
  }
  // ---- used by links -----------------------------------------------------------------------
  /** The ICE servers links use: the app's, else the registry's `welcome.ice_servers`. */
  _iceServers() {
    return this.options.iceServers ?? this.welcomeIceServers ?? [];
  }
  _signal(type, toPeerId, payload) {
    return this._sendJson({ type, to_peer_id: toPeerId, payload });
  }
  /** Seals a link frame for `peerId` and sends it; false when it cannot (unknown peer, no connection). */
  _sendRelay(peerId, frame) {
    const peer = this._peers.get(peerId);
    if (!peer || !this._ws || this._ws.readyState !== 1) return false;
    const counter = this._counter.next(Date.now());
    const sealed = seal(counter, frame, import_tweetnacl3.default.randomBytes(24), peer.key, this.keyPair.secretKey);
    this._ws.send(encodeRelayFrame(peerId, sealed));
    return true;
  }
  /** Whether frames may be sealed for `peerId`: `{ ok }` or `{ ok: false, reason }` (§5). */
  _relayVerdict(peerId) {
    if (!this.trustedKeys) return { ok: true };
    const peer = this._peers.get(peerId);
    if (!peer) return { ok: false, reason: "missing" };
    return verifyAttestation(peer.attestation, {
      trustedKeys: this.trustedKeys,
      peerId,
      project: this.project,
      publicKey: peer.publicKey,
      nowSecs: Math.floor(Date.now() / 1e3)
    });
  }
  _forget(link) {
    if (this._links.get(link.peerId) === link) this._links.delete(link.peerId);
  }
  // ---- connection --------------------------------------------------------------------------
  async _freshToken() {
    if (typeof this.options.getToken === "function") {
      const token = await this.options.getToken();
      if (typeof token !== "string" || token.length === 0) throw new TurnpikeError("token_expired", "getToken gave no token");
      this._token = token;
    }
    return this._token;
  }
  async _start() {
    let token;
    try {
      token = await this._freshToken();
    } catch (e) {
      throw e instanceof TurnpikeError ? e : new TurnpikeError("token_expired", `getToken failed: ${e?.message || e}`);
    }
    for (let i = 0; ; i++) {
      try {
        await this._open(token);
        return;
      } catch (e) {
        if (e?.code !== "connect_failed" || i + 1 >= this._urls.length) throw e;
        this._urlIndex = (this._urlIndex + 1) % this._urls.length;
      }
    }
  }
  /** The registry URL in use (the current node of `urls`). */
  get url() {
    return this._urls[this._urlIndex];
  }
  /** Opens the WebSocket and joins; resolves on `welcome`. */
  _open(token) {
    const WS = this.options.WebSocket || globalThis.WebSocket;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      };
      const timer = setTimeout(() => {
        fail(new TurnpikeError("connect_failed", `no welcome within ${CONNECT_TIMEOUT_MS} ms`));
        ws.close();
      }, CONNECT_TIMEOUT_MS);
      let ws;
      try {
        ws = new WS(this.url, [SUBPROTOCOL, `turnpike.bearer.${token}`]);
      } catch (e) {
        fail(new TurnpikeError("connect_failed", String(e?.message || e)));
        return;
      }
      ws.binaryType = "arraybuffer";
      this._ws = ws;
      ws.onopen = () => {
        const join = { type: "join", public_key: this.publicKey };
        if (this.options.attestation) join.attestation = this.options.attestation;
        ws.send(JSON.stringify(join));
      };
      ws.onmessage = (e) => {
        if (this._ws !== ws) return;
        if (typeof e.data === "string") {
          let msg;
          try {
            msg = JSON.parse(e.data);
          } catch {
            return;
          }
          if (!msg || typeof msg !== "object") return;
          if (!settled && msg.type === "welcome") {
            settled = true;
            clearTimeout(timer);
            this._reconnectDelay = RECONNECT_FIRST_MS;
            this._onMessage(msg);
            resolve();
            return;
          }
          if (!settled && msg.type === "error" && msg.ref === "join") {
            fail(new TurnpikeError(msg.code || "connect_failed", msg.message));
            ws.close(1e3);
            return;
          }
          this._onMessage(msg, e.data.length);
        } else {
          this._onBinary(new Uint8Array(e.data));
        }
      };
      ws.onclose = (e) => {
        if (this._ws !== ws) return;
        this._ws = null;
        if (!settled) {
          fail(new TurnpikeError(e.code === 4003 ? "token_expired" : "connect_failed", `the registry closed the connection (${e.code}${e.reason ? " " + e.reason : ""})`));
          return;
        }
        this._onDisconnect(e.code, e.reason);
      };
    });
  }
  _onDisconnect(code, reason) {
    if (this._closed) return;
    if (code === 4001) {
      this.emit("error", new TurnpikeError("replaced", "another connection joined with this peer id"));
      this._giveUp();
      return;
    }
    if (code === 4006) {
      this.emit("error", new TurnpikeError("disconnected", `an operator disconnected this peer${reason ? " (" + reason + ")" : ""}`));
      this._giveUp();
      return;
    }
    if (code === 4007) {
      this.emit("error", new TurnpikeError("over_budget", `the registry closed the connection: more was queued for this peer than its memory budget${reason ? " (" + reason + ")" : ""}`));
    }
    if (code === 4003 && typeof this.options.getToken !== "function") {
      this.emit("error", new TurnpikeError("token_expired", "the token expired and no getToken was given"));
      this._giveUp();
      return;
    }
    this.emit("disconnected", { code, reason });
    this._scheduleReconnect();
  }
  _scheduleReconnect() {
    this._urlIndex = (this._urlIndex + 1) % this._urls.length;
    const delay = this._reconnectDelay;
    this._reconnectDelay = Math.min(this._reconnectDelay * 2, RECONNECT_MAX_MS);
    this._reconnectTimer = setTimeout(async () => {
      if (this._closed) return;
      let token;
      try {
        token = await this._freshToken();
      } catch (e) {
        this.emit("error", new TurnpikeError("token_expired", `getToken failed: ${e?.message || e}`));
        this._scheduleReconnect();
        return;
      }
      try {
        await this._open(token);
        this.emit("reconnected", {});
        for (const link of this._links.values()) link._sessionReconnected();
      } catch (e) {
        if (this._closed) return;
        if (e.code === "token_expired" && typeof this.options.getToken !== "function") {
          this.emit("error", e);
          this._giveUp();
          return;
        }
        this._scheduleReconnect();
      }
    }, delay);
  }
  _giveUp() {
    this._closed = true;
    for (const link of [...this._links.values()]) link._close("session_closed");
    this.emit("close", {});
  }
  async _reauth() {
    try {
      const token = await this._freshToken();
      if (typeof this.options.getToken !== "function") throw new Error("no getToken");
      this._sendJson({ type: "reauth", token });
    } catch (e) {
      this.emit("error", new TurnpikeError("token_expired", `the token expires and no fresh one came: ${e?.message || e}`));
    }
  }
  _sendJson(message) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(message));
    return true;
  }
  _addPeer(p) {
    if (typeof p?.peer_id !== "string" || typeof p.public_key !== "string") return;
    const key = fromBase64(p.public_key);
    if (!key || key.length !== 32) return;
    this._peers.set(p.peer_id, { peerId: p.peer_id, publicKey: p.public_key, key, attestation: p.attestation });
    this._departed.delete(p.peer_id);
  }
  /** A registry message; `size` is the length of its JSON text. */
  _onMessage(msg, size = 0) {
    switch (msg.type) {
      case "welcome": {
        this.peerId = msg.peer_id;
        this.project = msg.project;
        this.limits = msg.limits || null;
        if (Array.isArray(msg.ice_servers)) this.welcomeIceServers = msg.ice_servers;
        this._peers.clear();
        for (const p of msg.peers || []) this._addPeer(p);
        for (const link of this._links.values()) link._peerChanged();
        return;
      }
      case "peer_joined": {
        this._addPeer(msg);
        const peer = this._peers.get(msg.peer_id);
        if (peer) this.emit("peer_joined", { peerId: peer.peerId, publicKey: peer.publicKey });
        this._links.get(msg.peer_id)?._peerChanged(true);
        return;
      }
      case "peer_left":
        const left = this._peers.get(msg.peer_id);
        if (left) {
          this._peers.delete(msg.peer_id);
          this._departed.delete(msg.peer_id);
          this._departed.set(msg.peer_id, left);
          if (this._departed.size > MAX_DEPARTED) this._departed.delete(this._departed.keys().next().value);
          this.emit("peer_left", { peerId: msg.peer_id });
        }
        return;
      case "error": {
        const err = new TurnpikeError(msg.code || "error", msg.message);
        err.ref = msg.ref ?? null;
        if (msg.id !== void 0) err.id = msg.id;
        if (msg.to_peer_id !== void 0) err.toPeerId = msg.to_peer_id;
        if (msg.ref === "reauth") {
          const e = new TurnpikeError("token_expired", `reauth refused: ${msg.code}`);
          e.cause = err;
          this.emit("error", e);
          return;
        }
        const link = typeof msg.to_peer_id === "string" ? this._links.get(msg.to_peer_id) : null;
        if (link) link._registryError(err);
        else this.emit("error", err);
        return;
      }
      case "token_expiring":
        this._reauth();
        return;
      case "reauthed":
        if (Array.isArray(msg.ice_servers)) this.welcomeIceServers = msg.ice_servers;
        return;
      case "relay_usage":
        this.emit("relay-usage", { bytesPerSec: msg.bytes_per_sec, windowSecs: msg.window_secs, threshold: msg.threshold });
        return;
      default:
        if (SIGNAL_TYPES.has(msg.type) && typeof msg.from_peer_id === "string") this._onSignal(msg, size);
    }
  }
  _onSignal(msg, size) {
    const payload = msg.payload;
    if (!payload || typeof payload !== "object" || payload.link !== 1) {
      this.emit("signal", { type: msg.type, from: msg.from_peer_id, payload });
      return;
    }
    this._incoming(msg.from_peer_id)?._onSignal(msg.type, payload, size);
  }
  /** The link for a peer that reached us first (the `link` event), or the existing one. */
  _incoming(peerId) {
    if (this._closed || peerId === this.peerId) return null;
    let link = this._links.get(peerId);
    if (!link) {
      link = new Link(this, peerId, { initiator: false });
      this._links.set(peerId, link);
      this.emit("link", link);
    }
    return link;
  }
  _onBinary(bytes) {
    const parsed = decodeRelayFrame(bytes);
    if (parsed.error) return void this.relayDrops.malformed++;
    const peer = this._peers.get(parsed.peerId) ?? this._departed.get(parsed.peerId);
    if (!peer) return void this.relayDrops.unknown_sender++;
    const opened = open(parsed.sealed, peer.key, this.keyPair.secretKey);
    if (opened.error) return void this.relayDrops.forged++;
    if (!this._replay.accept(peer.publicKey, opened.counter)) return void this.relayDrops.replay++;
    this._incoming(parsed.peerId)?._onRelayFrame(opened.frame);
  }
};
export {
  Emitter,
  Link,
  LinkCore,
  MAX_FRAME_BYTES,
  MAX_MESSAGE_BYTES,
  Session,
  TurnpikeError,
  connect,
  decodeFrame,
  encodeFrame,
  verifyAttestation
};
