// `symrun watchd`: the cluster-wide node watcher (launcher/src/slurm/watchd.ts). One per cluster, run by
// the admin (slurm-plugins/watchd/: a systemd unit and the README); jobs subscribe to it with
// `slurm.watcher: HOST:PORT` instead of polling slurmctld themselves.
import type { Command } from 'commander';
import { SymError, EXIT } from '../errors.js';
import { SLURM_DEFAULTS } from '../defaults.js';
import { parseDurationMs } from '../config/load.js';
import { connectChannel } from '../agent/channel.js';
import { initKeyFile, parseWatchdAddress, readKeyFile, startWatchd, type WatchdLog } from '../slurm/watchd.js';
import { mungeEncode } from '../slurm/munge.js';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';

export const WATCHD_HELP = `
Polls every node of the cluster with one \`scontrol show node -o\` per interval and sends each
subscribed symrun job the state changes of its own nodes (jobs set slurm.watcher: HOST:PORT), so
slurmctld answers one node-info RPC per interval instead of one per job. A job that cannot reach it
polls slurmctld itself and tries again later. Runs in the foreground until SIGTERM/SIGINT; logs go
to stderr. Set up as a service: slurm-plugins/watchd/README.md.

--auth munge (per user): each job introduces its user with a MUNGE credential only watchd's user can
decode (jobs set slurm.watcherAuth: munge, slurm.watcherUser: the user this runs as); watchd serves a
user only its own jobs (root and SlurmUser: all). --auth key (the default, for sites without munge):
the key file holds the shared secret subscribers authenticate with. Every job user must be able to
read it where their jobs run (e.g. root:symrun, mode 0640, users in group symrun; or mode 0600 if
jobs run symrun as root); only watchd's host needs to write it.

Examples:
  symrun watchd --init-key                        create ${SLURM_DEFAULTS.watchdKeyFile} (mode 0600) if missing
  symrun watchd                                   listen on 0.0.0.0:${SLURM_DEFAULTS.watchdPort}, poll every 1 s
  symrun watchd --listen 10.0.0.1:${SLURM_DEFAULTS.watchdPort} --interval 2s --json
  symrun watchd --stats                           ask the running watchd (127.0.0.1) for its counters

Exit status: 0 stopped by a signal (or --init-key / --stats done); 2 bad usage; 3 no key, or the
address is in use.`;

interface WatchdFlags { listen?: string; key?: string; interval?: string; json?: boolean; initKey?: boolean; stats?: boolean; auth?: string; watchdUser?: string }

export function registerWatchd(program: Command, setExit: (n: number) => void): void {
  program
    .command('watchd')
    .description('cluster-wide Slurm node watcher: one scontrol poll for all nodes, node changes sent to the subscribed jobs (slurm.watcher)')
    .option('--listen <host:port>', `address to listen on (default 0.0.0.0:${SLURM_DEFAULTS.watchdPort})`)
    .option('--auth <mode>', 'key (one shared key file) or munge (per user, MUNGE credentials)', 'key')
    .option('--key <file>', `the shared secret with --auth key (default ${SLURM_DEFAULTS.watchdKeyFile})`)
    .option('--watchd-user <name>', `with --stats --auth munge: the user watchd runs as (default ${SLURM_DEFAULTS.watchdUser})`)
    .option('--interval <time>', `how often to poll slurmctld (default ${SLURM_DEFAULTS.pollIntervalMs / 1000}s)`)
    .option('--json', 'log JSON lines')
    .option('--init-key', 'create the key file (mode 0600) if it does not exist, then exit')
    .option('--stats', 'print the running watchd\'s counters (watch.stats) as JSON, then exit')
    .addHelpText('after', WATCHD_HELP)
    .action(async (f: WatchdFlags) => {
      setExit(await watchdCommand(f));
    });
}

