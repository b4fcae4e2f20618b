/**
 * Reads the YAML config, substitutes environment variables and validates it against
 * `configSchema`, reporting every problem at once as `file:line:column: path: message`.
 *
 * Problems are located on the YAML nodes themselves (via `LineCounter`), so a zod issue
 * path like `backends.main.port` points at the line the user has to edit.
 */
import { readFileSync } from 'node:fs';
import { isCollection, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Node, Scalar, YAMLError } from 'yaml';
import { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export interface ConfigIssue {
  file: string;
  line: number;
  column: number;
  /** Dotted path of the setting, e.g. `backends.main.port`; empty for the file as a whole. */
  path: string;
  message: string;
}

export type LoadResult = { ok: true; config: Config } | { ok: false; issues: ConfigIssue[] };

type Segment = string | number;

/** A problem before it is given a position: `preferKey` points at the key rather than its value. */
interface Problem {
  path: Segment[];
  message: string;
  preferKey?: boolean;
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE_ENV_REF = new RegExp(`^${ENV_REF.source}$`);

export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): LoadResult {
  const lineCounter = new LineCounter();
  // prettyErrors off: we print our own positions, not yaml's multi-line source excerpts.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const at = (offset: number, path: Segment[], message: string): ConfigIssue => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col, path: path.join('.'), message };
  };
  const fail = (issues: ConfigIssue[]): LoadResult => ({
    ok: false,
    issues: issues.sort((a, b) => a.line - b.line || a.column - b.column),
  });

  // Warnings count as errors: a config that only half-parses must not start a proxy.
  const yamlErrors: YAMLError[] = [...doc.errors, ...doc.warnings];
  if (yamlErrors.length > 0) {
    return fail(yamlErrors.map((e) => yamlIssue(e, doc.contents, at)));
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) {
    return fail([at(0, [], 'the file is empty; it needs at least a "backends" section')]);
  }
  if (!isMap(root)) {
    const keys = Object.keys(configSchema.shape).join(', ');
    return fail([at(root.range?.[0] ?? 0, [], `expected a mapping of settings (${keys}) at the top level, got ${describe(doc.toJS())}`)]);
  }

  const envProblems = substituteEnv(root, env);
  if (envProblems.length > 0) {
    return fail(envProblems.map((p) => at(offsetOf(root, p), p.path, p.message)));
  }

  const data: unknown = doc.toJS();
  const parsed = configSchema.safeParse(data);
  if (parsed.success) return { ok: true, config: parsed.data };
  return fail(explain(parsed.error.issues, [], configSchema, data).map((p) => at(offsetOf(root, p), p.path, p.message)));
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, issues: [{ file, line: 1, column: 1, path: '', message: `cannot read config file: ${(err as Error).message}` }] };
  }
  return parseConfig(text, file, env);
}

export function formatIssues(issues: ConfigIssue[]): string {
  return issues.map((i) => `${i.file}:${i.line}:${i.column}: ${i.path ? `${i.path}: ` : ''}${i.message}`).join('\n');
}

function yamlIssue(err: YAMLError, root: unknown, at: (offset: number, path: Segment[], message: string) => ConfigIssue): ConfigIssue {
  const offset = err.pos[0];
  switch (err.code) {
    case 'DUPLICATE_KEY': {
      // The tree is intact around a duplicate key, so it can name the setting; after other
      // syntax errors it is not, and a path would mislead.
      const path = pathAt(root, offset);
      return at(offset, path, `duplicate key "${path[path.length - 1]}"; a key may appear only once in a mapping`);
    }
    case 'MULTIPLE_DOCS':
      return at(offset, [], 'the file holds more than one YAML document ("---"); keep only one');
    default:
      return at(offset, [], err.message);
  }
}

/**
 * Replaces `${NAME}` and `${NAME:-default}` in string values (not keys) in place.
 * A plain (unquoted) value that is exactly one reference becomes a number or boolean when
 * the text is one, just as if it had been written literally; quoting keeps it a string.
 */
