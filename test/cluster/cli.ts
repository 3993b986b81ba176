// scripts/slurm-lab: drive the Slurm lab of test/cluster/slurm.ts by hand (demos, debugging).
//   start N [--name X] [--node-layer] [--prolog P] [--epilog P] [--health-check P] [--health-check-interval S] [--cpus N] [--conf LINE]...
//   stop [--name X | --all]   status [--name X]   drain NODE REASON...   undrain NODE   crash NODE   restart NODE
//   exec NODE -- CMD...   (NODE "ctl" runs a Slurm client on the controller: exec ctl -- sinfo)
//   cleanup                   (remove every lab, including ones left behind by killed processes)
import { renderError, SymError, EXIT } from '../../launcher/src/errors.js';
import { nodeCondition } from '../../launcher/src/slurm/index.js';
import { cleanupStale, listLabs, labRunning, openSlurmLab, startSlurmLab, LAB_DEFAULTS, LAB_ROOT, type StopReport } from './slurm.js';

const USAGE = `usage: scripts/slurm-lab COMMAND [--name LAB]
  start N [--node-layer] [--prolog P] [--epilog P] [--health-check P] [--health-check-interval S] [--cpus N] [--conf LINE]...
  stop [--all]          remove the lab (every process, namespace, link, mount, file)
  status                nodes and their states
  drain NODE REASON...  undrain NODE  crash NODE  restart NODE
  exec NODE -- CMD...   run CMD inside a node (NODE "ctl": a Slurm client on the controller)
  cleanup               remove every lab, also ones left behind by killed processes
default lab name: ${LAB_DEFAULTS.name}; state under ${LAB_ROOT}/NAME`;

function usage(msg: string): SymError {
  return new SymError('ESYM_USAGE', { message: msg, fix: USAGE, exitCode: EXIT.usage });
}

interface Parsed {
  cmd: string;
  pos: string[];
  rest: string[];
  opts: Record<string, string[]>;
}

const VALUED = new Set(['--name', '--prolog', '--epilog', '--health-check', '--health-check-interval', '--cpus', '--conf']);
const FLAGS = new Set(['--all', '--help', '-h', '--node-layer']);

function parse(argv: string[]): Parsed {
  const dd = argv.indexOf('--');
  const head = dd >= 0 ? argv.slice(0, dd) : argv;
  const rest = dd >= 0 ? argv.slice(dd + 1) : [];
  const pos: string[] = [];
  const opts: Record<string, string[]> = {};
  for (let i = 0; i < head.length; i++) {
    const a = head[i]!;
    const eq = a.indexOf('=');
    const key = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    if (VALUED.has(key)) {
      const v = eq > 0 && a.startsWith('--') ? a.slice(eq + 1) : head[++i];
      if (v === undefined) throw usage(`${key} needs a value`);
      (opts[key] ??= []).push(v);
    } else if (FLAGS.has(a)) {
      (opts[a] ??= []).push('1');
    } else if (a.startsWith('-') && a !== '-') {
      throw usage(`unknown option ${a}`);
    } else pos.push(a);
  }
  return { cmd: pos.shift() ?? '', pos, rest, opts };
}

function say(line: string): void {
  process.stdout.write(`slurm-lab: ${line}\n`);
}

function printStop(r: StopReport): void {
  say(`killed ${r.killedPids.length} processes, removed ${r.removed.join(', ') || 'nothing'} (${r.ms.toFixed(0)} ms)`);
}

