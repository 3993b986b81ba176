// The coordinated checkpoint protocol as data (run by machine.ts; ports in coordinator/checkpoint.ts).
//
//   phase         where          what                                                  retry  recovery
//   prepare       coordinator    disk-space check, ROOT/NAME.tmp-XXXX                   0     rollback
//   quiesce       guests         every rank frozen (the gate shared with migrations)    0     rollback
//   unplug        host agents    every VM's interconnect device removed                 0     rollback
//   save          host agents    every VM at once: stop + migrate "exec:cat > FILE"     0     rollback
//   cont          host agents    every VM runs again                       (done mark)  0     rollback
//   replug        host agents    devices back                              (done mark)  1     rollback
//   reconfigure   guests         NICs configured again                     (done mark)  1     rollback
//   resume        guests         ranks run again                           (done mark)  1     rollback
//   commit        coordinator    hashes, manifest, fsync, rename tmp -> NAME, prune      0     rerun
//
// The checkpoint exists only after commit; a cancel is refused once commit has started. A failure
// before commit rolls back what was started and not yet undone by the forward path itself:
//   rollback        needs       unless            what
//   rb-cont         saving      contDone          every VM runs again
//   rb-replug       unplugged   replugDone        devices back
//   rb-reconfigure  unplugged   reconfigureDone   NICs configured again
//   rb-resume       quiesced    resumeDone        ranks run again
//   rb-discard      prepared                      NAME.tmp-XXXX removed (earlier checkpoints untouched)
// Recovery: a phase before commit is taken as failed (the rollback runs); commit and every rollback
// step are run again (idempotent) — a coordinator that dies in rb-cont leaves VMs paused otherwise.
import { machine, type Protocol } from './machine.js';

export const CKPT_FORWARD = ['prepare', 'quiesce', 'unplug', 'save', 'cont', 'replug', 'reconfigure', 'resume', 'commit'] as const;
export const CKPT_ROLLBACK = ['rb-cont', 'rb-replug', 'rb-reconfigure', 'rb-resume', 'rb-discard'] as const;
export const CKPT_MARKS = ['prepared', 'quiesced', 'unplugged', 'saving', 'committing', 'contDone', 'replugDone', 'reconfigureDone', 'resumeDone'] as const;

export type CkptForward = (typeof CKPT_FORWARD)[number];
export type CkptRollback = (typeof CKPT_ROLLBACK)[number];
export type CkptMark = (typeof CKPT_MARKS)[number];

export const CHECKPOINT_PROTOCOL: Protocol<CkptForward, CkptRollback, CkptMark> = {
  kind: 'checkpoint',
  forward: CKPT_FORWARD,
  table: {
    prepare: { next: 'quiesce', mark: 'prepared', retry: 0 },
    quiesce: { next: 'unplug', mark: 'quiesced', retry: 0 },
    unplug: { next: 'save', mark: 'unplugged', retry: 0 },
    save: { next: 'cont', mark: 'saving', retry: 0 },
    cont: { next: 'replug', done: 'contDone', retry: 0 },
    replug: { next: 'reconfigure', done: 'replugDone', retry: 1 },
    reconfigure: { next: 'resume', done: 'reconfigureDone', retry: 1 },
    resume: { next: 'commit', done: 'resumeDone', retry: 1 },
    commit: { next: 'done', mark: 'committing', retry: 0 },
  },
  rollback: CKPT_ROLLBACK,
  rb: {
    'rb-cont': { needs: 'saving', unless: 'contDone' },
    'rb-replug': { needs: 'unplugged', unless: 'replugDone' },
    'rb-reconfigure': { needs: 'unplugged', unless: 'reconfigureDone' },
    'rb-resume': { needs: 'quiesced', unless: 'resumeDone' },
    'rb-discard': { needs: 'prepared' },
  },
  marks: CKPT_MARKS,
  noCancelAfter: 'committing',
  recovery: {
    prepare: 'rollback', quiesce: 'rollback', unplug: 'rollback', save: 'rollback', cont: 'rollback',
    replug: 'rollback', reconfigure: 'rollback', resume: 'rollback', commit: 'rerun',
    'rb-cont': 'rerun', 'rb-replug': 'rerun', 'rb-reconfigure': 'rerun', 'rb-resume': 'rerun', 'rb-discard': 'rerun',
  },
};

export const CHECKPOINT = machine(CHECKPOINT_PROTOCOL);
export type CkptState = ReturnType<typeof CHECKPOINT.initialState>;
export type CkptPhase = CkptState['phase'];
