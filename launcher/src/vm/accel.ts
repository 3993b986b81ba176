// Accelerator choice. KVM is chosen by 'auto' only if it really runs a guest: on nested hosts /dev/kvm
// can exist while guests hang (as on the project's own machines: docs/lab-notes.md). The probe result is cached per host boot.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { SymError, EXIT } from '../errors.js';
import { runtimeRoot, VM_DEFAULTS } from '../defaults.js';
import { QEMU_BINARY, qemuMissingError } from './qemu.js';
import { signalGroup } from '../util/children.js';

/**
 * 512-byte boot sector: real mode -> long mode (identity-mapped 2 MiB page), then writes 0x2a to an
 * isa-debug-exit device at I/O port 0xf4, so QEMU exits with status (0x2a << 1) | 1 = 85.
 * Assembled with GNU as from (AT&T syntax, linked at 0x7c00):
 *   cli; xor %ax,%ax; mov %ax,%ds/%es/%ss; mov $0x7c00,%sp
 *   mov $0x1000,%di; mov $0x1800,%cx; rep stosw            # clear page tables 0x1000..0x3fff
 *   movw $0x2003,0x1000; movw $0x3003,0x2000; movw $0x83,0x3000   # PML4 -> PDPT -> PD (2 MiB page)
 *   lgdtl gdtr; cr4 |= PAE; cr3 = 0x1000; EFER |= LME; cr0 |= PG|PE; ljmpl $0x08,$long_mode
 *   long_mode: mov $0x2a,%al; out %al,$0xf4; 1: hlt; jmp 1b
 *   gdt: null, 0x00209a0000000000 (64-bit code), 0x0000920000000000 (data); signature 0x55 0xaa
 */
const BOOT_SECTOR_CODE =
  'fa31c08ed88ec08ed0bc007cbf0010b90018f3abc70600100320c70600200330c70600308300660f0116887c0f20e06683c8' +
  '200f22e066b8001000000f22d866b9800000c00f32660d000100000f300f20c0660d010000800f22c066ea637c00000800b02a' +
  'e6f4f4ebfd660f1f440000000000000000000000000000009a200000000000009200001700707c';
export const BOOT_SECTOR_EXIT_VALUE = 0x2a;
/** process exit status of QEMU when the boot sector ran to the end */
export const BOOT_SECTOR_EXIT_STATUS = (BOOT_SECTOR_EXIT_VALUE << 1) | 1;

export function bootSector(): Buffer {
  const b = Buffer.alloc(512);
  Buffer.from(BOOT_SECTOR_CODE, 'hex').copy(b);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

export type AccelRequest = 'auto' | 'kvm' | 'tcg';

export interface AccelResult { accel: 'kvm' | 'tcg'; notice?: string; cached?: boolean; probeMs?: number }

export interface ProbeOptions {
  binary?: string;
  /** deadline of each probe guest (default 5000 ms) */
  timeoutMs?: number;
  /**
   * A Linux kernel to boot as the second probe (default: the newest /boot/vmlinuz-*; null = skip).
   * Needed because on nested hosts a boot sector (even in long mode) runs under KVM while a real
   * kernel hangs: measured on the lab machines.
   */
  kernel?: string | null;
  /** cache file (default runtimeRoot()/accel-probe.json); null = no cache */
  cacheFile?: string | null;
  kvmDevice?: string;
  signal?: AbortSignal;
}

export interface KvmProbe { ok: boolean; reason: string; ms: number }

export interface ProbeGuestResult { code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; ms: number; output: string }

/** Run a short-lived QEMU in its own process group with a deadline (SIGKILL to the group on timeout). */
export function runProbeGuest(binary: string, args: string[], timeoutMs: number, signal?: AbortSignal): Promise<ProbeGuestResult> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(binary, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (d: Buffer) => { output = (output + d.toString('utf8')).slice(-16384); };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let timedOut = false;
    const killGroup = () => signalGroup(child.pid, 'SIGKILL');
    const timer = setTimeout(() => { timedOut = true; killGroup(); }, timeoutMs);
    const onAbort = () => killGroup();
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') reject(qemuMissingError(binary, e));
      else reject(e);
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) return reject(signal.reason instanceof Error ? signal.reason : new SymError('ESYM_ABORTED', { message: 'accel probe cancelled' }));
      resolve({ code, signal: sig, timedOut, ms: Date.now() - t0, output });
    });
  });
}

export function defaultProbeKernel(): string | undefined {
  try {
    const ks = fs.readdirSync('/boot').filter((f) => /^vmlinuz-/.test(f)).sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
    for (const k of ks) {
      const p = path.join('/boot', k);
      try { fs.accessSync(p, fs.constants.R_OK); return p; } catch { /* next */ }
    }
  } catch { /* no /boot */ }
  return undefined;
}

