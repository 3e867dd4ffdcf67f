import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { CliError } from '../../src/cli/cli-error.ts';
import { apiJson, closeClient } from '../../src/cli/client.ts';
import { startRecordedApi, TOKEN, USER } from './recorded-api.ts';

test('apiJson maps {"error":{code,message}} to a CliError with code and status (recorded-shape API server)', async (t) => {
  t.after(closeClient);
  const api = await startRecordedApi(t);
  api.on('POST /v1/instances/eph-00000001.eph.test/start', () => ({
    status: 409,
    json: { error: { code: 'QUOTA_EXCEEDED', message: 'plan free allows 1 running instance' } },
  }));
  api.on('GET /v1/me', () => ({ text: '<html>not json</html>', type: 'text/html' }));
  const settings = { url: api.url, user: USER, token: TOKEN };
  await assert.rejects(
    apiJson(settings, '/v1/instances/eph-00000001.eph.test/start', { method: 'POST' }),
    (e: unknown) => e instanceof CliError && e.code === 'QUOTA_EXCEEDED' && e.status === 409 && e.exitCode === 1 && e.message === 'plan free allows 1 running instance',
  );
  await assert.rejects(apiJson(settings, '/v1/me'), /did not answer JSON \(is EPH_URL the control API\?\)/);
  await assert.rejects(
    apiJson({ ...settings, token: 'nope' }, '/v1/me'),
    (e: unknown) => e instanceof CliError && e.code === 'UNAUTHORIZED' && e.status === 401,
  );
});

test('apiJson: a server that resets the connection is named with the reason', async (t) => {
  t.after(closeClient);
  const srv = createServer((s) => s.once('data', () => s.resetAndDestroy()));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => srv.close(() => r())));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  await assert.rejects(apiJson({ url, user: 'u', token: 't' }, '/v1/me'), (e: unknown) => {
    assert.ok(e instanceof CliError);
    assert.equal(e.message, `cannot reach ${url}: connection reset`);
    return true;
  });
});
