export { detectQemu, parseQemuVersion, versionAtLeast, QEMU_BINARY, type QemuInfo, type QemuVersion } from './qemu.js';
export { probeAccel, probeKvm, bootSector, runBootSectorProbe, runKernelProbe, BOOT_SECTOR_EXIT_STATUS, type AccelRequest, type AccelResult, type ProbeOptions } from './accel.js';
export { effectiveMemory } from './memory.js';
export { qemuArgs, vmPaths, rootPortIds, optEscape, type VmSpec, type VmPaths } from './args.js';
export { startVm, type VmProcess, type VmExit, type StartVmOptions } from './process.js';
