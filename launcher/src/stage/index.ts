// Host side of staging: what must exist in every guest (program closure, current directory), the archive
// that carries it in, and the safe extraction of what the guests send back.
export { resolveProgram, DEFAULT_PATH } from './resolve.js';
export type { ResolvedProgram } from './resolve.js';
export { programClosure, lddLibs, parseLdd, parseDpkgS, parseShebang, envTarget } from './closure.js';
export type { Closure, ClosureOptions, LddResult } from './closure.js';
export { snapshotDir, compileGlob, matchesAny, fmtBytes } from './snapshot.js';
export type { CwdSnapshot, SnapshotOptions } from './snapshot.js';
export { tarCreate } from './tar.js';
export type { TarEntries } from './tar.js';
export { tarExtractSafe } from './untar.js';
export type { ExtractOptions } from './untar.js';