async function watchdCommand(f: WatchdFlags): Promise<number> {
  const keyFile = f.key ?? SLURM_DEFAULTS.watchdKeyFile;
  if (f.initKey) {
    const r = initKeyFile(keyFile);
    const mode = r.mode.toString(8).padStart(4, '0');
    process.stdout.write(r.created
      ? `created ${keyFile} (mode ${mode}); make it readable by the users whose jobs subscribe (slurm-plugins/watchd/README.md)\n`
      : `${keyFile} exists (mode ${mode}): left as it is\n`);
    if (!r.created && (r.mode & 0o004)) process.stderr.write(`symrun watchd: warning: ${keyFile} is readable by every user\n`);
    return 0;
  }
  const addr = parseWatchdAddress(f.listen ?? `0.0.0.0:${SLURM_DEFAULTS.watchdPort}`);
  const auth = f.auth ?? 'key';
  if (auth !== 'key' && auth !== 'munge') throw new SymError('ESYM_USAGE', { message: `--auth must be key or munge: ${auth}`, field: '--auth', value: auth, fix: '--auth munge where munged runs on every node, else --auth key', exitCode: EXIT.usage });
  const secret = auth === 'key' ? readKeyFile(keyFile, '--key') : crypto.randomBytes(32).toString('hex');
  if (f.stats) {
    const host = addr.host === '0.0.0.0' ? '127.0.0.1' : addr.host === '::' ? '::1' : addr.host;
    const intro = auth === 'munge' ? { auth: 'munge', cred: await mungeEncode(secret, f.watchdUser ?? SLURM_DEFAULTS.watchdUser) } : undefined;
    const peer = await connectChannel({ host, port: addr.port, secret, name: `stats (pid ${process.pid})`, timeoutMs: 1, ...(intro ? { intro } : {}) }).catch((e: unknown) => {
      const cause = (e as { cause?: Error }).cause;
      throw new SymError('ESYM_WATCHD_UNREACHABLE', { message: `no watchd at ${host}:${addr.port}: ${cause?.message ?? (e as Error).message}`, fix: 'is it running (systemctl status symrun-watchd)? pass its --listen address', exitCode: EXIT.environment });
    });
    peer.start();
    const s = await peer.call('watch.stats', { subscribers: true }, { timeoutMs: 10_000 });
    peer.close();
    process.stdout.write(JSON.stringify(s, null, 2) + '\n');
    return 0;
  }
  let intervalMs: number = SLURM_DEFAULTS.pollIntervalMs;
  if (f.interval !== undefined) {
    try {
      intervalMs = parseDurationMs(f.interval);
    } catch { intervalMs = NaN; }
    if (!Number.isFinite(intervalMs) || intervalMs < 100) throw new SymError('ESYM_USAGE', { message: `--interval must be a duration of at least 100ms: ${f.interval}`, field: '--interval', value: f.interval, fix: 'e.g. --interval 1s', exitCode: EXIT.usage });
  }
  const log: WatchdLog = f.json
    ? (level, msg, data) => process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...(data ?? {}) }) + '\n')
    : (level, msg) => process.stderr.write(`symrun watchd: ${level === 'warn' ? 'warning: ' : ''}${msg}\n`);
  let w;
  try {
    w = await startWatchd({ host: addr.host, port: addr.port, intervalMs, log, ...(auth === 'munge' ? { munge: {}, privilegedUids: slurmUserUid(log) } : { secret }) });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SymError('ESYM_WATCHD_LISTEN', { message: `cannot listen on ${addr.host}:${addr.port}: ${code ?? (e as Error).message}`, fix: code === 'EADDRINUSE' ? 'another watchd (or program) uses that port: stop it or pass --listen HOST:PORT' : 'pass --listen HOST:PORT with an address of this host', exitCode: EXIT.environment });
  }
  log('info', `listening on ${w.server.address}:${w.server.port}, polling every node every ${intervalMs} ms (pid ${process.pid})`, { listen: `${w.server.address}:${w.server.port}`, intervalMs, pid: process.pid });
  const sig = await new Promise<NodeJS.Signals>((resolve) => {
    for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(s, () => resolve(s));
  });
  const st = w.daemon.stats();
  await w.stop();
  log('info', `${sig}: stopped after ${st.polls} polls (${st.errors} failed, mean ${st.meanMs} ms), ${st.subscribers} subscribers disconnected`, { signal: sig, ...st });
  // nothing should be left, but a daemon must not linger after SIGTERM
  setTimeout(() => process.exit(0), 500).unref();
  return 0;
}

/** SlurmUser's UID (`scontrol show config`), which may see every job with --auth munge; [] if unknown. */
function slurmUserUid(log: WatchdLog): number[] {
  try {
    const text = execFileSync('scontrol', ['show', 'config'], { encoding: 'utf8', timeout: SLURM_DEFAULTS.scontrolTimeoutMs });
    const m = /^SlurmUser\s*=\s*\S*\((\d+)\)/m.exec(text);
    if (m) return [Number(m[1])];
  } catch (e) {
    log('warn', `cannot read SlurmUser (scontrol show config: ${(e as Error).message}): only root may see every job`);
  }
  return [];
}

