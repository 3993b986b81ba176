// Stopping a child process group, politely then by force: the one escalation every part of symrun uses
// (QEMU, host agents and their srun steps, image tools, probes). Children run in their own process
// group (spawn with detached: true), so a signal reaches everything they started.
import type { ChildProcess } from 'node:child_process';

/** Send `sig` to the process group of `pid` (nothing if it is gone). */
export function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try { process.kill(-pid, sig); } catch { /* gone */ }
}

/** Resolves when the child has exited (at once if it already has). */
export function exitOf(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((r) => c.once('exit', () => r()));
}

export interface StopPlan {
  /** a polite first step (e.g. QMP quit); its failure is ignored */
  polite?: () => Promise<unknown>;
  /** signals sent in turn while the group lives (default SIGTERM, then SIGKILL) */
  signals?: NodeJS.Signals[];
  /** wait this long after each step for the exit (ms) */
  graceMs: number;
}

/**
 * Stop a process group: the polite step, then each signal in turn, waiting `graceMs` after each for
 * `exited`. Returns whether it exited (false only if even the last signal did not end it in time).
 */
export async function stopGroup(pid: number | undefined, exited: Promise<unknown>, plan: StopPlan): Promise<boolean> {
  let gone = false;
  void exited.then(() => { gone = true; });
  const wait = async (): Promise<boolean> => {
    let t: NodeJS.Timeout | undefined;
    const r = await Promise.race([exited.then(() => true), new Promise<boolean>((res) => { t = setTimeout(() => res(false), plan.graceMs); })]);
    clearTimeout(t);
    return r;
  };
  await Promise.resolve();
  if (gone) return true;
  if (plan.polite) {
    await plan.polite().catch(() => undefined);
    if (await wait()) return true;
  }
  for (const sig of plan.signals ?? ['SIGTERM', 'SIGKILL']) {
    signalGroup(pid, sig);
    if (await wait()) return true;
  }
  return false;
}

/** stopGroup for a ChildProcess. */
export function stopChild(c: ChildProcess, plan: StopPlan): Promise<boolean> {
  return stopGroup(c.pid, exitOf(c), plan);
}
