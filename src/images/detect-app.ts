import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { EphError } from '../core/errors.ts';
import type { AppKind } from '../core/types.ts';
import { printable } from './entry-path.ts';
import type { TreeListing } from './fs-util.ts';

/** What an unpacked archive runs, and which of its folders becomes the image directory. */
export interface DetectedApp {
  kind: AppKind;
  /** pharo: the image path relative to the image directory; procfile: the `web:` command. */
  entry: string;
  /** '' when the image directory is the archive root; else the single top-level folder that wraps the app. */
  appRoot: string;
}

const MAX_PROCFILE_BYTES = 64 * 1024;

/** Finder puts resource forks under __MACOSX/, as ._name beside files, and .DS_Store files: they are not the app. */
function isMacJunk(p: string): boolean {
  return p === '__MACOSX' || p.startsWith('__MACOSX/') || /(^|\/)(\._[^/]*|\.DS_Store)$/.test(p);
}

/**
 * Exactly one `*.image` anywhere → pharo. Otherwise a `Procfile` at the root,
 * or in the single top-level folder when the archive wraps everything in one
 * (as GitHub's zips do), whose `web:` line is the command. Anything else is
 * ARCHIVE_NO_APP with a message that says what was found.
 */
export async function detectApp(top: string, listing: TreeListing): Promise<DetectedApp> {
  const files = listing.files.filter((f) => !isMacJunk(f)).sort();
  const images = files.filter((f) => f.toLowerCase().endsWith('.image'));
  if (images.length === 1) return { kind: 'pharo', entry: images[0]!, appRoot: '' };

  const procfile = findProcfile(listing, files);
  if (procfile !== null) {
    const command = webCommand(await readSmall(join(top, procfile.path)), procfile.path);
    return { kind: 'procfile', entry: command, appRoot: procfile.appRoot };
  }

  if (images.length > 1) {
    throw new EphError('ARCHIVE_NO_APP', `found ${images.length} *.image files (${sample(images)}) and no Procfile: an archive must hold exactly one image`);
  }
  const what = files.length === 0 ? 'the archive holds no files' : `found ${files.length} file${files.length === 1 ? '' : 's'}: ${sample(files)}`;
  throw new EphError('ARCHIVE_NO_APP', `no *.image file and no Procfile at the archive root; ${what}`);
}

function findProcfile(listing: TreeListing, files: string[]): { path: string; appRoot: string } | null {
  if (files.includes('Procfile')) return { path: 'Procfile', appRoot: '' };
  const tops = new Set<string>();
  for (const p of [...listing.files, ...listing.dirs, ...listing.links.keys()]) {
    if (!isMacJunk(p)) tops.add(p.split('/', 1)[0]!);
  }
  if (tops.size !== 1) return null;
  const [only] = tops as Set<string>;
  if (!listing.dirs.includes(only!)) return null;
  const path = `${only}/Procfile`;
  return files.includes(path) ? { path, appRoot: only! } : null;
}

/** The first `web:` line's command; Procfile lines are `name: command`. */
function webCommand(text: string, path: string): string {
  const kinds: string[] = [];
  for (const raw of text.replace(/^\uFEFF/, '').split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z0-9_-]+)\s*:\s*(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === 'web') {
      if (m[2]!.trim() === '') throw new EphError('ARCHIVE_NO_APP', `${printable(path)}: the web: line has no command`);
      return m[2]!.trim();
    }
    kinds.push(m[1]!);
  }
  const found = kinds.length === 0 ? 'no process types' : `only ${kinds.join(', ')}`;
  throw new EphError('ARCHIVE_NO_APP', `${printable(path)} has no web: line (${found})`);
}

async function readSmall(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(MAX_PROCFILE_BYTES);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.toString('utf8', 0, bytesRead);
  } finally {
    await fh.close();
  }
}

function sample(paths: string[]): string {
  const shown = paths.slice(0, 5).map((p) => printable(p));
  return paths.length > 5 ? `${shown.join(', ')} and ${paths.length - 5} more` : shown.join(', ');
}
