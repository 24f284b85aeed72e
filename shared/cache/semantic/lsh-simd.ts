/**
 * The LSH projections (lsh.ts) of a sparse vector on every hyperplane, two planes at a time in a small
 * WebAssembly SIMD kernel: f64x2 lanes, so each plane's sum is the same IEEE double sum, in the same order,
 * as the JavaScript loop's (WebAssembly has no fused multiply-add: every product and sum is rounded as in
 * JavaScript), and the band values stored entries were indexed under stay bit-identical. It exists because
 * the projection was the largest single item of a unique request's in-process CPU: ~24% of the semantic
 * cache's instructions per miss (callgrind, bench/semantic-miss-cpu.mjs), ~30 non-zero dimensions × 240
 * planes, each a load, a conversion, a multiply and an add in JavaScript, bounds-checked one at a time.
 *
 * The kernel, in the text format (the bytes below are this, assembled by hand; the unit tests compare every
 * bit of its projections with the plain sum):
 *
 *     (func (export "project") (param $m i32) (param $rowBytes i32) (param $offs i32) (param $xs i32)
 *                              (param $acc i32)
 *       (local $k i32) (local $p i32) (local $r1 i32) (local $r2 i32) (local $r3 i32) (local $r4 i32)
 *       (local $x1 v128) (local $x2 v128) (local $x3 v128) (local $x4 v128)
 *       (block $done (loop $rows                              ;; four rows (non-zero dimensions) at a time
 *         (br_if $done (i32.ge_u (local.get $k) (local.get $m)))
 *         (local.set $r1 (i32.add (local.get $offs) (i32.shl (local.get $k) (i32.const 2))))
 *         (local.set $r4 (i32.load offset=12 (local.get $r1)))  ;; r2, r3 (offset 4, 8) likewise, then r1
 *         (local.set $p (i32.add (local.get $xs) (i32.shl (local.get $k) (i32.const 3))))
 *         (local.set $x1 (f64x2.splat (f64.load offset=0 (local.get $p))))  ;; x2..x4 at offset 8, 16, 24
 *         (local.set $p (i32.const 0))
 *         (loop $planes                                       ;; two planes at a time
 *           (v128.store (i32.add (local.get $acc) (local.get $p))
 *             (f64x2.add (f64x2.add (f64x2.add (f64x2.add
 *               (v128.load (i32.add (local.get $acc) (local.get $p)))
 *               (f64x2.mul (local.get $x1) (v128.load (i32.add (local.get $r1) (local.get $p)))))
 *               (f64x2.mul (local.get $x2) (v128.load (i32.add (local.get $r2) (local.get $p)))))
 *               (f64x2.mul (local.get $x3) (v128.load (i32.add (local.get $r3) (local.get $p)))))
 *               (f64x2.mul (local.get $x4) (v128.load (i32.add (local.get $r4) (local.get $p))))))
 *           (br_if $planes (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 16)))
 *                                    (local.get $rowBytes))))
 *         (local.set $k (i32.add (local.get $k) (i32.const 4)))
 *         (br $rows))))
 *
 * Memory: the planes as doubles, dimension-major, each dimension's row padded to an even number of planes
 * (16-byte lanes), then the rows' addresses (i32), the values (f64) and the sums (f64). The caller pads the
 * non-zero dimensions to a multiple of four with value 0 (row 0): adding 0 · w (±0) leaves every sum as it
 * is, since a sum that starts at +0 never becomes -0.
 */
