// Restart from a coordinated checkpoint as data (run by machine.ts; ports in coordinator/restart.ts):
// after a node died (reactive restart) and in a new allocation (`symrun restart DIR`).
//
//   phase         where          what                                                       recovery
//   stop          host agents    the survivors' QEMUs (their state is newer than the          from-start
//                                checkpoint: all VMs go back together), and anything of the VM
//                                left on its target
//   restore       host agents    every VM at once: QEMU with the saved device set,           from-start
//                                -incoming defer + "exec:cat FILE", paused afterwards
//   cont          host agents    every VM runs again (ranks still frozen: saved frozen)      from-start
//   replug        host agents    the interconnect device back (same id, MAC)                 from-start
//   reconfigure   guests         interface, address, neighbours announced                    from-start
//   resume        guests         ranks unfrozen: the job continues from the checkpoint      from-start
//
// There is no rollback: the state the VMs had when the node died is gone with it; a failure ends
// `failed` and the job stops, naming the checkpoint to restart from in a new allocation. The
// checkpoint is the source of truth, so a successor coordinator begins the restart again.
import { machine, type Protocol } from './machine.js';

export const RESTART_FORWARD = ['stop', 'restore', 'cont', 'replug', 'reconfigure', 'resume'] as const;
export type RestartForward = (typeof RESTART_FORWARD)[number];

export const RESTART_PROTOCOL: Protocol<RestartForward, never, never> = {
  kind: 'restart',
  forward: RESTART_FORWARD,
  table: {
    stop: { next: 'restore', retry: 0 },
    restore: { next: 'cont', retry: 0 },
    cont: { next: 'replug', retry: 0 },
    replug: { next: 'reconfigure', retry: 0 },
    reconfigure: { next: 'resume', retry: 0 },
    resume: { next: 'done', retry: 0 },
  },
  rollback: [],
  rb: {},
  marks: [],
  recovery: { stop: 'from-start', restore: 'from-start', cont: 'from-start', replug: 'from-start', reconfigure: 'from-start', resume: 'from-start' },
};

export const RESTART = machine(RESTART_PROTOCOL);
export type RestartState = ReturnType<typeof RESTART.initialState>;
