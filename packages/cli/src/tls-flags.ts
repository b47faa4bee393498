/**
 * `tcpkit serve` flags for TLS and the PROXY protocol, and the certificate reload on SIGHUP.
 * `reloadCertificates` is the one function a SIGHUP handler (this one, or the workers' restart) calls.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DEFAULTS, type ServeOptions, type Server, type TlsOptions } from 'tcpkit';
import type { Flag } from './flags.js';
import { duration, text } from './parse.js';

/**
 * A certificate file that cannot be used: the message names the flag and the file and says what is wrong;
 * `flag` and `file` are the same as fields, for a log line.
 */
export class CertificateFileError extends Error {
  readonly flag: string;
  readonly file: string;
  constructor(flag: string, file: string, problem: string) {
    super(`${flag} ${file}: ${problem}`);
    this.name = 'CertificateFileError';
    this.flag = flag;
    this.file = file;
  }
}

/** The certificate files named on the command line, re-read on every reload. */
export interface CertificateFiles {
  cert: string;
  key: string;
  ca?: string;
  clientAuth: boolean;
}

const file: typeof text = { ...text, placeholder: '<file>' };

/** The TLS and PROXY protocol flags of `tcpkit serve`, rows of its flag table (see flags.ts). */
export const TLS_FLAGS: Flag[] = [
  {
    name: '--tls-cert',
    key: 'tlsCert',
    type: file,
    help: 'serve TLS with this PEM certificate (chain); needs --tls-key',
  },
  { name: '--tls-key', key: 'tlsKey', type: file, help: 'PEM private key of --tls-cert' },
  {
    name: '--tls-ca',
    key: 'tlsCa',
    type: file,
    help: 'PEM CA certificates that client certificates must chain to (with --tls-client-auth)',
  },
  {
    name: '--tls-client-auth',
    key: 'tlsClientAuth',
    help: 'request and require a client certificate signed by --tls-ca (mutual TLS)',
  },
  {
    name: '--handshake-timeout',
    key: 'handshakeTimeout',
    type: duration,
    help: 'longest TLS handshake, 0 = none',
    default: DEFAULTS.handshakeTimeout,
  },
  {
    name: '--trusted-proxy',
    // Named as the library names it, so its errors read as this flag's (inFlagTerms); listed first for that.
    key: 'proxyProtocol.trusted',
    type: { ...text, placeholder: '<cidr>' },
    repeatable: true,
    help: 'a load balancer address or subnet allowed to send the PROXY header (repeat the flag for more)',
  },
  {
    name: '--proxy-protocol',
    key: 'proxyProtocol',
    help: 'read a PROXY protocol header (v1 or v2) first; needs --trusted-proxy',
  },
];

/** The certificate files of the flags, or undefined without TLS. Throws an Error whose message names the flag. */
export function certificateFiles(flags: Record<string, unknown>): CertificateFiles | undefined {
  const cert = flags.tlsCert as string | undefined;
  const key = flags.tlsKey as string | undefined;
  const ca = flags.tlsCa as string | undefined;
  const clientAuth = flags.tlsClientAuth === true;
  if (cert === undefined && key === undefined) {
    if (ca !== undefined || clientAuth) throw new Error('--tls-ca and --tls-client-auth need --tls-cert and --tls-key');
    if (flags.handshakeTimeout !== undefined) throw new Error('--handshake-timeout needs --tls-cert and --tls-key');
    return undefined;
  }
  if (cert === undefined || key === undefined) throw new Error('--tls-cert and --tls-key go together: give both');
  if (clientAuth && ca === undefined) {
    throw new Error('--tls-client-auth needs --tls-ca: the CA that client certificates must be signed by');
  }
  // Alone it would look like mutual TLS and require nothing: every client served, certificate or not.
  if (ca !== undefined && !clientAuth) {
    throw new Error(
      '--tls-ca applies with --tls-client-auth (without it no client certificate is asked for, and every client is served)',
    );
  }
  return { cert, key, ca, clientAuth };
}

/**
 * Reads the files into `tls` options. Throws an Error naming the flag and the file that is wrong: one
 * that cannot be read, a certificate file with no certificate (or one cut short), a key that is not a
 * private key, is encrypted, or does not match the certificate. Node's own check is not enough for the
 * CA file: it takes an empty or garbage `ca` without a word, and then refuses every client certificate.
 */
export function readCertificates(files: CertificateFiles): TlsOptions {
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new CertificateFileError(flag, path, (error as Error).message);
    }
  };
  const cert = read('--tls-cert', files.cert);
  const key = read('--tls-key', files.key);
  const leaf = certificatesIn('--tls-cert', files.cert, cert)[0]!;
  const privateKey = privateKeyIn(files.key, key);
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new CertificateFileError(
      '--tls-key',
      files.key,
      `does not match --tls-cert ${files.cert} (${leaf.subject.replace(/\n/g, ', ')})`,
    );
  }
  // Client-initiated renegotiation is refused by the library's default (tls.ts's withDefaults).
  const options: TlsOptions = { cert, key };
  if (files.ca !== undefined) {
    options.ca = read('--tls-ca', files.ca);
    certificatesIn('--tls-ca', files.ca, options.ca);
  }
  if (files.clientAuth) {
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  return options;
}

