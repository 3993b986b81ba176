// Builds the library symrun preloads into MPICH ranks (FINALIZE_SHIM in mpi/launch.ts) from its C source,
// mpi/native/ucx-finalize-progress.c, with the host's C compiler; the MPICH image builder copies the
// result into the guest (image/build.ts) and hashes the source into the image's inputs (image/inputs.ts).
// Why it exists: docs/mpi.md, "MPI_Finalize and UCX over TCP".
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { repoRoot } from '../defaults.js';

/** The C source in the repository. */
export function finalizeShimSource(): string {
  return path.join(repoRoot(), 'launcher', 'src', 'mpi', 'native', 'ucx-finalize-progress.c');
}

/** sha256 of the source: part of the MPICH image's inputs, so a changed source builds a new image. */
export async function finalizeShimSha(): Promise<string> {
  return crypto.createHash('sha256').update(await readSource()).digest('hex');
}

async function readSource(): Promise<string> {
  try { return await fsp.readFile(finalizeShimSource(), 'utf8'); } catch (e) {
    throw new SymError('ESYM_IMAGE_SOURCE', {
      message: `the MPICH finalize library's source ${finalizeShimSource()} is missing`,
      fix: 'restore launcher/src/mpi/native/ from the symrun repository',
      value: finalizeShimSource(),
      exitCode: EXIT.environment,
      cause: e,
    });
  }
}

/** Compiles the library into outFile (a shared object for the host's, hence the guest's, architecture). */
export async function buildFinalizeShim(outFile: string, signal?: AbortSignal): Promise<void> {
  await readSource();
  const args = ['-shared', '-fPIC', '-O2', '-Wall', '-pthread', '-o', outFile, finalizeShimSource(), '-ldl'];
  await new Promise<void>((resolve, reject) => {
    execFile('cc', args, { signal }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(new SymError('ESYM_MPI_MISSING', {
        message: missing
          ? 'the guest image for an MPICH program needs a C compiler (cc) on this host to build its MPI_Finalize helper library, and there is none'
          : `building the MPICH finalize helper library failed: cc ${args.join(' ')}: ${String(stderr).trim() || err.message}`,
        field: 'mpi.implementation',
        value: 'mpich',
        fix: missing ? 'install gcc (bash scripts/setup; apt-get install gcc), which mpicc.mpich needs too' : 'check the C compiler on this host (cc --version)',
        exitCode: EXIT.environment,
        cause: err,
      }));
    });
  });
}
