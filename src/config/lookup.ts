import { findByHostName } from './hostname.js';
import type { HostConfig, ResourceConfig, UrbdConfig } from './types.js';

export const DEFAULT_CONFIG_PATH = '/etc/urbd/urbd.conf';

/** --config wins, then $URBD_CONFIG, then the default; empty values count as unset. */
export function configPath(cliValue?: string): string {
  if (cliValue !== undefined && cliValue !== '') return cliValue;
  const env = process.env.URBD_CONFIG;
  if (env !== undefined && env !== '') return env;
  return DEFAULT_CONFIG_PATH;
}

export function resourceFor(cfg: UrbdConfig, name: string): ResourceConfig {
  const res = cfg.resources.find((r) => r.name === name);
  if (res === undefined) {
    const names = cfg.resources.map((r) => r.name).join(', ');
    throw new Error(
      `no resource ${JSON.stringify(name)} in ${cfg.file} (resources: ${names || 'none'})`,
    );
  }
  return res;
}

export function hostFor(res: ResourceConfig, node: string): HostConfig {
  const host = findByHostName(res.hosts, node);
  if (host === undefined) {
    const names = res.hosts.map((h) => h.name).join(', ');
    throw new Error(
      `resource ${res.name} has no ${JSON.stringify(`on ${node}`)} section in ${res.source.file} (hosts: ${names})`,
    );
  }
  return host;
}
