import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { CliError } from './cli-error.ts';
import { basicAuth, errorFromBody } from './client.ts';
import type { ClientSettings } from './settings.ts';

/**
 * Why the server refused an upload before reading its body, or null.
 *
 * A server that refuses early (archive over the limit, wrong credentials)
 * answers and closes while the client is still sending; TCP then often
 * resets the connection and the answer is lost, leaving only "EPIPE". This
 * asks again with the same headers and no body byte: an early refusal comes
 * back at once, while a server that waits for the body is given up on after
 * `timeoutMs`, having stored nothing.
 */
export function earlyRefusal(
  settings: ClientSettings,
  path: string,
  headers: Record<string, string>,
  timeoutMs = 3000,
): Promise<CliError | null> {
  return new Promise((resolve) => {
    const url = new URL(settings.url + path);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method: 'POST', headers: { ...headers, authorization: basicAuth(settings), accept: 'application/json', connection: 'close' } });
    const timer = setTimeout(() => {
      req.destroy();
      resolve(null);
    }, timeoutMs);
    req.on('error', () => {
      clearTimeout(timer);
      resolve(null);
    });
    req.on('response', (res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      // Error answers are small; keep at most 64 KiB of anything else.
      res.on('data', (c: string) => (text += text.length + c.length <= 64 * 1024 ? c : ''));
      res.on('end', () => {
        clearTimeout(timer);
        req.destroy();
        resolve((res.statusCode ?? 0) >= 400 ? errorFromBody(res.statusCode ?? 0, text) : null);
      });
      res.on('error', () => resolve(null));
    });
    // Headers only: the announced Content-Length is never followed by a body.
    req.flushHeaders();
  });
}
