// The import rules of this repository (docs/architecture.md, "Folders and what each may import").
// Checked by `npm run check:deps` (dependency-cruiser), which `npm test` (scripts/test) runs first:
// a violation fails the suite and names the rule, the import (chain) and why the rule exists.
//
// Type-only imports (`import type`) count like any other: the graph is taken from the TypeScript
// sources before compilation (tsPreCompilationDeps), so a type cycle is a cycle too.

/** Pure modules: no I/O, directly or through anything they import (docs/architecture.md, "Pure modules"). */
const PURE = [
  '^launcher/src/protocol/(machine|migration|checkpoint|restart|events)\\.ts$',
  '^launcher/src/migration/deadline\\.ts$',
  '^launcher/src/coordinator/placement\\.ts$',
  '^launcher/src/slurm/(hostlist|scontrol|env|index)\\.ts$',
  '^launcher/src/qmp/codec\\.ts$',
  '^launcher/src/mpi/(launch|detect|transport)\\.ts$',
  '^launcher/src/local/names\\.ts$',
  '^launcher/src/image/modules\\.ts$',
  '^launcher/src/error-codes\\.ts$',
  '^launcher/src/wire/',
  '^launcher/src/node/(names|nft|wire)\\.ts$',
  '^launcher/src/report/(timeline|svg|summary)\\.ts$',
  '^guest/protocol/',
];

/** What counts as I/O: files, sockets, processes, name lookups, and the npm packages that wrap them. */
const IO = [
  '^(fs|fs/promises|net|tls|dgram|http|https|http2|child_process|dns|dns/promises)$',
  '(^|/)node_modules/(execa|node-pty)/',
];

// Layers, lowest first: a module may import its own layer and the ones below, never one above.
const L = 'launcher/src';
const FOUNDATION = [`^${L}/(error-codes|errors|defaults)\\.ts$`, `^${L}/(util|wire|protocol)/`, '^guest/protocol/'];
const PARTS = [`^${L}/(qmp|config|mpi|stage|image|local|report)/`, `^${L}/slurm/(hostlist|scontrol|env|index)\\.ts$`];
const MACHINERY = [`^${L}/(vm|hotplug|migration|checkpoint)/`];
// node/: the root node layer (prolog, epilog, node helper) and its client in the host agent; device/: the
// node's passthrough devices (discovery, claims, vfio binding), root work of the same layer
const AGENTS = [`^${L}/agent/`, `^${L}/node/`, `^${L}/device/`];
const CLUSTER = [`^${L}/slurm/(?!(hostlist|scontrol|env|index)\\.ts$)`];
const COORDINATOR = [`^${L}/coordinator/`];
const COMMANDS = [`^${L}/cli/`, `^${L}/(main|cli)\\.ts$`];
const ABOVE = (...layers) => layers.flat();

const layer = (name, from, above, what) => ({
  name: `layer-${name}`,
  severity: 'error',
  comment: `${what} It may import its own layer and the ones below (foundation < parts < machinery < agent < slurm < coordinator < commands: docs/architecture.md).`,
  from: { path: from },
  to: { path: above },
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Import cycle (type-only imports count). Break it by moving the shared part down a layer or by passing it in (a port, an interface in the lower module).',
      from: {},
      to: { circular: true },
    },
    {
      name: 'guest-not-launcher',
      severity: 'error',
      comment: 'guest/ runs inside the VM and is built into the guest image on its own: it never imports launcher/. What both sides need goes into guest/protocol/ (the wire contract).',
      from: { path: '^guest/' },
      to: { path: '^launcher/' },
    },
    {
      name: 'pure-no-io',
      severity: 'error',
      comment: 'A pure module (the PURE list in .dependency-cruiser.cjs, docs/architecture.md "Pure modules") reaches I/O through this chain. Keep the pure part free of I/O: pass data or a port in, or move the I/O into the caller.',
      from: { path: PURE },
      to: { path: IO, reachable: true },
    },
    {
      name: 'product-not-tests',
      severity: 'error',
      comment: 'launcher/ and guest/ ship; test/ and bench/ do not: product code never imports them.',
      from: { path: '^(launcher|guest)/' },
      to: { path: '^(test|bench)/' },
    },
    layer('foundation', FOUNDATION, ABOVE(PARTS, MACHINERY, AGENTS, CLUSTER, COORDINATOR, COMMANDS),
      'The foundation (error-codes, errors, defaults, util/, wire/, protocol/, guest/protocol/) is imported by everything and imports nothing above it.'),
    layer('parts', PARTS, ABOVE(MACHINERY, AGENTS, CLUSTER, COORDINATOR, COMMANDS),
      'qmp/, config/, mpi/, stage/, image/, local/ build on the foundation only.'),
    layer('machinery', MACHINERY, ABOVE(AGENTS, CLUSTER, COORDINATOR, COMMANDS),
      'vm/, hotplug/, migration/, checkpoint/ are driven by the host agent and the coordinator, never the other way round.'),
    layer('agent', AGENTS, ABOVE(CLUSTER, COORDINATOR, COMMANDS),
      'agent/ (the channel, the host agent, the guest client) knows nothing of Slurm, the coordinator or the command line.'),
    layer('slurm', CLUSTER, ABOVE(COORDINATOR, COMMANDS),
      'slurm/ (codecs, the node watcher, watchd, the feed) does not import the coordinator or the command line.'),
    layer('coordinator', COORDINATOR, COMMANDS,
      'coordinator/ is driven by the command line (main.ts, cli/) and does not import it.'),
  ],
  options: {
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^dist/' },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
