export { ConfigError } from './errors.js';
export { configPath, DEFAULT_CONFIG_PATH, hostFor, resourceFor } from './lookup.js';
export { loadConfig, parseConfigText } from './load.js';
export { sameHost } from './hostname.js';
export { dumpConfig } from './dump.js';
export type {
  Address,
  AfterSb0pri,
  AfterSb1pri,
  AfterSb2pri,
  DiskOptions,
  Fencing,
  HostConfig,
  IgnoredOption,
  NetOptions,
  OnCongestion,
  OnIoError,
  OnNoDataAccessible,
  OnNoQuorum,
  OnSuspendedPrimaryOutdated,
  Pos,
  Protocol,
  Quorum,
  ResourceConfig,
  ResourceOptions,
  RrConflict,
  StartupOptions,
  UrbdConfig,
} from './types.js';
export { failoverFor, FAILOVER_DEFAULTS } from './failover.js';
export type {
  AddressConfig,
  AttachMethod,
  FailoverConfig,
  FailoverSections,
  MountConfig,
  ServiceConfig,
  StopFailure,
} from './failover.js';
