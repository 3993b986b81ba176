// Renders the key reference of docs/config.md from CONFIG_SCHEMA, so the docs cannot drift from the
// validator. docs/config.md holds the output between the two markers below; a unit test checks it.
// Regenerate after changing schema.ts:
//   npx tsc -p tsconfig.json && node -e "import('./dist/launcher/src/config/docs.js').then(m => m.writeConfigDocs('docs/config.md'))"
import fs from 'node:fs';
import { CONFIG_SCHEMA, SIZE_PATTERN } from './schema.js';

export const DOCS_BEGIN = '<!-- BEGIN GENERATED from launcher/src/config/schema.ts: do not edit by hand -->';
export const DOCS_END = '<!-- END GENERATED -->';

type Node = Record<string, unknown>;

function esc(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function typeOf(n: Node): string {
  if (typeof n['x-type'] === 'string') return n['x-type'] as string;
  if (Array.isArray(n.enum)) return (n.enum as unknown[]).map((v) => `\`${String(v)}\``).join(' \\| ');
  if (n.pattern === SIZE_PATTERN) return 'size';
  const t = n.type;
  if (t === 'integer') {
    const min = n.minimum as number | undefined, max = n.maximum as number | undefined;
    if (min !== undefined && max !== undefined) return `integer ${min}–${max}`;
    if (min !== undefined) return `integer ≥ ${min}`;
    return 'integer';
  }
  if (t === 'array') {
    const items = (n.items ?? {}) as Node;
    const t = typeOf(items);
    return `list of ${t}${t.endsWith("s") ? "es" : "s"}`;
  }
  if (t === 'object' && n.additionalProperties && typeof n.additionalProperties === 'object') {
    return `map of ${typeOf(n.additionalProperties as Node)}`;
  }
  if (t === 'object') return 'mapping';
  if (typeof t === 'string' && n.pattern) return `${t} (${esc(String(n['x-expect'] ?? 'pattern'))})`;
  if (Array.isArray(t)) return t.join(' or ');
  return String(t ?? 'any');
}

function defaultOf(n: Node): string {
  if (typeof n['x-default'] === 'string') return esc(n['x-default'] as string);
  if (n.default === undefined) return '—';
  return `\`${esc(JSON.stringify(n.default).replace(/^"(.*)"$/, '$1'))}\``;
}

/** Markdown tables, one per section, for every key of CONFIG_SCHEMA. */
export function renderConfigDocs(): string {
  const root = CONFIG_SCHEMA as unknown as Node;
  const props = root.properties as Record<string, Node>;
  const top: Array<[string, Node]> = [];
  const sections: Array<[string, Node]> = [];
  for (const [k, n] of Object.entries(props)) {
    if (n.type === 'object' && n.properties) sections.push([k, n]);
    else {
      top.push([k, n]);
      // a key that is a value or a mapping (image: auto | { disk: FILE }): its mapping's keys follow it
      if (n.properties) for (const [c, cn] of Object.entries(n.properties as Record<string, Node>)) top.push([`${k}.${c}`, cn]);
    }
  }
  const table = (rows: Array<[string, Node]>) =>
    [
      '| Key | Type | Default | Meaning |',
      '| --- | --- | --- | --- |',
      ...rows.map(([k, n]) => `| \`${k}\` | ${typeOf(n)} | ${defaultOf(n)} | ${esc(String(n.description ?? ''))} |`),
    ].join('\n');

  const out: string[] = [DOCS_BEGIN, '', '### Top-level keys', '', table(top)];
  for (const [k, n] of sections) {
    const sub = Object.entries(n.properties as Record<string, Node>).map(([c, cn]) => [`${k}.${c}`, cn] as [string, Node]);
    out.push('', `### \`${k}\``, '', esc(String(n.description ?? '')), '', table(sub));
  }
  out.push('', DOCS_END);
  return out.join('\n');
}

/** Replace the generated part of a markdown text (between the markers) with renderConfigDocs(). */
export function updateConfigDocs(markdown: string): string {
  const a = markdown.indexOf(DOCS_BEGIN), b = markdown.indexOf(DOCS_END);
  if (a < 0 || b < a) return `${markdown.trimEnd()}\n\n${renderConfigDocs()}\n`;
  return markdown.slice(0, a) + renderConfigDocs() + markdown.slice(b + DOCS_END.length);
}

export function writeConfigDocs(file: string): void {
  const cur = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# symrun configuration\n';
  fs.writeFileSync(file, updateConfigDocs(cur));
}
