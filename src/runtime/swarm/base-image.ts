import { createHash } from 'node:crypto';
import { lstatSync, readlinkSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { c as tarCreate } from 'tar';
import { EphError } from '../../core/errors.ts';
import { apiMessage, isGone } from './docker-api.ts';

/** Default name of the base image every instance runs from. */
export const DEFAULT_BASE_IMAGE = 'eph-runtime:1';

/** Label holding the host layout the image was built for; another layout means rebuild. */
export const LAYOUT_LABEL = 'ephemeric.layout';

/**
 * Host directories every instance sees read-only at the same path: the
 * system directories of a Debian-like host (on merged-/usr systems /bin and
 * /lib* are symlinks into /usr and live in the image as such). /etc comes
 * whole, as in the process driver's sandbox: Debian's /usr/bin holds links
 * into /etc/alternatives, and programs need passwd, nsswitch and certificates.
 */
const SYSTEM_DIRS = ['/usr', '/etc'] as const;
const MAYBE_LINKS = ['/bin', '/lib', '/lib32', '/lib64', '/libx32'] as const;
/**
 * Mount points and empty directories of the skeleton. /sbin is a real
 * directory, not a link into the read-only /usr: Docker mounts its init at
 * /sbin/docker-init and needs a place to put it (/usr/sbin stays on PATH).
 */
const SKELETON_DIRS = ['usr', 'etc', 'tmp', 'proc', 'dev', 'sys', 'run', 'home', 'sbin'] as const;
const SKELETON_FILES = ['sbin/docker-init'] as const;

/** How the base image mirrors this host. */
export interface HostLayout {
  /** `/bin` → `usr/bin` and the like, recreated as symlinks in the image. */
  links: Record<string, string>;
  /** Real host directories bound read-only into every container. */
  binds: string[];
  /** Content hash of the layout (stored as the image label). */
  hash: string;
}

/** Reads which system paths are directories and which are symlinks on this host. */
export function hostLayout(): HostLayout {
  const links: Record<string, string> = {};
  const binds: string[] = [...SYSTEM_DIRS];
  for (const p of MAYBE_LINKS) {
    try {
      const st = lstatSync(p);
      if (st.isSymbolicLink()) links[p] = readlinkSync(p);
      else if (st.isDirectory()) binds.push(p);
    } catch {
      // not on this host
    }
  }
  const hash = createHash('sha256').update(JSON.stringify({ v: 2, links, binds, dirs: SKELETON_DIRS, files: SKELETON_FILES })).digest('hex').slice(0, 16);
  return { links, binds, hash };
}

/**
 * Makes sure `name` exists and matches this host's layout, building it when
 * absent: a `docker import` of a skeleton root file system (empty mount
 * points, the /bin → usr/bin style links) of a few hundred bytes. Programs
 * come from the host's system directories, bound read-only at run time, so
 * an instance sees the same programs as under the process driver and nothing
 * is copied. Every swarm node builds its own (there is no registry).
 *
 * @returns true when the image was built now, false when it was there.
 */
export async function ensureBaseImage(docker: Docker, name: string, layout: HostLayout): Promise<boolean> {
  let previous: string | null = null;
  try {
    const info = (await docker.getImage(name).inspect()) as { Id: string; Config?: { Labels?: Record<string, string> | null } };
    if (info.Config?.Labels?.[LAYOUT_LABEL] === layout.hash) return false;
    previous = info.Id;
  } catch (e) {
    if (!isGone(e)) throw new EphError('UNAVAILABLE', `Docker: cannot inspect image ${name}: ${apiMessage(e)}`, { cause: e });
  }
  const colon = name.lastIndexOf(':');
  const [repo, tag] = colon > name.lastIndexOf('/') ? [name.slice(0, colon), name.slice(colon + 1)] : [name, 'latest'];
  const dir = await mkdtemp(join(tmpdir(), 'eph-base-image-'));
  try {
    const root = join(dir, 'rootfs');
    for (const d of SKELETON_DIRS) await mkdir(join(root, d), { recursive: true });
    for (const f of SKELETON_FILES) await writeFile(join(root, f), '', { mode: 0o755 });
    await chmod(join(root, 'tmp'), 0o1777);
    for (const [path, target] of Object.entries(layout.links)) await symlink(target, join(root, path.slice(1)));
    const tarball = join(dir, 'rootfs.tar');
    await tarCreate({ cwd: join(dir, 'rootfs'), portable: true, file: tarball }, ['.']);
    const progress: NodeJS.ReadableStream = await docker.importImage(tarball, {
      repo,
      tag,
      changes: [`LABEL ${LAYOUT_LABEL}=${layout.hash}`],
    });
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(progress, (err: Error | null, events: { error?: string }[]) => {
        const failed = err?.message ?? events.find((ev) => ev.error)?.error;
        if (failed) reject(new Error(failed));
        else resolve();
      });
    });
  } catch (e) {
    throw new EphError('UNAVAILABLE', `Docker: cannot build the base image ${name}: ${apiMessage(e)}`, { cause: e });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  // The image built for another layout is now untagged; containers still using it keep it.
  if (previous) await docker.getImage(previous).remove().catch(() => undefined);
  return true;
}

/**
 * Makes sure the swarm-scoped bridge network `name` exists. Swarm-scoped so
 * that services can join it; a bridge, so that this host reaches every
 * container at its own address (as the process driver reaches namespaces).
 */
export async function ensureNetwork(docker: Docker, name: string, labels: Record<string, string>): Promise<void> {
  const exists = async (): Promise<boolean> => {
    const nets = await docker.listNetworks({ filters: { name: [name] } });
    return nets.some((n) => n.Name === name);
  };
  try {
    if (await exists()) return;
    await docker.createNetwork({ Name: name, Driver: 'bridge', Scope: 'swarm', Labels: labels });
  } catch (e) {
    // Another driver may have created it meanwhile.
    if (await exists().catch(() => false)) return;
    throw new EphError('UNAVAILABLE', `Docker: cannot create network ${name}: ${apiMessage(e)}`, { cause: e });
  }
}