/** The kernel's function body: its locals (6 x i32, 4 x v128), then the code above. */
// prettier-ignore
const BODY = [
  0x02, 0x06, 0x7f, 0x04, 0x7b,
  // block $done, loop $rows: br_if $done (k >= m)
  0x02, 0x40, 0x03, 0x40,
  0x20, 0x05, 0x20, 0x00, 0x4f, 0x0d, 0x01,
  // r1 = offs + k << 2; r4, r3, r2 = i32.load offset 12, 8, 4 (r1); r1 = i32.load offset 0 (r1)
  0x20, 0x02, 0x20, 0x05, 0x41, 0x02, 0x74, 0x6a, 0x21, 0x07,
  0x20, 0x07, 0x28, 0x02, 0x0c, 0x21, 0x0a,
  0x20, 0x07, 0x28, 0x02, 0x08, 0x21, 0x09,
  0x20, 0x07, 0x28, 0x02, 0x04, 0x21, 0x08,
  0x20, 0x07, 0x28, 0x02, 0x00, 0x21, 0x07,
  // p = xs + k << 3; x1..x4 = f64x2.splat (f64.load offset 0, 8, 16, 24 (p))
  0x20, 0x03, 0x20, 0x05, 0x41, 0x03, 0x74, 0x6a, 0x21, 0x06,
  0x20, 0x06, 0x2b, 0x03, 0x00, 0xfd, 0x14, 0x21, 0x0b,
  0x20, 0x06, 0x2b, 0x03, 0x08, 0xfd, 0x14, 0x21, 0x0c,
  0x20, 0x06, 0x2b, 0x03, 0x10, 0xfd, 0x14, 0x21, 0x0d,
  0x20, 0x06, 0x2b, 0x03, 0x18, 0xfd, 0x14, 0x21, 0x0e,
  // p = 0; loop $planes: address acc + p (for the store), v128.load (acc + p)
  0x41, 0x00, 0x21, 0x06,
  0x03, 0x40,
  0x20, 0x04, 0x20, 0x06, 0x6a,
  0x20, 0x04, 0x20, 0x06, 0x6a, 0xfd, 0x00, 0x04, 0x00,
  // + x1 * v128.load (r1 + p), then x2 / r2, x3 / r3, x4 / r4 (f64x2.mul, f64x2.add)
  0x20, 0x0b, 0x20, 0x07, 0x20, 0x06, 0x6a, 0xfd, 0x00, 0x04, 0x00, 0xfd, 0xf2, 0x01, 0xfd, 0xf0, 0x01,
  0x20, 0x0c, 0x20, 0x08, 0x20, 0x06, 0x6a, 0xfd, 0x00, 0x04, 0x00, 0xfd, 0xf2, 0x01, 0xfd, 0xf0, 0x01,
  0x20, 0x0d, 0x20, 0x09, 0x20, 0x06, 0x6a, 0xfd, 0x00, 0x04, 0x00, 0xfd, 0xf2, 0x01, 0xfd, 0xf0, 0x01,
  0x20, 0x0e, 0x20, 0x0a, 0x20, 0x06, 0x6a, 0xfd, 0x00, 0x04, 0x00, 0xfd, 0xf2, 0x01, 0xfd, 0xf0, 0x01,
  // v128.store; br_if $planes ((p = p + 16) < rowBytes); end
  0xfd, 0x0b, 0x04, 0x00,
  0x20, 0x06, 0x41, 0x10, 0x6a, 0x22, 0x06, 0x20, 0x01, 0x49, 0x0d, 0x00,
  0x0b,
  // k = k + 4; br $rows; end loop, end block, end function
  0x20, 0x05, 0x41, 0x04, 0x6a, 0x21, 0x05, 0x0c, 0x00,
  0x0b, 0x0b, 0x0b,
];

/** An unsigned LEB128 number. */
function leb(n: number): number[] {
  const out: number[] = [];
  do {
    const b = n & 0x7f;
    n >>>= 7;
    out.push(n === 0 ? b : b | 0x80);
  } while (n !== 0);
  return out;
}

/** A section: its id, its size, its contents. */
function section(id: number, contents: number[]): number[] {
  return [id, ...leb(contents.length), ...contents];
}

const name = (s: string): number[] => [s.length, ...Buffer.from(s, 'latin1')];

/** The module: the one function, its type, one memory of 1 page (grown by the caller), both exported. */
function moduleBytes(): Uint8Array {
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [0x01, 0x60, 0x05, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x00]),
    ...section(3, [0x01, 0x00]),
    ...section(5, [0x01, 0x00, 0x01]),
    ...section(7, [0x02, ...name('memory'), 0x02, 0x00, ...name('project'), 0x00, 0x00]),
    ...section(10, [0x01, ...leb(BODY.length), ...BODY]),
  ]);
}