/** Boot-sector probe: returns the raw result (used by tests under TCG to verify the payload). */
export async function runBootSectorProbe(accel: 'kvm' | 'tcg', opts: { binary?: string; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ProbeGuestResult & { ok: boolean }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-accel-'));
  try {
    const sector = path.join(dir, 'probe.img');
    fs.writeFileSync(sector, bootSector());
    const r = await runProbeGuest(opts.binary ?? QEMU_BINARY, [
      '-accel', accel, '-nodefaults', '-no-user-config', '-display', 'none', '-m', '16',
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
      '-drive', `file=${sector},format=raw,if=ide`,
    ], opts.timeoutMs ?? 5000, opts.signal);
    return { ...r, ok: !r.timedOut && r.code === BOOT_SECTOR_EXIT_STATUS };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Kernel probe: boots `kernel` with no root fs; a working accelerator reaches the root-mount panic. */
export async function runKernelProbe(accel: 'kvm' | 'tcg', kernel: string, opts: { binary?: string; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ProbeGuestResult & { ok: boolean }> {
  const r = await runProbeGuest(opts.binary ?? QEMU_BINARY, [
    '-accel', accel, '-machine', 'q35', '-nodefaults', '-no-user-config', '-display', 'none', '-m', '128',
    '-kernel', kernel, '-append', 'console=ttyS0 panic=-1 loglevel=1 root=/dev/symrun-probe-none',
    '-serial', 'stdio', '-no-reboot',
  ], opts.timeoutMs ?? 5000, opts.signal);
  return { ...r, ok: !r.timedOut && /Kernel panic|VFS: Unable to mount root/.test(r.output) };
}

function bootId(): string {
  try { return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(); } catch { return 'unknown'; }
}

interface CacheFile { bootId: string; entries: Record<string, KvmProbe> }

function readCache(file: string): CacheFile | undefined {
  try {
    const c = JSON.parse(fs.readFileSync(file, 'utf8')) as CacheFile;
    return c && c.bootId === bootId() && typeof c.entries === 'object' ? c : undefined;
  } catch { return undefined; }
}

function writeCache(file: string, key: string, v: KvmProbe) {
  try {
    const c = readCache(file) ?? { bootId: bootId(), entries: {} };
    c.entries[key] = v;
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(c, null, 2) + '\n');
    fs.renameSync(tmp, file);
  } catch { /* a cache we cannot write only costs time */ }
}

/** Does KVM really run guests here? Cached per host boot (keyed by boot_id, binary, kernel). */
export async function probeKvm(opts: ProbeOptions = {}): Promise<KvmProbe & { cached: boolean }> {
  const binary = opts.binary ?? QEMU_BINARY;
  const dev = opts.kvmDevice ?? '/dev/kvm';
  const timeoutMs = opts.timeoutMs ?? VM_DEFAULTS.accelProbeTimeoutMs;
  const secs = `${(timeoutMs / 1000).toFixed(timeoutMs % 1000 ? 1 : 0)} s`;
  try {
    fs.accessSync(dev, fs.constants.R_OK | fs.constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? `${dev} does not exist` : `${dev} is not accessible (${code}; add the user to group kvm)`, ms: 0, cached: false };
  }
  const kernel = opts.kernel === null ? undefined : (opts.kernel ?? defaultProbeKernel());
  const cacheFile = opts.cacheFile === null ? undefined : (opts.cacheFile ?? path.join(runtimeRoot(), VM_DEFAULTS.accelProbeCacheFile));
  const key = `${binary}|${kernel ?? '-'}|${timeoutMs}`;
  if (cacheFile) {
    const hit = readCache(cacheFile)?.entries[key];
    if (hit) return { ...hit, cached: true };
  }
  const t0 = Date.now();
  // Both probes run in parallel (two short QEMUs), so the whole probe is bounded by one deadline.
  const [sector, kern] = await Promise.all([
    runBootSectorProbe('kvm', { binary, timeoutMs, signal: opts.signal }),
    kernel ? runKernelProbe('kvm', kernel, { binary, timeoutMs, signal: opts.signal }) : Promise.resolve(undefined),
  ]);
  let result: KvmProbe;
  const lastLine = (s: string) => s.trim().split('\n').filter((l) => !/warning: host doesn't support/.test(l)).pop()?.slice(0, 160) ?? '';
  if (!sector.ok) {
    result = {
      ok: false,
      ms: Date.now() - t0,
      reason: sector.timedOut ? `KVM present but guests do not run (probe timed out after ${secs})`
        : `KVM present but a test guest failed (exit ${sector.code ?? sector.signal}${lastLine(sector.output) ? `: ${lastLine(sector.output)}` : ''})`,
    };
  } else if (kern && !kern.ok) {
    result = {
      ok: false,
      ms: Date.now() - t0,
      reason: kern.timedOut ? `KVM present but guests do not run (a Linux kernel did not boot within ${secs})`
        : `KVM present but a Linux kernel failed to boot under it (exit ${kern.code ?? kern.signal})`,
    };
  } else {
    result = { ok: true, ms: Date.now() - t0, reason: kern ? 'boot sector and kernel ran under KVM' : 'boot sector ran under KVM (no kernel to probe)' };
  }
  if (cacheFile) writeCache(cacheFile, key, result);
  return { ...result, cached: false };
}

export async function probeAccel(requested: AccelRequest, opts: ProbeOptions = {}): Promise<AccelResult> {
  if (requested === 'tcg') return { accel: 'tcg' };
  if (requested !== 'auto' && requested !== 'kvm') {
    throw new SymError('ESYM_CONFIG_ACCEL', { message: `unknown accelerator ${JSON.stringify(requested)}`, field: 'accel', value: requested, fix: 'use auto, kvm or tcg', exitCode: EXIT.usage });
  }
  const p = await probeKvm(opts);
  if (p.ok) return { accel: 'kvm', cached: p.cached, probeMs: p.ms };
  if (requested === 'kvm') {
    throw new SymError('ESYM_KVM_UNAVAILABLE', {
      message: `accel: kvm was requested but KVM cannot be used: ${p.reason}`,
      field: 'accel',
      value: 'kvm',
      fix: 'use `accel: tcg` (or `auto`) in symrun.yaml, or --accel tcg; on a nested host enable nested virtualization',
      exitCode: EXIT.environment,
      details: { probeMs: p.ms, cached: p.cached },
    });
  }
  return { accel: 'tcg', notice: `${p.reason}; using TCG`, cached: p.cached, probeMs: p.ms };
}
