import type { Command } from 'commander';
import { StringDecoder } from 'node:string_decoder';
import { CliError, UsageError } from './cli-error.ts';
import { apiRequest, failureReason, readBody } from './client.ts';
import { clientAction, clientCommand } from './command-kit.ts';
import { printJson } from './output.ts';

interface LogsFlags {
  follow?: boolean;
  tail?: string;
}

/**
 * `eph logs HOST [-f] [--tail BYTES]`: the instance's stdout/stderr log.
 * With `-f` it keeps streaming until interrupted; with `--json` too, each
 * line is one JSON object `{"line": "..."}` (NDJSON).
 *
 * @example eph logs eph-1a2b3c4d.eph.localhost -f
 */
export function logsCommand(program: Command): void {
  const cmd = clientCommand(program, 'logs <host>', "show an instance's log (its stdout and stderr)")
    .option('-f, --follow', 'keep printing new output until interrupted')
    .option('--tail <bytes>', 'how much of the end of the log to show, in bytes (default: the server\'s, 64 KiB)');
  clientAction<LogsFlags>(cmd, async (ctx, host) => {
    let tail: number | undefined;
    if (ctx.opts.tail !== undefined) {
      tail = Number(ctx.opts.tail);
      if (!/^\d+$/.test(ctx.opts.tail) || !Number.isSafeInteger(tail)) {
        throw new UsageError(`--tail: expected a number of bytes, got '${ctx.opts.tail}'`);
      }
    }
    const follow = ctx.opts.follow === true;
    const res = await apiRequest(ctx.settings, `/v1/instances/${encodeURIComponent(host!)}/logs`, {
      query: { tail, follow: follow ? 1 : undefined },
      headers: { accept: 'text/plain' },
      // A followed log may stay quiet for hours.
      bodyTimeoutMs: follow ? 0 : undefined,
    });
    if (!follow) {
      const text = await readBody(ctx.settings.url, res.body);
      if (ctx.json) return printJson({ hostname: host, log: text });
      process.stdout.write(text);
      return;
    }
    const lines = ctx.json ? jsonLines() : null;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (lines) lines.push(chunk);
        else if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r));
      }
    } catch (e) {
      throw new CliError(`the log stream of ${host} was cut: ${failureReason(e)}`);
    }
    lines?.end();
  });
}

/** Splits a byte stream into lines and prints each as `{"line": …}`. */
function jsonLines(): { push(chunk: Buffer): void; end(): void } {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  const emit = (line: string) => process.stdout.write(`${JSON.stringify({ line })}\n`);
  return {
    push(chunk) {
      const parts = (rest + decoder.write(chunk)).split('\n');
      rest = parts.pop()!;
      for (const p of parts) emit(p.replace(/\r$/, ''));
    },
    end() {
      rest += decoder.end();
      if (rest) emit(rest);
    },
  };
}
