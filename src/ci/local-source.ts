import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** A failure to get or build the project: the run ends before anything reaches the cloud. */
export class SourceError extends Error {
  readonly code = 'CI_SOURCE_FAILED';
}

export interface SourceOptions {
  /** A directory or an archive file; with `git`, a directory inside the clone (default its root). */
  path?: string;
  git?: string;
  ref?: string;
  /** Shell command run in the project directory; it may write the archive to $EPH_ARCHIVE. */
  build?: string;
  onOutput?: (chunk: Buffer) => void;
}

export interface PreparedSource {
  /** The archive to publish. */
  archive: string;
  /** Where it came from, for the run's record. */
  describe: string;
  cleanup(): Promise<void>;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, onOutput?: (c: Buffer) => void): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (c: Buffer) => {
      onOutput?.(c);
      tail = (tail + c.toString('utf8')).slice(-2000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', (e) => reject(new SourceError(`${cmd}: ${e.message}`)));
    child.once('close', (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new SourceError(`${[cmd, ...args].join(' ')} failed (${signal ?? `exit ${code}`}): ${tail.trim().split('\n').slice(-3).join(' / ')}`));
    });
  });
}

/**
 * The archive a CI run publishes: an archive file as it is; a directory (cloned from git first, at
 * `ref`, when asked) built by the `build` command, which may leave the archive at $EPH_ARCHIVE, or else
 * packed as it stands (a tar.gz without `.git`).
 */
export async function prepareSource(o: SourceOptions): Promise<PreparedSource> {
  const work = await mkdtemp(join(tmpdir(), 'eph-ci-'));
  const cleanup = () => rm(work, { recursive: true, force: true });
  try {
    let dir: string;
    let describe: string;
    if (o.git) {
      const clone = join(work, 'src');
      await run('git', ['clone', '--quiet', '--no-hardlinks', o.git, clone], work, process.env, o.onOutput);
      if (o.ref) await run('git', ['-c', 'advice.detachedHead=false', 'checkout', '--quiet', o.ref], clone, process.env, o.onOutput);
      dir = o.path ? resolve(clone, o.path) : clone;
      if (!dir.startsWith(clone)) throw new SourceError(`${o.path}: outside the clone`);
      describe = `${o.git}${o.ref ? `@${o.ref}` : ''}`;
    } else {
      if (!o.path) throw new SourceError('nothing to publish: give a directory or an archive, or --git');
      const abs = resolve(o.path);
      const st = await stat(abs).catch(() => null);
      if (!st) throw new SourceError(`${o.path}: no such file or directory`);
      if (st.isFile()) {
        if (o.build) throw new SourceError('--build needs a directory (or --git), not an archive');
        return { archive: abs, describe: o.path, cleanup };
      }
      dir = abs;
      describe = o.path;
    }
    const archive = join(work, 'archive');
    if (o.build) await run('sh', ['-c', o.build], dir, { ...process.env, EPH_ARCHIVE: archive }, o.onOutput);
    const built = await stat(archive).then((s) => s.isFile() && s.size > 0, () => false);
    if (!built) await packDirectory(dir, archive);
    return { archive, describe, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** A tar.gz of the directory's contents, without version-control folders. */
async function packDirectory(dir: string, out: string): Promise<void> {
  const entries = (await readdir(dir)).filter((n) => n !== '.git' && n !== '.hg' && n !== '.svn');
  if (entries.length === 0) throw new SourceError(`${dir}: empty directory`);
  // Loaded here: only a run that packs a directory pays for it.
  const tar = await import('tar');
  await tar.create({ gzip: true, cwd: dir, file: out, portable: true }, entries);
}
