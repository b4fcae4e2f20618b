/** Small decoders over Buffer offsets: decode only what a decision needs. */

/** Index just past the NUL that ends the C string starting at `start`, or -1 when it runs past `end`. */
export function cstringEnd(buf: Buffer, start: number, end: number): number {
  const nul = buf.indexOf(0, start);
  return nul === -1 || nul >= end ? -1 : nul + 1;
}

export function readCString(buf: Buffer, start: number, end: number): string | undefined {
  const next = cstringEnd(buf, start, end);
  return next === -1 ? undefined : buf.toString('utf8', start, next - 1);
}

/** Fields of an ErrorResponse/NoticeResponse (body only, without type and length), keyed by field code. */
export function parseErrorFields(buf: Buffer, start: number, end: number): Map<string, string> {
  const fields = new Map<string, string>();
  let o = start;
  while (o < end && buf[o] !== 0) {
    const code = String.fromCharCode(buf[o]);
    const next = cstringEnd(buf, o + 1, end);
    if (next === -1) break;
    fields.set(code, buf.toString('utf8', o + 1, next - 1));
    o = next;
  }
  return fields;
}
