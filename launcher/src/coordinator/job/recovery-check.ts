// recover.json checked before `symrun recover` acts on it. The record lives in the job's run directory
// (mode 0700, written atomically by the dead coordinator), but a damaged or hand-edited one must end in
// an error that names the field, not in a stack trace from deep inside the take-over, and must not make
// the successor talk to an address or name a path the dead job never had. `carry` is checked on its own
// (carry.ts checkCarried: a damaged part is started afresh); everything here is needed to re-attach, so a
// damaged field refuses the recovery.
import { SymError, EXIT } from '../../errors.js';
import { show } from '../../config/problems.js';
import type { ImageInfo } from '../../image/index.js';
import type { SymrunConfig } from '../../config/types.js';
import type { Carried } from './carry.js';

/** runDir/recover.json: everything `symrun recover` needs to take over a job whose coordinator died. */
export interface RecoveryState {
  v: 1;
  jobId: string;
  secret: string;
  channel: { host: string; port: number };
  accel: 'kvm' | 'tcg';
  image: ImageInfo;
  config: SymrunConfig;
  app: string[];
  cwd: string;
  hosts: Array<{ name: string; ip: string; bridge: string }>;
  prefixLen: number;
  vmHostCount: number;
  vms: Array<{ name: string; index: number; host: string; mac: string; ip: string; tap: string }>;
  mpirun?: { vm: string; sid: string; rankVm: string[] };
  rsh: Array<{ rid: string; from: string; to: string; sid: string }>;
  /** hosts lost so far (a restart moved their VMs to spares): recover does not wait for their agents */
  lostHosts?: string[];
  /** what the job carries on with (restart budget used, periodic checkpoint clock, launch, MAC seed...;
   *  carry.ts); missing in a record of an older symrun: the successor starts those afresh */
  carry?: Carried;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
/** host, VM, tap and bridge names, session and relay ids: no path or shell characters */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const JOB_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
const A_NAME = 'must be a name (letters, digits, _ . -)';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

class Bad extends Error {
  constructor(readonly field: string, readonly value: unknown, readonly want: string) {
    super(`${field} ${want}`);
  }
}

function str(o: Obj, k: string, at: string, re?: RegExp, want = 'must be a non-empty string'): string {
  const v = o[k];
  if (typeof v !== 'string' || !v || (re && !re.test(v))) throw new Bad(`${at}${k}`, v, want);
  return v;
}

function int(o: Obj, k: string, at: string, min: number, max: number): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Bad(`${at}${k}`, v, `must be a whole number from ${min} to ${max}`);
  return v;
}

function arr(o: Obj, k: string, at: string): unknown[] {
  const v = o[k];
  if (!Array.isArray(v)) throw new Bad(`${at}${k}`, v, 'must be a list');
  return v;
}

function obj(v: unknown, field: string): Obj {
  if (!isObj(v)) throw new Bad(field, v, 'must be an object');
  return v;
}

function strList(o: Obj, k: string, at: string, re?: RegExp): string[] {
  return arr(o, k, at).map((x, i) => {
    if (typeof x !== 'string' || (re && !re.test(x))) throw new Bad(`${at}${k}[${i}]`, x, re ? A_NAME : 'must be a string');
    return x;
  });
}