function substituteEnv(root: Node, env: NodeJS.ProcessEnv): Problem[] {
  const problems: Problem[] = [];
  eachScalar(root, [], (scalar, path) => {
    if (typeof scalar.value !== 'string' || !scalar.value.includes('${')) return;
    const source = scalar.value;
    if (source.replace(ENV_REF, '').includes('${')) {
      problems.push({ path, message: 'malformed environment reference; write ${NAME} or ${NAME:-default}' });
      return;
    }
    const result = source.replace(ENV_REF, (_, name: string, fallback: string | undefined) => {
      const value = env[name];
      // Shell semantics: `:-` also replaces an empty value.
      if (fallback !== undefined) return value ? value : fallback;
      if (value === undefined) {
        problems.push({ path, message: `environment variable ${name} is not set; set it or write \${${name}:-default}` });
        return '';
      }
      return value;
    });
    scalar.value = scalar.type === 'PLAIN' && WHOLE_ENV_REF.test(source) ? coerce(result) : result;
  });
  return problems;
}

function coerce(text: string): string | number | boolean {
  if (text === 'true' || text === 'false') return text === 'true';
  if (/^-?\d+$/.test(text) && Number.isSafeInteger(Number(text))) return Number(text);
  return text;
}

function eachScalar(node: unknown, path: Segment[], fn: (scalar: Scalar, path: Segment[]) => void): void {
  if (isScalar(node)) fn(node, path);
  else if (isMap(node)) for (const pair of node.items) eachScalar(pair.value, [...path, keyName(pair.key)], fn);
  else if (isSeq(node)) node.items.forEach((item, i) => eachScalar(item, [...path, i], fn));
}

function keyName(key: unknown): string {
  return String(isScalar(key) ? key.value : key);
}

/** Turns zod issues (paths relative to `base`, checked by `schema`) into problems a person can act on. */
function explain(issues: readonly z.core.$ZodIssue[], base: Segment[], schema: z.ZodType | undefined, data: unknown): Problem[] {
  return issues.flatMap((issue): Problem[] => {
    const rel = issue.path as Segment[];
    const path = [...base, ...rel];
    const value = valueAt(data, rel);
    switch (issue.code) {
      case 'invalid_type': {
        if (value === undefined && path.length > 0) {
          return [{ path: path.slice(0, -1), message: `missing required key "${path[path.length - 1]}"` }];
        }
        const quoteHint = issue.expected === 'string' && (typeof value === 'number' || typeof value === 'boolean') ? '; quote the value to use it as text' : '';
        return [{ path, message: `expected ${typeName(issue.expected)}, got ${describe(value)}${quoteHint}` }];
      }
      case 'unrecognized_keys': {
        const shape = objectKeys(schemaAt(schema, rel));
        const allowed = shape.length > 0 ? `; allowed keys: ${shape.join(', ')}` : '';
        return issue.keys.map((key) => ({ path: [...path, key], message: `unknown key "${key}"${allowed}`, preferKey: true }));
      }
      case 'invalid_value':
        return [{ path, message: `expected one of ${issue.values.map(String).join(', ')}, got ${describe(value)}` }];
      case 'too_big':
      case 'too_small':
        if (issue.origin !== 'number') return [{ path, message: issue.message }];
        return [{ path, message: boundMessage(issue.code, issue.inclusive !== false, Number(issue.code === 'too_big' ? issue.maximum : issue.minimum), value) }];
      case 'invalid_union':
        return explainUnion(issue, path, schemaAt(schema, rel), value);
      default:
        return [{ path, message: issue.message }];
    }
  });
}

/**
 * zod reports a failed union as "Invalid input" plus every branch's issues. Report only the
 * branch the user most plausibly meant: one whose type matches, then the one sharing the most
 * keys with the input, then the one with the fewest issues.
 */
function explainUnion(issue: z.core.$ZodIssueInvalidUnion, path: Segment[], union: z.ZodType | undefined, value: unknown): Problem[] {
  const branches = issue.errors;
  if (branches.length === 0) return [{ path, message: issue.message }];
  const rootTypeErrors = (errs: z.core.$ZodIssue[]) =>
    errs.filter((e): e is z.core.$ZodIssueInvalidType => e.code === 'invalid_type' && e.path.length === 0);
  if (branches.every((errs) => rootTypeErrors(errs).length > 0)) {
    const expected = [...new Set(branches.flatMap((errs) => rootTypeErrors(errs).map((e) => typeName(e.expected))))];
    return [{ path, message: `expected ${expected.join(' or ')}, got ${describe(value)}` }];
  }
  const options: readonly z.ZodType[] = union instanceof z.ZodUnion ? (union.options as readonly z.ZodType[]) : [];
  const given = value !== null && typeof value === 'object' ? Object.keys(value) : [];
  const rank = (i: number): number[] => {
    const known = objectKeys(options[i]);
    return [rootTypeErrors(branches[i]).length > 0 ? 1 : 0, -given.filter((k) => known.includes(k)).length, branches[i].length];
  };
  let best = 0;
  for (let i = 1; i < branches.length; i++) {
    const [a, b] = [rank(i), rank(best)];
    const cmp = a.findIndex((x, j) => x !== b[j]);
    if (cmp >= 0 && a[cmp] < b[cmp]) best = i;
  }
  return explain(branches[best], path, options[best], value);
}

