export type * from './types.js';
export {
  loadConfig,
  configOrigin,
  parseSize,
  parseSizeBytes,
  describeConfig,
  dottedPath,
  CONFIG_SCHEMA,
  OVERRIDE_OPTIONS,
  type ConfigOverrides,
  type LoadConfigOptions,
} from './load.js';
export { CONFIG_DEFAULTS, MIN_MEMORY_MIB } from './schema.js';
export { renderConfigDocs } from './docs.js';
