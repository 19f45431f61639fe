// A minimal protobuf *writer* for the few ONNX messages the graph builder emits.
//
// Written here rather than taken from a protobuf library because we only ever serialise
// (never parse), the messages are few and fixed, and large inline tensors must go into the
// output as the caller's bytes without an intermediate object copy. The npm packages that
// carry the ONNX schema pin an old protobufjs and would copy every weight twice.

/** Wire types of the protobuf encoding. */
const VARINT = 0;
const LEN = 2;
const I32 = 5;

/** Growable list of byte chunks; the final message is one concatenation. */
export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private size = 0;

  get length(): number {
    return this.size;
  }

  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }

  private varint(v: bigint | number): void {
    // int64 fields: negative numbers are written as 10-byte two's complement varints.
    let x = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    while (x >= 0x80n) {
      out.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    out.push(Number(x));
    this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    this.tag(field, VARINT);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, I32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, LEN);
    this.varint(b.length);
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: ProtoWriter): this {
    this.tag(field, LEN);
    this.varint(m.size);
    for (const c of m.chunks) this.push(c);
    return this;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}
