// Fault injection that tests switch on at run time (never compiled out): SYMRUN_FAULTS is a
// comma-separated list of NAME@WHERE, e.g. "kill-dst-qemu@perform,refuse-device-add@dst".
// Known faults (each documented in docs/migration.md):
//   kill-dst-qemu@perform       SIGKILL the destination QEMU at the first progress sample
//   refuse-device-add@dst|HOST  device_add on the destination names a root port that does not exist:
//                               QEMU itself refuses it
//   wrong-tls-key@dst           the destination derives its migration stream key from another salt: the
//                               TLS handshake fails, the migration rolls back
//   guest-stall@quiesce         the moving VM's guest agent delays its quiesce answer for 60 s
//   kill-coordinator@perform    the coordinator SIGKILLs itself at the first progress sample
//                               (`symrun recover` then picks the job up from the journal)
//   kill-coordinator@save       the coordinator SIGKILLs itself when every VM of a checkpoint is saved
//                               (VMs stopped, devices out: `symrun recover` rolls the checkpoint back)
//   kill-coordinator@rb-cont    the coordinator SIGKILLs itself as a checkpoint's rollback begins to
//                               `cont` the VMs (they stay paused: `symrun recover` runs the step again)
//   fail-save@save              a checkpoint's save of the first VM fails (its state file is written to
//                               a directory that does not exist: QEMU's own error)
import { SymError } from '../errors.js';

export const KNOWN_FAULTS = ['kill-dst-qemu', 'refuse-device-add', 'guest-stall', 'kill-coordinator', 'fail-save', 'wrong-tls-key'] as const;

export interface Faults {
  has(name: string, where: string): boolean;
  list(): string[];
}

export function parseFaults(spec: string | undefined): Faults {
  const items = (spec ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const it of items) {
    const [name] = it.split('@');
    if (!(KNOWN_FAULTS as readonly string[]).includes(name!)) {
      throw new SymError('ESYM_CONFIG', { message: `unknown fault ${JSON.stringify(it)} in SYMRUN_FAULTS`, field: 'SYMRUN_FAULTS', value: it, fix: `known faults: ${KNOWN_FAULTS.join(', ')} (as NAME@PHASE or NAME@HOST)` });
    }
  }
  return {
    has: (name, where) => items.includes(`${name}@${where}`),
    list: () => [...items],
  };
}
