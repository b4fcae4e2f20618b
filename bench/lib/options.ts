/** Command-line numbers of the bench scripts: each must be a positive integer. */
export function positiveIntegers<K extends string>(values: Record<K, string | undefined>): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const [k, raw] of Object.entries(values) as [K, string | undefined][]) {
    const v = Number(raw);
    if (!Number.isInteger(v) || v <= 0) throw new Error(`--${k} must be a positive integer`);
    out[k] = v;
  }
  return out;
}
