import type { Command } from 'commander';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { InstanceView } from '../api/views.ts';
import { fileArchiveType } from './archive-type.ts';
import { CliError } from './cli-error.ts';
import { apiJson } from './client.ts';
import { clientAction, clientCommand } from './command-kit.ts';
import { instanceLine } from './instances.ts';
import { printJson, printLine } from './output.ts';
import { earlyRefusal } from './early-refusal.ts';
import { countingStream, uploadProgress } from './upload-progress.ts';

/** Connection failures that may hide an answer the server sent before reading the body. */
const CUT_WHILE_SENDING = new Set(['EPIPE', 'ECONNRESET', 'UND_ERR_SOCKET']);

interface PublishFlags {
  name?: string;
  wait?: boolean;
  progress?: boolean;
}

/**
 * `eph publish ARCHIVE [--name N] [--wait]`: streams the archive to
 * POST /v1/instances (never loaded into memory), with a progress bar on
 * stderr; `--wait` then starts the instance and returns once it answers.
 *
 * @example eph publish app.zip --name shop --wait
 */
export function publishCommand(program: Command): void {
  const cmd = clientCommand(program, 'publish <archive>', 'upload an application archive (zip, tar, tar.gz) as a new instance')
    .option('--name <name>', 'a descriptive name (default: the file name)')
    .option('--wait', 'start the instance and return when it accepts connections')
    .option('--progress', 'show the upload progress bar even when stderr is not a terminal')
    .option('--no-progress', 'never show the upload progress bar');
  clientAction<PublishFlags>(cmd, async (ctx, file) => {
    const path = file!;
    const size = await stat(path).then(
      (s) => {
        if (!s.isFile()) throw new CliError(`${path}: not a file`);
        return s.size;
      },
      (e: NodeJS.ErrnoException) => {
        throw new CliError(`${path}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message}`);
      },
    );
    const type = await fileArchiveType(path);
    const name = ctx.opts.name ?? basename(path);
    const progress = uploadProgress(`uploading ${basename(path)}`, size, ctx.opts.progress ?? process.stderr.isTTY === true);
    const counter = countingStream((n) => progress.update(n));
    const source = createReadStream(path);
    // Only a failure of the file itself is reported as the file's.
    let readFailed: Error | undefined;
    source.once('error', (e) => (readFailed = e));
    const piped = pipeline(source, counter).catch(() => undefined);
    const headers = { 'content-type': type, 'content-length': String(size), 'x-name': encodeURIComponent(name) };
    let inst: InstanceView;
    try {
      inst = await apiJson<InstanceView>(ctx.settings, '/v1/instances', { method: 'POST', body: counter, headers });
    } catch (e) {
      if (readFailed) throw new CliError(`${path}: ${readFailed.message}`);
      // The server may have refused before reading (over the limit) and the reset lost its answer: ask it again.
      if (e instanceof CliError && e.code !== undefined && CUT_WHILE_SENDING.has(e.code)) {
        throw (await earlyRefusal(ctx.settings, '/v1/instances', headers)) ?? e;
      }
      throw e;
    } finally {
      progress.stop();
      source.destroy();
    }
    await piped;
    if (ctx.opts.wait) {
      const hostname = inst.hostname;
      // The publish itself succeeded and the instance exists: the reason says so.
      const notStarted = (why: string) => new CliError(`published ${hostname} but it did not start: ${why}`);
      inst = await apiJson<InstanceView>(ctx.settings, `/v1/instances/${encodeURIComponent(hostname)}/start`, { method: 'POST' }).catch(
        (e: unknown) => {
          throw e instanceof CliError ? notStarted(e.message) : e;
        },
      );
      if (inst.state !== 'running') throw notStarted(inst.lastError ?? `it is ${inst.state}`);
    }
    if (ctx.json) return printJson(inst);
    printLine(instanceLine(inst));
  });
}
