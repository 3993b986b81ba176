// Finding QEMU and its version.
import { execFile } from 'node:child_process';
import { SymError, EXIT } from '../errors.js';
import type { QmpVersion } from '../qmp/codec.js';

export type QemuVersion = QmpVersion;

export interface QemuInfo { binary: string; version: QemuVersion }

export const QEMU_BINARY = 'qemu-system-x86_64';

/** Parse the first line of `qemu-system-x86_64 --version` ("QEMU emulator version 7.2.22 (Debian ...)"). */
export function parseQemuVersion(text: string): QemuVersion | undefined {
  const m = /QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3] ?? 0) };
}

export function versionAtLeast(v: QemuVersion, major: number, minor = 0, micro = 0): boolean {
  if (v.major !== major) return v.major > major;
  if (v.minor !== minor) return v.minor > minor;
  return v.micro >= micro;
}

export function qemuMissingError(binary: string, cause?: unknown): SymError {
  return new SymError('ESYM_QEMU_MISSING', {
    message: `QEMU (${binary}) is not installed or not on PATH`,
    fix: 'run `bash scripts/setup`, or `apt-get install qemu-system-x86`',
    value: binary,
    exitCode: EXIT.environment,
    cause,
  });
}

export function detectQemu(binary: string = QEMU_BINARY): Promise<QemuInfo> {
  return new Promise((resolve, reject) => {
    execFile(binary, ['--version'], { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return reject(qemuMissingError(binary, err));
      const version = parseQemuVersion(String(stdout));
      if (err || !version) {
        return reject(new SymError('ESYM_QEMU_MISSING', {
          message: `cannot determine the version of ${binary}: ${err ? err.message : `unexpected output ${JSON.stringify(String(stdout).slice(0, 120))}`}`,
          fix: 'run `bash scripts/setup`, or `apt-get install qemu-system-x86`; check that the binary runs: ' + `${binary} --version`,
          value: binary,
          exitCode: EXIT.environment,
          details: { stderr: String(stderr).slice(-500) },
          cause: err ?? undefined,
        }));
      }
      resolve({ binary, version });
    });
  });
}
