// The Pharo-with-stunnel scenario both drivers' tests run: an image directory
// whose stunnel.conf serves the app over TLS-PSK, and a client for it.
import { connect } from 'node:tls';

const PSK_HEX = '00112233445566778899aabbccddeeff';

/** The port stunnel accepts TLS-PSK on inside the instance. */
export const PSK_PORT = 8443;

/** Files of a Pharo image directory with stunnel.conf beside the image (accepts on {@link PSK_PORT}, forwards to the app on 8080). */
export const TUNNELLED_PHARO_IMAGE: Record<string, string> = {
  'app.image': 'not really an image',
  // The instance copy must override these: a daemonizing stunnel with a pid file cannot run in the sandbox.
  'stunnel.conf': `foreground = no\npid = /var/run/stunnel.pid\n\n[web]\naccept = ${PSK_PORT}\nconnect = 127.0.0.1:8080\nPSKsecrets = psk.txt\n`,
  'psk.txt': `web1:${PSK_HEX}\n`,
};

/** GET / through stunnel's TLS-PSK endpoint at `host`; the whole raw HTTP/1.0 answer. */
export function pskGet(host: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = connect({
      host,
      port: PSK_PORT,
      pskCallback: () => ({ psk: Buffer.from(PSK_HEX, 'hex'), identity: 'web1' }),
      checkServerIdentity: () => undefined,
    });
    let data = '';
    s.setEncoding('utf8');
    s.on('secureConnect', () => s.write('GET / HTTP/1.0\r\nHost: x\r\n\r\n'));
    s.on('data', (d: string) => (data += d));
    s.on('end', () => resolve(data));
    s.on('error', reject);
    s.setTimeout(3000, () => s.destroy(new Error('timeout')));
  });
}