// The three PEM labels OpenSSL reads as a certificate, as Node's `cert` and `ca` take them: CERTIFICATE,
// TRUSTED CERTIFICATE (OpenSSL's, with trust settings after the DER: `openssl x509 -trustout`) and the old
// X509 CERTIFICATE. A block ends with its own label.
const PEM_BEGIN = /-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----/g;
const PEM_END = /-----END (?:TRUSTED |X509 )?CERTIFICATE-----/g;
const PEM_CERTIFICATE = /-----BEGIN ((?:TRUSTED |X509 )?)CERTIFICATE-----[\s\S]*?-----END \1CERTIFICATE-----/g;

/** The PEM certificates in a file: at least one, every one whole. Throws an Error naming the flag and file. */
function certificatesIn(flag: string, path: string, pem: Buffer): X509Certificate[] {
  const text = pem.toString('latin1');
  const noCertificate = () =>
    new CertificateFileError(
      flag,
      path,
      'no certificate in it (PEM, -----BEGIN CERTIFICATE-----, or TRUSTED CERTIFICATE, X509 CERTIFICATE)',
    );
  const begun = text.match(PEM_BEGIN)?.length ?? 0;
  if (begun === 0) throw noCertificate();
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  const out: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      out.push(new X509Certificate(block));
    } catch (error) {
      throw new CertificateFileError(flag, path, `certificate ${i + 1} does not parse (${(error as Error).message})`);
    }
  }
  // A BEGIN line without its END: the file is cut short (being rewritten, or copied in part).
  if ((text.match(PEM_END)?.length ?? 0) !== begun) {
    throw new CertificateFileError(flag, path, 'a certificate is cut short (a BEGIN line without its END)');
  }
  // BEGIN and END lines as many, but no block: a BEGIN of one label closed by an END of another.
  if (out.length !== begun) {
    throw new CertificateFileError(flag, path, 'a certificate block ends with another label than it begins with');
  }
  return out;
}

/** The private key in --tls-key's file. Throws an Error naming the file and what is wrong with it. */
function privateKeyIn(path: string, pem: Buffer): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (error) {
    const e = error as Error & { code?: string };
    if (e.code === 'ERR_MISSING_PASSPHRASE' || /ENCRYPTED/.test(pem.toString('latin1'))) {
      throw new CertificateFileError(
        '--tls-key',
        path,
        `the key is encrypted, and tcpkit takes no passphrase: decrypt it (openssl pkey -in ${path} -out <file>) and keep that file private`,
      );
    }
    throw new CertificateFileError('--tls-key', path, `not a PEM private key (${e.message})`);
  }
}

/** The TLS and PROXY protocol part of ServeOptions from the flags. Throws an Error naming the flag. */
export function tlsAndProxyOptions(flags: Record<string, unknown>): Partial<ServeOptions> {
  const out: Partial<ServeOptions> = {};
  const files = certificateFiles(flags);
  if (files !== undefined) out.tls = readCertificates(files);
  if (flags.handshakeTimeout !== undefined) out.handshakeTimeout = flags.handshakeTimeout as number;
  const trusted = (flags.trustedProxy as string[] | undefined) ?? [];
  if (flags.proxyProtocol === true) {
    if (trusted.length === 0) {
      throw new Error(
        '--proxy-protocol needs at least one --trusted-proxy CIDR: the load balancers allowed to send the header (any other peer could claim any address)',
      );
    }
    out.proxyProtocol = { trusted };
  } else if (trusted.length > 0) {
    throw new Error('--trusted-proxy applies with --proxy-protocol');
  }
  return out;
}

/** What the reload logs to: a pino logger, or anything with its `info` and `error`. */
export interface ReloadLog {
  info(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** A failed read's log fields: the flag and the file at fault, and the whole message. */
export function failureFields(error: unknown): { flag?: string; file?: string; err: string } {
  const message = (error as Error).message;
  return error instanceof CertificateFileError
    ? { flag: error.flag, file: error.file, err: message }
    : { err: message };
}

/**
 * Re-reads the certificate files and swaps them into `server` (new handshakes use them; open
 * connections keep theirs). A failed reload keeps the old certificate and is logged at error with the
 * `flag` and `file` at fault; a reload that works is logged at info.
 * The one function any SIGHUP handler calls (this file's, or a primary restarting its workers).
 */
export function reloadCertificates(server: Server, files: CertificateFiles, log: ReloadLog): boolean {
  try {
    server.setSecureContext(readCertificates(files));
    log.info({ cert: files.cert, key: files.key }, 'reloaded TLS certificate');
    return true;
  } catch (error) {
    // At error, not warn: the server goes on with a certificate the operator meant to replace (one about
    // to expire, or revoked), which needs someone to act.
    log.error(failureFields(error), 'TLS certificate reload failed, keeping the previous one');
    return false;
  }
}

/** Reloads the certificates on every SIGHUP until the server closes. */
export function reloadOnSighup(server: Server, files: CertificateFiles, log: ReloadLog): void {
  onSighup(server, () => {
    reloadCertificates(server, files, log);
  });
}

/**
 * Runs `onHup` at every SIGHUP until the server closes; from then on SIGHUP is ignored. The CLI's process
 * ends with its server, and with no listener a SIGHUP in between (`systemctl reload` racing a stop) would
 * take its default action: the process killed by it (exit status 129) instead of exiting 0 after its drain.
 */
export function onSighup(server: Server, onHup: () => void): void {
  process.on('SIGHUP', onHup);
  void server.closed.then(() => {
    process.off('SIGHUP', onHup);
    process.on('SIGHUP', ignoreSignal);
  });
}

function ignoreSignal(): void {}
