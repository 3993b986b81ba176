// The timeline (timeline.ts) as one self-contained SVG a browser opens: a row per lane, a bar per phase
// (hover: phase, duration), marks for node events and results, frozen windows shaded across all rows,
// a time axis in seconds since the first event. Every element carries data-* attributes (kind, op,
// phase, row) so a program can check the picture against the events.
import type { Timeline } from './timeline.js';

const LABEL_W = 230;
const CHART_W = 960;
const ROW_H = 24;
const TOP = 48;
const BAR_H = 14;

/** Phase colours: the same phase name has the same colour in every operation. */
const PHASE_COLOURS: Record<string, string> = {
  prepare: '#8da0cb', quiesce: '#e78ac3', unplug: '#fc8d62', perform: '#66c2a5', finish: '#a6d854', replug: '#ffd92f',
  reconfigure: '#e5c494', resume: '#b3b3b3', confirm: '#1b9e77', save: '#66c2a5', cont: '#a6d854', commit: '#1b9e77',
  load: '#66c2a5', boot: '#8da0cb', run: '#c7e9c0', image: '#d9d9d9', closure: '#d9d9d9', hosts: '#bdbdbd', agents: '#bdbdbd',
  network: '#e5c494', stage: '#fdd0a2', 'stage-out': '#fdd0a2', teardown: '#d9d9d9', restore: '#66c2a5',
};
const FALLBACK = ['#80b1d3', '#fb8072', '#bebada', '#fdb462', '#b3de69', '#fccde5', '#bc80bd', '#ccebc5'];

function colour(phase: string, kind: string): string {
  if (kind === 'vm') return '#4e79a7';
  const c = PHASE_COLOURS[phase];
  if (c) return c;
  let h = 0;
  for (const ch of phase) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return FALLBACK[h % FALLBACK.length]!;
}

export function xml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A tick step (s) that gives about 8-12 ticks over `spanS`. */
function tickStep(spanS: number): number {
  for (const s of [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]) if (spanS / s <= 12) return s;
  return 14400;
}