/** What this file uses of the WebAssembly API (the project's TypeScript libs do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (mod: WasmModule) => { exports: Record<string, unknown> };
}
type WasmModule = object;
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

let compiled: WasmModule | null | undefined;

/** The compiled kernel, or null where WebAssembly SIMD is not available (the caller projects in JS). */
function kernel(): WasmModule | null {
  if (compiled !== undefined) return compiled;
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  try {
    compiled = wasm ? new wasm.Module(moduleBytes()) : null;
  } catch {
    compiled = null;
  }
  return compiled;
}

/** Bytes of one WebAssembly memory page. */
const PAGE = 65536;

/** The projections of sparse vectors on a fixed set of planes, computed by the SIMD kernel. */
export class SimdProjector {
  /** The sums, one per plane (a view of the kernel's memory, rewritten by each project()). */
  readonly sums: Float64Array;
  private readonly run: (m: number, rowBytes: number, offs: number, xs: number, acc: number) => void;
  private readonly rowBytes: number;
  private readonly offs: Int32Array;
  private readonly xs: Float64Array;
  private readonly all: Float64Array;
  private readonly offsAt: number;
  private readonly xsAt: number;
  private readonly accAt: number;

  /**
   * A projector for `planes` (nPlanes weights per dimension, dimension-major), or undefined where WebAssembly
   * SIMD is not available.
   */
  static of(planes: Float32Array, dims: number, nPlanes: number): SimdProjector | undefined {
    const mod = kernel();
    return mod ? new SimdProjector(mod, planes, dims, nPlanes) : undefined;
  }

  private constructor(mod: WasmModule, planes: Float32Array, dims: number, nPlanes: number) {
    const padded = nPlanes + (nPlanes & 1);
    this.rowBytes = padded * 8;
    const rows = dims * this.rowBytes;
    this.offsAt = rows;
    this.xsAt = this.offsAt + 16 * Math.ceil(((dims + 4) * 4) / 16);
    this.accAt = this.xsAt + (dims + 4) * 8;
    const end = this.accAt + this.rowBytes;
    const instance = new (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly.Instance(mod);
    const memory = instance.exports.memory as WasmMemory;
    const pages = Math.ceil(end / PAGE);
    if (pages > 1) memory.grow(pages - 1);
    const all = new Float64Array(memory.buffer, 0, dims * padded);
    for (let j = 0; j < dims; j++)
      for (let p = 0; p < nPlanes; p++) all[j * padded + p] = planes[j * nPlanes + p]!;
    this.offs = new Int32Array(memory.buffer, this.offsAt, dims + 4);
    this.xs = new Float64Array(memory.buffer, this.xsAt, dims + 4);
    this.all = new Float64Array(memory.buffer, this.accAt, padded);
    this.sums = this.all.subarray(0, nPlanes);
    this.run = instance.exports.project as SimdProjector['run'];
  }

  /**
   * Projects `v` (its non-zero components, in dimension order: those of `nonZero` when given, the indices of
   * its non-zero components in ascending order) into `sums`, and returns `sums`.
   */
  project(v: Float32Array, nonZero?: readonly number[]): Float64Array {
    const offs = this.offs;
    const xs = this.xs;
    const rowBytes = this.rowBytes;
    let m = 0;
    if (nonZero)
      for (let k = 0; k < nonZero.length; k++) {
        const j = nonZero[k]!;
        offs[m] = j * rowBytes;
        xs[m++] = v[j]!;
      }
    else
      for (let j = 0; j < v.length; j++) {
        const x = v[j]!;
        if (x === 0) continue; // hashed n-gram vectors are mostly zeros
        offs[m] = j * rowBytes;
        xs[m++] = x;
      }
    // padding to four rows: value 0 on row 0 adds ±0, which leaves every sum as it is
    while ((m & 3) !== 0) {
      offs[m] = 0;
      xs[m++] = 0;
    }
    this.all.fill(0);
    this.run(m, rowBytes, this.offsAt, this.xsAt, this.accAt);
    return this.sums;
  }
}
