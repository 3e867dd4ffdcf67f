import type Docker from 'dockerode';
import type { BoundedLog } from '../process/log-file.ts';

/**
 * Copies a container's stdout and stderr, from its start, into `log` until
 * the container stops (the Engine ends a followed log stream then).
 * Resolves when the stream has ended or failed; never rejects.
 */
export async function followContainerLog(docker: Docker, containerId: string, log: BoundedLog): Promise<void> {
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.getContainer(containerId).logs({ follow: true, stdout: true, stderr: true });
  } catch (e) {
    log.note(`cannot follow the container's output: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  await new Promise<void>((resolve) => {
    docker.modem.demuxStream(stream, log, log);
    stream.once('end', resolve);
    stream.once('close', resolve);
    stream.once('error', resolve);
  });
}

/** Copies what a (stopped) container wrote, for a start that failed before it was seen running. */
export async function copyContainerLog(docker: Docker, containerId: string, log: BoundedLog): Promise<void> {
  try {
    const raw = await docker.getContainer(containerId).logs({ follow: false, stdout: true, stderr: true });
    log.write(demux(raw));
  } catch {
    // gone already: nothing to copy
  }
}

/** Strips the Engine's 8-byte frame headers from a non-TTY log buffer. */
export function demux(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at + 8 <= raw.length) {
    const type = raw[at]!;
    const len = raw.readUInt32BE(at + 4);
    if (type > 2) return Buffer.concat([...parts, raw.subarray(at)]);
    parts.push(raw.subarray(at + 8, at + 8 + len));
    at += 8 + len;
  }
  return Buffer.concat(parts);
}
