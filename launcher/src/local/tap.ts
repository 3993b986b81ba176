// Tap devices for VMs, attached to the host bridge. Meant to run INSIDE the host's network namespace
// (by the host agent, which was started there with netnsExecPrefix); `opts.netns` runs the same
// commands from outside through `ip -n NS` (coordinator, tests).
import fs from 'node:fs';
import { SymError, EXIT } from '../errors.js';
import { ip, ipBatch, type IpLink } from './ip.js';
import { validateIfName } from './names.js';

export interface TapOpts {
  /** run in this named namespace instead of the caller's own */
  netns?: string;
  /** create the tap with multi_queue (for QEMU queues > 1) */
  multiQueue?: boolean;
  signal?: AbortSignal;
}

/** The `ip -batch` lines ensureTap runs (for callers that run them themselves, e.g. via netnsExecPrefix). */
export function tapSetupLines(tap: string, bridge: string, opts: Pick<TapOpts, 'multiQueue'> = {}): string[] {
  validateIfName(tap, 'tap');
  validateIfName(bridge, 'bridge');
  return [
    `tuntap add dev ${tap} mode tap${opts.multiQueue ? ' multi_queue' : ''}`,
    `link set dev ${tap} master ${bridge} up`,
  ];
}

function tapError(what: string, tap: string, stderr: string): SymError {
  const perm = /Operation not permitted|Permission denied/.test(stderr);
  return new SymError(perm ? 'ESYM_NEEDS_ROOT' : 'ESYM_TAP_FAILED', {
    message: perm
      ? `creating tap ${tap} needs root (CAP_NET_ADMIN): ${firstLine(stderr)}`
      : `could not ${what} tap ${tap}: ${firstLine(stderr)}`,
    field: 'network.bridge',
    value: tap,
    fix: perm
      ? 'run the host agent as root (sudo), or leave out --local and run under Slurm'
      : 'check that /dev/net/tun exists (modprobe tun) and that the bridge exists in this namespace',
    exitCode: perm ? EXIT.environment : EXIT.runtime,
    details: { stderr },
  });
}

function firstLine(s: string): string {
  return s.split('\n').map((l) => l.trim()).filter(Boolean).slice(0, 3).join('; ') || 'unknown error';
}

/** Create tap `tap` (mode tap), attach it to `bridge`, bring it up. Idempotent. */
export async function ensureTap(tap: string, bridge: string, opts: TapOpts = {}): Promise<void> {
  const lines = tapSetupLines(tap, bridge, opts);
  const r = await ipBatch(lines, { netns: opts.netns, force: true, signal: opts.signal });
  if (!r.ok) {
    // an existing tap answers `tuntap add` with EBUSY; anything else (or a non-tap of that name) is an error
    const onlyExists = r.stderr.includes('TUNSETIFF): Device or resource busy')
      && r.stderr.includes('Command failed -:1') && !r.stderr.includes('Command failed -:2');
    if (!onlyExists) throw tapError('create', tap, r.stderr);
    const show = await ip(['-j', '-d', 'link', 'show', 'dev', tap], { netns: opts.netns, signal: opts.signal });
    let link: IpLink | undefined;
    try { link = (JSON.parse(show.stdout || '[]') as IpLink[])[0]; } catch { /* below */ }
    if (!link || link.linkinfo?.info_kind !== 'tun' || link.linkinfo.info_data?.type !== 'tap') {
      throw tapError('create', tap, `${tap} exists and is not a tap device`);
    }
    if (link.master !== bridge || !link.flags?.includes('UP')) {
      const again = await ipBatch([lines[1]!], { netns: opts.netns, signal: opts.signal });
      if (!again.ok) throw tapError('attach', tap, again.stderr);
    }
  }
  if (!opts.netns) {
    // no IPv6 on a bridge port (local host namespaces already default to disabled)
    try { fs.writeFileSync(`/proc/sys/net/ipv6/conf/${tap}/disable_ipv6`, '1'); } catch { /* no IPv6 */ }
  }
}

/** Remove tap `tap`; nothing happens if it does not exist. */
export async function deleteTap(tap: string, opts: Pick<TapOpts, 'netns' | 'signal'> = {}): Promise<void> {
  validateIfName(tap, 'tap');
  const r = await ip(['link', 'del', 'dev', tap], { netns: opts.netns, signal: opts.signal });
  if (!r.ok && !/Cannot find device|does not exist/.test(r.stderr)) throw tapError('delete', tap, r.stderr);
}
