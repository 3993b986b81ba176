// The SymVirt live-migration protocol as data (run by machine.ts; ports in coordinator/migrate.ts).
//
//   phase         where            what                                             retry  recovery
//   prepare       destination      QEMU -incoming (same device set as the source)    0    rollback
//   quiesce       guests           MPI traffic stopped (adapter: freeze/failover/hooks) 0  rollback
//   unplug        source           device_del, wait DEVICE_DELETED (by id)           0    rollback
//   perform       source           migrate (precopy/postcopy/stop-copy, deadline)    0    rollback
//   finish        destination      stream loaded, VM runs there   <- point of no return    rerun
//   replug        destination      device_add, same id and MAC                       1    rerun
//   reconfigure   guest            NIC configured, neighbours told                   1    rerun
//   resume        guests           ranks run again                                   1    rerun
//   confirm       source           source QEMU stopped, its device released          1    rerun
//
// Before finish the VM belongs to the source: a failure (or cancel) rolls back what was started:
//   rollback      needs            what
//   rb-cancel     performing       migrate_cancel; if the transfer had completed, stop the destination first
//   rb-dst-stop   prepared         destination QEMU stopped
//   rb-replug     unplugged        device back on the source
//   rb-reconfigure unplugged       NIC configured again in the guest
//   rb-resume     quiesced         ranks run again
// From finish on only forward: a failure is retried, then left over (outcome degraded), guests always resume.
// Recovery: rollback steps are re-run (ports are idempotent); so are the phases from finish on.
import { machine, type Protocol } from './machine.js';

export const MIGRATION_FORWARD = ['prepare', 'quiesce', 'unplug', 'perform', 'finish', 'replug', 'reconfigure', 'resume', 'confirm'] as const;
export const MIGRATION_ROLLBACK = ['rb-cancel', 'rb-dst-stop', 'rb-replug', 'rb-reconfigure', 'rb-resume'] as const;
export const MIGRATION_MARKS = ['prepared', 'quiesced', 'unplugged', 'performing', 'finished'] as const;

export type MigrationForward = (typeof MIGRATION_FORWARD)[number];
export type MigrationRollback = (typeof MIGRATION_ROLLBACK)[number];
export type MigrationMark = (typeof MIGRATION_MARKS)[number];

export const MIGRATION_PROTOCOL: Protocol<MigrationForward, MigrationRollback, MigrationMark> = {
  kind: 'migrate',
  forward: MIGRATION_FORWARD,
  table: {
    prepare: { next: 'quiesce', mark: 'prepared', retry: 0 },
    quiesce: { next: 'unplug', mark: 'quiesced', retry: 0 },
    unplug: { next: 'perform', mark: 'unplugged', retry: 0 },
    perform: { next: 'finish', mark: 'performing', retry: 0 },
    finish: { next: 'replug', mark: 'finished', retry: 0 },
    replug: { next: 'reconfigure', retry: 1 },
    reconfigure: { next: 'resume', retry: 1 },
    resume: { next: 'confirm', retry: 1 },
    confirm: { next: 'done', retry: 1 },
  },
  rollback: MIGRATION_ROLLBACK,
  rb: {
    'rb-cancel': { needs: 'performing' },
    'rb-dst-stop': { needs: 'prepared' },
    'rb-replug': { needs: 'unplugged' },
    'rb-reconfigure': { needs: 'unplugged' },
    'rb-resume': { needs: 'quiesced' },
  },
  marks: MIGRATION_MARKS,
  noCancelAfter: 'finished',
  forwardOnlyAfter: 'finished',
  recovery: {
    prepare: 'rollback', quiesce: 'rollback', unplug: 'rollback', perform: 'rollback',
    finish: 'rerun', replug: 'rerun', reconfigure: 'rerun', resume: 'rerun', confirm: 'rerun',
    'rb-cancel': 'rerun', 'rb-dst-stop': 'rerun', 'rb-replug': 'rerun', 'rb-reconfigure': 'rerun', 'rb-resume': 'rerun',
  },
};

export const MIGRATION = machine(MIGRATION_PROTOCOL);
export type MigrationState = ReturnType<typeof MIGRATION.initialState>;
export type MigrationPhase = MigrationState['phase'];
