import { Transform, type TransformCallback } from 'node:stream';
import cliProgress from 'cli-progress';

/** A progress display for an upload of known size. */
export interface UploadProgress {
  update(bytes: number): void;
  stop(): void;
}

const NOOP: UploadProgress = { update: () => undefined, stop: () => undefined };

/**
 * A bar on stderr: drawn in place on a terminal; when forced onto a pipe or
 * file (`--progress`), one line every 200 ms so a CI log shows it advancing.
 */
export function uploadProgress(label: string, total: number, enabled: boolean): UploadProgress {
  if (!enabled) return NOOP;
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% {done}/{size}`,
      stream: process.stderr,
      hideCursor: process.stderr.isTTY === true,
      // Off a terminal every update is already its own line: no blank line at the end.
      clearOnComplete: process.stderr.isTTY !== true,
      noTTYOutput: true,
      notTTYSchedule: 200,
      barsize: 30,
      fps: 10,
    },
    cliProgress.Presets.legacy,
  );
  bar.start(total, 0, { done: human(0), size: human(total) });
  let stopped = false;
  return {
    update: (bytes) => bar.update(bytes, { done: human(bytes) }),
    stop: () => {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}

/** Passes bytes through unchanged, reporting the running count. */
export function countingStream(onBytes: (total: number) => void): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      total += chunk.length;
      onBytes(total);
      cb(null, chunk);
    },
  });
}

/** `12.3 MB` */
export function human(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}
