// Reading symrun.yaml: the file (errors that say which path and why), YAML parsed with positions
// kept, and the line:col of any path for error messages.
import fs from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isPair, isScalar, isNode, type Document } from 'yaml';
import { SymError, EXIT } from '../errors.js';
import { type Seg } from './problems.js';

export interface Parsed {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
  data: unknown;
}

export function readConfigFile(file: string, field: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new SymError('ESYM_CONFIG_NOT_FOUND', {
        message: `config file not found: ${file}`,
        field,
        value: file,
        fix:
          field === 'SYMRUN_CONFIG'
            ? 'point SYMRUN_CONFIG at an existing symrun.yaml, or unset it to use the defaults'
            : 'check the path given to --config, or copy one of examples/*/symrun.yaml; without --config symrun uses its defaults',
        exitCode: EXIT.usage,
        cause: err,
      });
    }
    if (code === 'EISDIR') {
      throw new SymError('ESYM_CONFIG_NOT_FOUND', {
        message: `config path is a directory, not a file: ${file}`,
        field,
        value: file,
        fix: `give the path of the YAML file itself, e.g. ${path.join(file, 'symrun.yaml')}`,
        exitCode: EXIT.usage,
        cause: err,
      });
    }
    throw new SymError('ESYM_CONFIG_UNREADABLE', {
      message: `cannot read config file ${file}: ${(err as Error).message}`,
      field,
      value: file,
      fix: 'check the file permissions',
      exitCode: EXIT.usage,
      cause: err,
    });
  }
}

export function parseYaml(file: string, text: string): Parsed {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true, strict: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
    const reason = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    const excerpt = e.message.split('\n').slice(1).join('\n').replace(/^\n+|\n+$/g, '');
    const hint =
      e.code === 'TAB_AS_INDENT'
        ? 'indent with spaces, not tabs'
        : e.code === 'DUPLICATE_KEY'
          ? 'remove one of the two entries with the same key'
          : e.code === 'BAD_INDENT' || e.code === 'MISSING_CHAR' || e.code === 'UNEXPECTED_TOKEN'
            ? 'check the indentation and the ":" after each key; quote values containing ":", "#", "{" or "["'
            : 'check the indentation (spaces only; keys of one mapping at the same depth) on this line and the next';
    throw new SymError('ESYM_CONFIG_SYNTAX', {
      message: `${file}:${pos.line}:${pos.col}: YAML syntax error: ${reason}`,
      field: '--config',
      value: file,
      fix: `fix line ${pos.line} of ${file}: ${hint}`,
      exitCode: EXIT.usage,
      details: { file, line: pos.line, col: pos.col, yamlCode: e.code, excerpt },
    });
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // the yaml library refuses alias bombs ("Excessive alias count") and aliases to unknown anchors here
    throw new SymError('ESYM_CONFIG_SYNTAX', {
      message: `${file}: YAML aliases cannot be expanded: ${(err as Error).message}`,
      field: '--config',
      value: file,
      fix: `write the values out in ${file} instead of repeating them through aliases (*name); at most 100 alias expansions are accepted`,
      exitCode: EXIT.usage,
      cause: err,
    });
  }
  return { file, doc, lines, data };
}

/** line:col of the key (atKey) or value at path, if the YAML has it. */
export function positionOf(parsed: Parsed | undefined, p: readonly Seg[], atKey: boolean): { line: number; col: number } | undefined {
  if (!parsed || p.length === 0) return undefined;
  const parent = p.length === 1 ? parsed.doc.contents : parsed.doc.getIn(p.slice(0, -1), true);
  const last = p[p.length - 1]!;
  let offset: number | undefined;
  if (isMap(parent)) {
    const pair = parent.items.find((it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(last));
    if (pair) {
      const node = atKey || !isNode(pair.value) ? pair.key : pair.value;
      offset = isNode(node) ? node.range?.[0] : undefined;
    }
  } else if (isNode(parent)) {
    const node = parsed.doc.getIn(p as Seg[], true);
    offset = isNode(node) ? node.range?.[0] : parent.range?.[0];
  }
  if (offset === undefined) {
    // fall back to the closest ancestor present in the file
    return p.length > 1 ? positionOf(parsed, p.slice(0, -1), true) : undefined;
  }
  return parsed.lines.linePos(offset);
}
