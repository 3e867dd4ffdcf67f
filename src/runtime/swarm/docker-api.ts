import { existsSync } from 'node:fs';
import Docker from 'dockerode';

/** Where the Docker Engine API listens unless told otherwise. */
export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

/** A dockerode client on a Unix socket. */
export function dockerClient(socketPath: string = DEFAULT_DOCKER_SOCKET): Docker {
  return new Docker({ socketPath });
}

/** The HTTP status of a failed Engine API call (dockerode puts it on the error), or 0. */
export function apiStatus(e: unknown): number {
  const code = (e as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : 0;
}

/** The daemon's own message of a failed Engine API call, without dockerode's "(HTTP code …)" prefix. */
export function apiMessage(e: unknown): string {
  const json = (e as { json?: { message?: unknown } } | null)?.json;
  if (json && typeof json.message === 'string') return json.message;
  return e instanceof Error ? e.message : String(e);
}

/** True for "no such …" answers, which clean-up treats as already done. */
export function isGone(e: unknown): boolean {
  return apiStatus(e) === 404;
}

/**
 * Why the swarm driver cannot run against `socketPath`, or null when the
 * daemon answers and this node is a swarm manager. Quick (one ping and one
 * info call, each bounded), so tests can decide to skip.
 */
export async function dockerUnavailableReason(socketPath: string = DEFAULT_DOCKER_SOCKET, timeoutMs = 3000): Promise<string | null> {
  if (!existsSync(socketPath)) return `Docker daemon not reachable at ${socketPath}: start it with dockerd --iptables=false`;
  const docker = new Docker({ socketPath, timeout: timeoutMs });
  try {
    await docker.ping();
  } catch (e) {
    return `Docker daemon not reachable at ${socketPath} (${apiMessage(e)}): start it with dockerd --iptables=false`;
  }
  try {
    const info = (await docker.info()) as { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } };
    if (info.Swarm?.LocalNodeState !== 'active') {
      return 'Docker is not in swarm mode: run docker swarm init --advertise-addr 127.0.0.1';
    }
    if (!info.Swarm.ControlAvailable) return 'this Docker node is a swarm worker: services can only be created on a manager';
  } catch (e) {
    return `Docker daemon at ${socketPath} did not answer: ${apiMessage(e)}`;
  }
  return null;
}
