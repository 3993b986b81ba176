// Which MPI a program needs, from the shared libraries ldd lists for it, and whether the configured
// one (mpi.implementation, --mpi) and the guest image agree. Pure: the ldd run is the caller's
// (stage/closure.ts lddLibs). A program linked against MPICH but started by Open MPI's mpirun runs as
// N singletons (every rank is rank 0 of 1: wrong answers, no error), so a mismatch is refused here,
// before any VM boots. docs/mpi.md.
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';

export type MpiImpl = 'openmpi' | 'mpich';
export type MpiSetting = 'auto' | MpiImpl;

/** The sonames that say which MPI a program is linked against (Debian 12: Open MPI 4.1, MPICH 4.0). */
export const MPI_SONAMES: Readonly<Record<string, MpiImpl>> = {
  'libmpi.so.40': 'openmpi',
  'libmpich.so.12': 'mpich',
};

export const MPI_NAMES: Readonly<Record<MpiImpl, string>> = { openmpi: 'Open MPI', mpich: 'MPICH' };

/**
 * Guest path of the library preloaded into every MPICH rank (mpi/native/ucx-finalize-progress.c, built
 * into the MPICH image by mpi/finalize-shim.ts): it keeps UCX progressing while MPI_Finalize waits in
 * its PMI barrier, without which a rank that finalizes late waits forever for its peers' flush ACKs
 * (docs/mpi.md, "MPI_Finalize and UCX over TCP").
 */
export const FINALIZE_SHIM = '/opt/symrun/lib/libsymrun-ucx-finalize.so';

/** Guest files each implementation's launcher needs (the image must have them). */
export const MPI_LAUNCHER_FILES: Readonly<Record<MpiImpl, readonly string[]>> = {
  openmpi: [], // mpirun: every image has it (the builder copies Open MPI always)
  mpich: ['/usr/bin/mpiexec.hydra', '/usr/bin/hydra_pmi_proxy', FINALIZE_SHIM],
};

export interface MpiDetection {
  /** the implementation its libraries name; undefined: no MPI library (a script, a plain program) */
  impl?: MpiImpl;
  /** the library that said so (soname) */
  lib?: string;
}

/** `libs`: the paths (or sonames) ldd lists for the program, found or not. */
export function detectMpi(libs: readonly string[]): MpiDetection {
  const found = new Map<MpiImpl, string>();
  for (const l of libs) {
    const soname = path.posix.basename(l);
    const impl = MPI_SONAMES[soname];
    if (impl && !found.has(impl)) found.set(impl, soname);
  }
  if (found.size > 1) {
    throw new SymError('ESYM_MPI_MISMATCH', {
      message: `the program is linked against both Open MPI (${found.get('openmpi')}) and MPICH (${found.get('mpich')}); one process cannot use both`,
      field: 'program', value: [...found.values()].join(','), exitCode: EXIT.usage,
      fix: 'rebuild it with one MPI only: mpicc (Open MPI) or mpicc.mpich (MPICH)',
    });
  }
  const [e] = [...found.entries()];
  return e ? { impl: e[0], lib: e[1] } : {};
}

/**
 * The implementation to launch with: `auto` takes the detected one (Open MPI when the program names
 * none, as before); an explicit setting must match what the program is linked against.
 */
export function chooseMpi(setting: MpiSetting, det: MpiDetection, program: string, field = 'mpi.implementation'): MpiImpl {
  if (setting === 'auto') return det.impl ?? 'openmpi';
  if (det.impl && det.impl !== setting) {
    const singletons = setting === 'openmpi' ? ": Open MPI's mpirun would start it as N singletons (every rank 0 of 1)" : '';
    throw new SymError('ESYM_MPI_MISMATCH', {
      message: `${program} is linked against ${MPI_NAMES[det.impl]} (${det.lib}), but ${field} is ${setting}${singletons}`,
      field, value: setting, exitCode: EXIT.usage,
      fix: `use --mpi ${det.impl} or --mpi auto (mpi.implementation: ${det.impl} or auto), or rebuild it with ${setting === 'openmpi' ? 'mpicc' : 'mpicc.mpich'}`,
    });
  }
  return setting;
}

/** The launcher files `impl` needs that the guest image (`imageFiles`: absolute guest paths) lacks. */
export function missingLauncher(impl: MpiImpl, imageFiles: ReadonlySet<string>): string[] {
  return MPI_LAUNCHER_FILES[impl].filter((f) => !imageFiles.has(f));
}

/** The error for an image without the launcher (a prebuilt image directory given with image:). */
export function launcherMissingError(impl: MpiImpl, missing: readonly string[], image: string, program: string): SymError {
  return new SymError('ESYM_MPI_MISSING', {
    message: `${program} needs ${MPI_NAMES[impl]}, but the guest image ${image} has no ${missing.join(', ')}`,
    field: 'image', value: image, exitCode: EXIT.environment,
    fix: impl === 'mpich'
      ? 'use image: auto (symrun builds an image with MPICH when a program needs it; the host needs Debian\'s mpich package: bash scripts/setup), or rebuild that image with MPICH'
      : 'use image: auto, or an image built with Open MPI (openmpi-bin)',
  });
}