export function renderSvg(tl: Timeline, title = 'symrun job timeline'): string {
  const span = Math.max(1, tl.t1 - tl.t0);
  const x = (at: number) => LABEL_W + ((at - tl.t0) / span) * CHART_W;
  const rowY = new Map(tl.rows.map((r, i) => [r.id, TOP + i * ROW_H]));
  // below the timeline, each operation again on its own scale, so its phases can be read
  const detailOps = tl.ops.filter((o) => tl.bars.some((b) => b.op === o.op && b.row === `op:${o.op}`));
  const detailTop = TOP + tl.rows.length * ROW_H + 44;
  const height = detailTop + (detailOps.length ? 18 + detailOps.length * ROW_H * 1.5 : 0) + 10;
  const width = LABEL_W + CHART_W + 20;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  out.push(`<title>${xml(title)}</title>`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="10" y="18" font-size="14" font-weight="bold">${xml(title)}</text>`);
  out.push(`<text x="10" y="34" fill="#555">${xml(`${new Date(tl.t0).toISOString()} .. ${new Date(tl.t1).toISOString()} (${(span / 1000).toFixed(1)} s); shaded: ranks frozen`)}</text>`);
  // row backgrounds and labels
  for (const [i, r] of tl.rows.entries()) {
    const y = rowY.get(r.id)!;
    out.push(`<g class="row" data-row="${xml(r.id)}" data-group="${r.group}"><rect x="0" y="${y}" width="${width}" height="${ROW_H}" fill="${i % 2 ? '#f7f7f7' : '#ffffff'}"/><text x="10" y="${y + 16}">${xml(r.label)}</text></g>`);
  }
  // time axis
  const step = tickStep(span / 1000);
  const axisY = TOP + tl.rows.length * ROW_H;
  for (let s = 0; s * 1000 <= span; s += step) {
    const tx = x(tl.t0 + s * 1000);
    out.push(`<g class="tick"><line x1="${tx.toFixed(1)}" y1="${TOP}" x2="${tx.toFixed(1)}" y2="${axisY}" stroke="#e0e0e0"/><text x="${tx.toFixed(1)}" y="${axisY + 14}" text-anchor="middle" fill="#555">${Number(s.toFixed(1))} s</text></g>`);
  }
  // frozen windows, across every row
  for (const w of tl.frozen) {
    const x0 = x(w.start), x1 = Math.max(x(w.end), x0 + 1);
    out.push(`<rect class="frozen" data-ops="${xml(w.ops.join(','))}" data-ms="${w.end - w.start}" x="${x0.toFixed(1)}" y="${TOP}" width="${(x1 - x0).toFixed(1)}" height="${axisY - TOP}" fill="#d62728" fill-opacity="0.12"><title>ranks frozen ${w.end - w.start} ms (${xml(w.ops.join(', '))})</title></rect>`);
  }
  // bars
  for (const b of tl.bars) {
    const y = rowY.get(b.row);
    if (y === undefined) continue;
    const x0 = x(b.start), x1 = Math.max(x(b.end), x0 + 1.5);
    const ms = b.ms ?? b.end - b.start;
    const tip = b.kind === 'vm' ? `${b.label} on ${b.row.slice(5)} (${(ms / 1000).toFixed(1)} s)` : `${b.phase}: ${ms} ms${b.state === 'failed' ? ' (failed)' : b.state === 'open' ? ' (no end recorded)' : ''}`;
    out.push(`<g class="bar" data-kind="${xml(b.kind)}" data-op="${xml(b.op)}" data-phase="${xml(b.phase)}" data-row="${xml(b.row)}" data-ms="${ms}" data-state="${b.state}">`
      + `<rect x="${x0.toFixed(1)}" y="${y + (ROW_H - BAR_H) / 2}" width="${(x1 - x0).toFixed(1)}" height="${BAR_H}" fill="${colour(b.phase, b.kind)}" stroke="${b.state === 'failed' ? '#d62728' : 'none'}"${b.state === 'open' && b.kind !== 'vm' ? ' fill-opacity="0.5"' : ''}><title>${xml(tip)}</title></rect>`
      + (x1 - x0 > 7 * b.label.length ? `<text x="${(x0 + 3).toFixed(1)}" y="${y + 16}" fill="${b.kind === 'vm' ? '#fff' : '#222'}">${xml(b.label)}</text>` : '')
      + '</g>');
  }
  // marks
  for (const m of tl.marks) {
    const y = rowY.get(m.row);
    if (y === undefined) continue;
    const mx = x(m.at);
    const fill = m.kind === 'node' ? '#d62728' : m.kind === 'result' ? '#222' : '#ff7f0e';
    out.push(`<g class="mark" data-kind="${m.kind}" data-row="${xml(m.row)}"><path d="M${mx.toFixed(1)},${y + 3} l5,9 l-5,9 l-5,-9 z" fill="${fill}"><title>${xml(m.label)}</title></path></g>`);
  }
  // phase detail: one operation per row, its own time scale
  if (detailOps.length) out.push(`<text x="10" y="${detailTop}" font-weight="bold">phases of each operation (each on its own scale)</text>`);
  for (const [i, o] of detailOps.entries()) {
    const y = detailTop + 8 + i * ROW_H * 1.5;
    const mine = tl.bars.filter((b) => b.row === `op:${o.op}`);
    const a = Math.min(...mine.map((b) => b.start)), z = Math.max(...mine.map((b) => b.end), a + 1);
    const dx = (at: number) => LABEL_W + ((at - a) / (z - a)) * CHART_W;
    out.push(`<g class="detail" data-op="${xml(o.op)}"><text x="10" y="${y + 12}">${xml(o.label)}</text><text x="10" y="${y + 25}" fill="#555" font-size="10">${xml(`${o.outcome ?? 'no result'}${o.ms !== undefined ? ` in ${o.ms} ms` : ''}`)}</text>`);
    for (const b of mine) {
      const x0 = dx(b.start), x1 = Math.max(dx(b.end), x0 + 1.5);
      const ms = b.ms ?? b.end - b.start;
      const text = `${b.phase} ${ms}`;
      out.push(`<g class="detail-bar" data-op="${xml(b.op)}" data-phase="${xml(b.phase)}" data-ms="${ms}"><rect x="${x0.toFixed(1)}" y="${y + 2}" width="${(x1 - x0).toFixed(1)}" height="${ROW_H}" fill="${colour(b.phase, b.kind)}" stroke="#fff"${b.state === 'failed' ? ' stroke="#d62728"' : ''}><title>${xml(`${b.phase}: ${ms} ms`)}</title></rect>`
        + (x1 - x0 > 6.2 * text.length ? `<text x="${(x0 + 3).toFixed(1)}" y="${y + 18}">${xml(text)}</text>` : x1 - x0 > 6.2 * b.phase.length ? `<text x="${(x0 + 3).toFixed(1)}" y="${y + 18}">${xml(b.phase)}</text>` : '')
        + '</g>');
    }
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
