// A VM's QEMU spec as it crosses the coordinator -> host agent wire (vm.start, mig.prepare,
// ckpt.restore; checkpoint manifests keep it too). Types only: no I/O. The command line built from it:
// vm/args.ts.

/**
 * The QEMU command line of one VM, as data. Source and destination of a migration get the same spec;
 * only `incoming` differs (QEMU requires identical device sets and order on both sides).
 */
export interface VmSpec {
  name: string;
  runDir: string;
  accel: 'kvm' | 'tcg';
  memoryMiB: number;
  cpus: number;
  machine: string;
  kernel: string;
  initrd: string;
  rootfs: string;
  /** format of rootfs (default raw); qcow2 for a disk image a user brought (docs/images.md) */
  rootFormat?: 'raw' | 'qcow2';
  append: string;
  agentSocket: string;
  agentPortName: string;
  rootPorts: number;
  incoming?: 'defer';
  /**
   * QEMU's seccomp sandbox: no obsolete system calls, no privilege changes, no resource-control calls.
   * Spawning stays allowed: checkpoints save through `migrate exec:cat > FILE` (QEMU 7.2 has no file: URI).
   */
  sandbox?: boolean;
  /**
   * Start QEMU with SIGTERM blocked: Slurm signals every process of a cancelled job at once (scancel, a
   * time limit), and QEMU would end its guest before symrun has copied the ranks' files out of it.
   * symrun stops QEMU itself (QMP quit), and SIGKILL (Slurm's, after KillWait) still ends it.
   */
  holdTerm?: boolean;
  extraArgs: string[];
}