function boundMessage(code: 'too_big' | 'too_small', inclusive: boolean, bound: number, value: unknown): string {
  const rule = code === 'too_big' ? (inclusive ? 'at most' : 'less than') : inclusive ? 'at least' : 'greater than';
  return `must be ${rule} ${bound}, got ${describe(value)}`;
}

function typeName(expected: string): string {
  const names: Record<string, string> = {
    string: 'a string', number: 'a number', int: 'an integer', boolean: 'true or false', object: 'a mapping', array: 'a list',
  };
  return names[expected] ?? expected;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function valueAt(data: unknown, path: readonly Segment[]): unknown {
  return path.reduce<unknown>((v, seg) => (v !== null && typeof v === 'object' ? (v as Record<Segment, unknown>)[seg] : undefined), data);
}

/** Peels wrappers that don't change which keys an object accepts (defaults, optionals, transforms). */
function unwrap(schema: z.ZodType): z.ZodType {
  for (;;) {
    if (schema instanceof z.ZodDefault || schema instanceof z.ZodOptional) schema = schema.unwrap() as z.ZodType;
    else if (schema instanceof z.ZodPipe) schema = schema.in as z.ZodType;
    else return schema;
  }
}

function schemaAt(schema: z.ZodType | undefined, path: readonly Segment[]): z.ZodType | undefined {
  for (const seg of path) {
    if (schema === undefined) return undefined;
    const s = unwrap(schema);
    if (s instanceof z.ZodObject) schema = (s.shape as Record<string, z.ZodType>)[seg];
    else if (s instanceof z.ZodRecord) schema = s.valueType as z.ZodType;
    else if (s instanceof z.ZodArray) schema = s.element as z.ZodType;
    else return undefined;
  }
  return schema && unwrap(schema);
}

function objectKeys(schema: z.ZodType | undefined): string[] {
  const s = schema && unwrap(schema);
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

/**
 * Source offset for a problem: the node at its path, or, when that node doesn't exist
 * (a missing key), the deepest ancestor that does. Keys are preferred for block mappings
 * and empty values, whose own position is the next line or nowhere.
 */
function offsetOf(root: Node, problem: Problem): number {
  let key: unknown;
  let value: unknown = root;
  let found = true;
  for (const seg of problem.path) {
    const pair = isMap(value) ? value.items.find((p) => keyName(p.key) === String(seg)) : undefined;
    if (pair) [key, value] = [pair.key, pair.value];
    else if (isSeq(value) && typeof seg === 'number' && seg < value.items.length) [key, value] = [undefined, value.items[seg]];
    else {
      found = false;
      break;
    }
  }
  const useKey = isNode(key) && (problem.preferKey || !found || !isNode(value) || (isCollection(value) && !value.flow) || (isScalar(value) && value.value === null));
  const node = useKey ? key : value;
  return (isNode(node) && node.range?.[0]) || 0;
}

/** Path of the innermost key whose entry spans `offset`, so YAML errors can name the setting. */
function pathAt(node: unknown, offset: number): Segment[] {
  if (isMap(node)) {
    for (const pair of node.items) {
      const start = isNode(pair.key) ? pair.key.range?.[0] : undefined;
      const end = (isNode(pair.value) ? pair.value.range?.[2] : undefined) ?? (isNode(pair.key) ? pair.key.range?.[2] : undefined);
      if (start !== undefined && end !== undefined && start <= offset && offset < end) return [keyName(pair.key), ...pathAt(pair.value, offset)];
    }
  } else if (isSeq(node)) {
    const i = node.items.findIndex((item) => isNode(item) && item.range && item.range[0] <= offset && offset < item.range[2]);
    if (i >= 0) return [i, ...pathAt(node.items[i], offset)];
  }
  return [];
}
