import { isoWithOffset } from '../core/clock.ts';
import type { Instance } from '../core/types.ts';

/** The instance object exactly as the original API shows it: these six fields, nothing more. */
export interface CompatInstance {
  accessTime: string;
  createdTime: string;
  alias: string | null;
  isRunning: boolean;
  imageName: string;
  hostname: string;
}

export function compatInstance(i: Instance): CompatInstance {
  return {
    accessTime: isoWithOffset(i.accessAt),
    createdTime: isoWithOffset(i.createdAt),
    alias: i.alias,
    isRunning: i.state === 'running',
    imageName: i.imageName,
    hostname: i.hostname,
  };
}

/** The /v1 view: the compat fields plus what a modern client wants to see. */
export interface InstanceView extends CompatInstance {
  state: Instance['state'];
  url: string;
  lastError: string | null;
  imageDigest: string;
}

export function instanceView(i: Instance, gatePort: number): InstanceView {
  const port = gatePort === 80 ? '' : `:${gatePort}`;
  return { ...compatInstance(i), state: i.state, url: `http://${i.hostname}${port}/`, lastError: i.lastError, imageDigest: i.imageDigest };
}