async function main(argv: string[]): Promise<number> {
  const p = parse(argv);
  const name = p.opts['--name']?.[0] ?? LAB_DEFAULTS.name;
  const one = (k: string) => p.opts[k]?.[0];
  switch (p.cmd) {
    case '':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return p.cmd === '' && !p.opts['--help'] ? EXIT.usage : 0;
    case 'start': {
      const n = Number(p.pos[0]);
      if (!p.pos[0] || !Number.isInteger(n)) throw usage('start needs a node count, e.g. start 4');
      const hci = one('--health-check-interval');
      const cpus = one('--cpus');
      const lab = await startSlurmLab({
        nodes: n, name, prolog: one('--prolog'), epilog: one('--epilog'), healthCheckProgram: one('--health-check'),
        healthCheckInterval: hci === undefined ? undefined : Number(hci), cpusPerNode: cpus === undefined ? undefined : Number(cpus),
        extraConf: p.opts['--conf'], log: say, nodeLayer: !!p.opts['--node-layer'],
      });
      say(`state ${lab.stateDir}; work directory (seen by every node) ${lab.workDir}`);
      say(`try: scripts/slurm-lab exec ctl${name === LAB_DEFAULTS.name ? '' : ` --name ${name}`} -- sinfo`);
      say(`     or: nsenter -t ${lab.controllerPid} -n -u env SLURM_CONF=${lab.confFile} sinfo`);
      return 0;
    }
    case 'stop': {
      const names = p.opts['--all'] ? listLabs() : [name];
      for (const n of names) {
        say(`stopping lab ${n}${labRunning(n) ? '' : ' (not running; removing leftovers)'}`);
        for (const r of await cleanupStale(n)) printStop(r);
      }
      return 0;
    }
    case 'cleanup': {
      const names = listLabs();
      if (names.length === 0) say('no labs');
      for (const n of names) {
        say(`removing lab ${n}`);
        for (const r of await cleanupStale(n)) printStop(r);
      }
      return 0;
    }
    case 'status': {
      const lab = openSlurmLab(name, say);
      say(`lab ${lab.name}: controller ${lab.controllerIp} (pid ${lab.controllerPid}), subnet ${lab.subnet}, state ${lab.stateDir}`);
      const nodes = await lab.showNodes();
      for (const ln of lab.nodes) {
        const sn = nodes.find((x) => x.name === ln.name);
        const st = sn ? `${sn.state.padEnd(24)} ${nodeCondition(sn).padEnd(14)}${sn.reason ? ` reason: ${sn.reason}` : ''}` : '(unknown to slurmctld)';
        say(`  ${ln.name.padEnd(4)} ${ln.ip.padEnd(15)} pid ${String(ln.pid || '-').padEnd(8)} ${st}`);
      }
      const q = await lab.client(['squeue', '-h', '-o', '%i %T %D %N']);
      for (const l of q.stdout.trim().split('\n').filter(Boolean)) say(`  job ${l}`);
      return 0;
    }
    case 'drain': {
      const [node, ...why] = p.pos;
      if (!node) throw usage('drain needs a node, e.g. drain n2 maintenance');
      await openSlurmLab(name, say).drain(node, why.join(' ') || 'slurm-lab drain');
      return 0;
    }
    case 'undrain': {
      if (!p.pos[0]) throw usage('undrain needs a node');
      await openSlurmLab(name, say).undrain(p.pos[0]);
      return 0;
    }
    case 'crash': {
      if (!p.pos[0]) throw usage('crash needs a node');
      await openSlurmLab(name, say).crash(p.pos[0]);
      return 0;
    }
    case 'restart': {
      if (!p.pos[0]) throw usage('restart needs a node');
      await openSlurmLab(name, say).restart(p.pos[0]);
      return 0;
    }
    case 'exec': {
      const node = p.pos[0];
      if (!node || p.rest.length === 0) throw usage('exec needs a node and a command: exec n1 -- hostname');
      const lab = openSlurmLab(name);
      const r = await lab.exec(node, p.rest, { cwd: process.cwd().startsWith('/tmp') ? undefined : process.cwd() });
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      return r.exitCode;
    }
    default:
      throw usage(`unknown command ${p.cmd}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(renderError(e, { debug: !!process.env.SYMRUN_DEBUG }) + '\n');
    if (e instanceof SymError && e.details) process.stderr.write(JSON.stringify(e.details, null, 2) + '\n');
    process.exit(e instanceof SymError ? e.exitCode : EXIT.runtime);
  },
);
