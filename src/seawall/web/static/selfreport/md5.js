// MD5 (RFC 1321), incremental: WebCrypto has none. Used only to match exact copies of a file.

const S = [
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];
// K[i] = floor(2**32 * |sin(i + 1)|)
const K = new Int32Array(64);
for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 4294967296) | 0;

export class MD5 {
  constructor() {
    this.state = new Int32Array([0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476]);
    this.buffer = new Uint8Array(64);
    this.buffered = 0;
    this.length = 0; // bytes so far
    this.words = new Int32Array(16);
  }

  block(bytes, offset) {
    const w = this.words;
    for (let i = 0; i < 16; i++) {
      const p = offset + 4 * i;
      w[i] = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16) | (bytes[p + 3] << 24);
    }
    let [a, b, c, d] = this.state;
    for (let i = 0; i < 64; i++) {
      let f;
      let g;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const sum = (a + f + K[i] + w[g]) | 0;
      a = d;
      d = c;
      c = b;
      b = (b + ((sum << S[i]) | (sum >>> (32 - S[i])))) | 0;
    }
    const st = this.state;
    st[0] = (st[0] + a) | 0;
    st[1] = (st[1] + b) | 0;
    st[2] = (st[2] + c) | 0;
    st[3] = (st[3] + d) | 0;
  }

  update(bytes) {
    let i = 0;
    this.length += bytes.length;
    if (this.buffered) {
      while (this.buffered < 64 && i < bytes.length) this.buffer[this.buffered++] = bytes[i++];
      if (this.buffered < 64) return this;
      this.block(this.buffer, 0);
      this.buffered = 0;
    }
    for (; i + 64 <= bytes.length; i += 64) this.block(bytes, i);
    while (i < bytes.length) this.buffer[this.buffered++] = bytes[i++];
    return this;
  }

  hex() {
    const bits = this.length * 8;
    const pad = new Uint8Array(((this.buffered < 56 ? 56 : 120) - this.buffered) + 8);
    pad[0] = 0x80;
    const n = pad.length - 8;
    // Length in bits, little-endian 64-bit (files under 2**53 bytes).
    const lo = bits % 4294967296;
    const hi = Math.floor(bits / 4294967296);
    for (let k = 0; k < 4; k++) {
      pad[n + k] = (lo >>> (8 * k)) & 255;
      pad[n + 4 + k] = (hi >>> (8 * k)) & 255;
    }
    const length = this.length;
    this.update(pad);
    this.length = length;
    let out = "";
    for (const word of this.state) {
      for (let k = 0; k < 4; k++) out += ((word >>> (8 * k)) & 255).toString(16).padStart(2, "0");
    }
    return out;
  }
}

export function md5Hex(bytes) {
  return new MD5().update(bytes).hex();
}