function checkFields(raw: unknown, dirId: string): void {
  const st = obj(raw, 'the record');
  if (st.v !== 1) throw new Bad('v', st.v, 'must be 1 (a record of another symrun version)');
  const jobId = str(st, 'jobId', '', JOB_ID, 'must be a job id (lower-case letters, digits, -)');
  if (jobId !== dirId) throw new Bad('jobId', jobId, `must be the run directory's name (${dirId})`);
  str(st, 'secret', '');
  const ch = obj(st.channel, 'channel');
  str(ch, 'host', 'channel.', IPV4, 'must be an IPv4 address');
  int(ch, 'port', 'channel.', 1, 65535);
  if (st.accel !== 'kvm' && st.accel !== 'tcg') throw new Bad('accel', st.accel, 'must be kvm or tcg');
  const img = obj(st.image, 'image');
  for (const k of ['hash', 'dir', 'kernel', 'initrd', 'rootfs']) str(img, k, 'image.');
  for (const k of ['dir', 'kernel', 'initrd', 'rootfs']) if (!(img[k] as string).startsWith('/')) throw new Bad(`image.${k}`, img[k], 'must be an absolute path');
  obj(st.config, 'config');
  const app = strList(st, 'app', '');
  if (!app.length || !app[0]) throw new Bad('app', st.app, 'must name the program');
  str(st, 'cwd', '');
  const hosts = new Set<string>();
  arr(st, 'hosts', '').forEach((h, i) => {
    const o = obj(h, `hosts[${i}]`);
    hosts.add(str(o, 'name', `hosts[${i}].`, NAME, A_NAME));
    str(o, 'ip', `hosts[${i}].`, IPV4, 'must be an IPv4 address');
    str(o, 'bridge', `hosts[${i}].`, NAME, A_NAME);
  });
  if (!hosts.size) throw new Bad('hosts', st.hosts, 'must list the emulated hosts');
  int(st, 'prefixLen', '', 8, 30);
  int(st, 'vmHostCount', '', 0, hosts.size);
  const vmNames = new Set<string>();
  arr(st, 'vms', '').forEach((v, i) => {
    const at = `vms[${i}].`;
    const o = obj(v, `vms[${i}]`);
    vmNames.add(str(o, 'name', at, NAME, A_NAME));
    int(o, 'index', at, 0, 65535);
    const host = str(o, 'host', at, NAME, A_NAME);
    if (!hosts.has(host)) throw new Bad(`${at}host`, host, `must be one of the hosts (${[...hosts].join(', ')})`);
    str(o, 'mac', at, MAC, 'must be a MAC address');
    str(o, 'ip', at, IPV4, 'must be an IPv4 address');
    str(o, 'tap', at, NAME, A_NAME);
  });
  if (st.mpirun !== undefined) {
    const m = obj(st.mpirun, 'mpirun');
    const vm = str(m, 'vm', 'mpirun.', NAME, A_NAME);
    if (!vmNames.has(vm)) throw new Bad('mpirun.vm', vm, `must be one of the VMs (${[...vmNames].join(', ')})`);
    str(m, 'sid', 'mpirun.', NAME, 'must be a session id');
    strList(m, 'rankVm', 'mpirun.', NAME);
  }
  arr(st, 'rsh', '').forEach((r, i) => {
    const o = obj(r, `rsh[${i}]`);
    for (const k of ['rid', 'from', 'to', 'sid']) str(o, k, `rsh[${i}].`, NAME, 'must be a name or id (letters, digits, _ . -)');
  });
  if (st.lostHosts !== undefined) {
    strList(st, 'lostHosts', '', NAME).forEach((h, i) => {
      if (!hosts.has(h)) throw new Bad(`lostHosts[${i}]`, h, `must be one of the hosts (${[...hosts].join(', ')})`);
    });
  }
}

/** RAW (recover.json of run directory DIRID, parsed) as a RecoveryState, or ESYM_RECOVER naming the damaged field. */
export function checkRecoveryState(raw: unknown, dirId: string, file = 'recover.json'): RecoveryState {
  try {
    checkFields(raw, dirId);
  } catch (e) {
    if (!(e instanceof Bad)) throw e;
    let shown = show(e.value);
    if (shown.length > 80) shown = `${shown.slice(0, 77)}...`;
    throw new SymError('ESYM_RECOVER', {
      message: `${file}: ${e.field} ${e.want} (it is ${shown})`,
      field: e.field, value: e.value,
      fix: `the recovery record of job ${dirId} is damaged, so the job cannot be taken over: its VMs are removed when its host agents stop waiting for a coordinator; run the job again, or resume it from its last checkpoint (symrun restart DIR --local N)`,
      exitCode: EXIT.runtime,
    });
  }
  return raw as RecoveryState;
}
